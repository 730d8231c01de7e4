{#-
    Text as a number, or null where it is not one ("many", "1,200"): custom attributes hold
    whatever an export wrote, and a rule on a number must not stop the build on a word.
    dbt-duckdb's safe_cast is a plain cast, so this is dispatched.
-#}
{% macro number_or_null(text) -%}
    {{ return(adapter.dispatch('number_or_null', 'leadflow')(text)) }}
{%- endmacro %}

{% macro default__number_or_null(text) -%}
    try_cast(trim({{ text }}) as {{ dbt.type_numeric() }})
{%- endmacro %}

{% macro postgres__number_or_null(text) -%}
    case
        when trim({{ text }}) ~ '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)$'
            then cast(trim({{ text }}) as {{ dbt.type_numeric() }})
    end
{%- endmacro %}
