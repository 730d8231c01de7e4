{#
    Event-grain tests read ten million rows. A test configured with
    `where: "__events_loaded_since_last_build__"` checks only the events loaded since the last
    successful build, which passed every test on the rows before them: raw is append-only,
    and a row loaded later cannot turn an older row bad (a new load has a new load_id, and
    the incremental event models replace an event_id rather than add it twice). With no
    earlier build (LEADFLOW_EVENTS_TESTED_THROUGH unset or empty) the tests read every row.
    The runner sets the variable from the last build's `dbt source freshness` (flows/
    dbt_selection.py). Read only when executing: the value changes on every run, and a
    variable read while parsing would make dbt parse every test again.
#}
{% macro events_loaded_since_last_build() -%}
    {%- set tested_through = env_var('LEADFLOW_EVENTS_TESTED_THROUGH', '') if execute else '' -%}
    {%- set tested_through = tested_through | trim -%}
    {%- if tested_through == '' -%}
        1 = 1
    {%- else -%}
        loaded_at > {{ dbt.cast("'" ~ tested_through ~ "'", dbt.type_timestamp()) }}
    {%- endif -%}
{%- endmacro %}

{#- dbt's own test filter (`where`), with the placeholder above filled in. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace(
            '__events_loaded_since_last_build__', events_loaded_since_last_build()
        ) -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
