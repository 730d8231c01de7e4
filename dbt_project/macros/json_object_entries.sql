{#-
    A join that turns a JSON object column into one row per key, adding columns `entry_key`
    and `entry_text` (the value as text; null for a JSON null). A null object adds no rows.
-#}
{% macro json_object_entries(column) -%}
    {{ return(adapter.dispatch('json_object_entries', 'leadflow')(column)) }}
{%- endmacro %}

{% macro default__json_object_entries(column) -%}
    cross join lateral (
        select
            key as entry_key,
            value ->> '$' as entry_text
        from json_each({{ column }})
    ) as entries
{%- endmacro %}

{% macro postgres__json_object_entries(column) -%}
    cross join lateral json_each_text({{ column }}) as entries (entry_key, entry_text)
{%- endmacro %}
