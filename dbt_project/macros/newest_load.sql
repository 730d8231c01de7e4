{#
    The newest `loaded_at` already in an incremental model's table, as a timestamp literal, or
    none in a full build (or while parsing). Read before the model's query runs and written
    into it as a literal: the database then skips older row groups by their min/max, where a
    subquery in the filter would make it read every row first.
#}
{% macro newest_load_in_this() -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set newest = run_query(
        'select ' ~ dbt.cast('max(loaded_at)', dbt.type_string()) ~ ' from ' ~ this
    ).columns[0].values()[0] -%}
    {%- do return(none if newest is none else dbt.cast("'" ~ newest ~ "'", dbt.type_timestamp())) -%}
{%- endmacro %}
