{#-
    A figure for a report rounded to a few places, as a double. Rounded, because a float summed
    or averaged by several threads depends on the order they add in, and a report must read the
    same on every build of the same data. Rounding needs a numeric on PostgreSQL; the result is
    a double because it reads the same on every warehouse (a numeric shows its scale: 1.0000 on
    PostgreSQL, 1.0 on DuckDB), so the same unit tests hold on both. Not dbt.type_float(): on
    DuckDB that is a 4-byte float (0.7818 reads 0.781799972).
-#}
{% macro rounded(expression, places=4) -%}
    cast(round(cast({{ expression }} as {{ dbt.type_numeric() }}), {{ places }}) as double precision)
{%- endmacro %}
