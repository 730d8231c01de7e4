{#- A SQL list of string literals for `in`, from a Jinja list: ('a', 'b'). -#}
{% macro in_list(values) -%}
    ({%- for value in values -%}{{ dbt.string_literal(value) }}{{ ', ' if not loop.last }}{%- endfor -%})
{%- endmacro %}
