{#
    One person across sources: the lead key is the md5 of the normalised email
    (docs/data-contracts.md). Staging models use these so every table keys leads the same way.
#}
{% macro normalised_email(column) -%}
    lower(trim({{ column }}))
{%- endmacro %}

{% macro lead_id_of(email_column) -%}
    {{ dbt.hash(normalised_email(email_column)) }}
{%- endmacro %}

{#- A raw row is identified by the load that brought it and its line in the loaded file. -#}
{% macro raw_record_id() -%}
    {{ dbt.hash(dbt.concat(['load_id', "'|'", dbt.cast('source_line', dbt.type_string())])) }}
{%- endmacro %}

{#- Source systems send '' and '  ' where they mean "unknown". -#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}
