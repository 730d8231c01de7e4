{#-
    A ratio rounded to four places, as a double: rounding needs a numeric on PostgreSQL, and a
    double reads the same on every warehouse (a numeric shows its scale: 1.0000 on PostgreSQL,
    1.0 on DuckDB), so the same unit tests hold on both. Not dbt.type_float(): on DuckDB that
    is a 4-byte float (0.7818 reads 0.781799972).
-#}
{% macro ratio(expression) -%}
    cast(round(cast({{ expression }} as {{ dbt.type_numeric() }}), 4) as double precision)
{%- endmacro %}
