{#-
    dbt.split_part with a column (not a literal number) as the part number. dbt's own
    postgres__split_part decides in Jinja whether the number is negative, so it fails to
    compile on a column. Postgres' split_part takes any integer expression, and needs an integer:
    dbt.generate_series numbers are double precision there (sums of powers of two).
-#}
{% macro split_part_at(string_text, delimiter_text, part_number) -%}
    {{ return(adapter.dispatch('split_part_at', 'leadflow')(string_text, delimiter_text, part_number)) }}
{%- endmacro %}

{% macro default__split_part_at(string_text, delimiter_text, part_number) -%}
    {{ dbt.split_part(string_text, delimiter_text, part_number) }}
{%- endmacro %}

{% macro postgres__split_part_at(string_text, delimiter_text, part_number) -%}
    split_part({{ string_text }}, {{ delimiter_text }}, cast({{ part_number }} as integer))
{%- endmacro %}
