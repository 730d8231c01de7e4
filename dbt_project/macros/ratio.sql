{#-
    A ratio rounded to four places, as a float: rounding needs a numeric on PostgreSQL, and a
    float reads the same on every warehouse (a numeric shows its scale: 1.0000 on PostgreSQL,
    1.0 on DuckDB), so the same unit tests hold on both.
-#}
{% macro ratio(expression) -%}
    cast(round(cast({{ expression }} as {{ dbt.type_numeric() }}), 4) as {{ dbt.type_float() }})
{%- endmacro %}
