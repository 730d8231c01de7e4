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

{#
    The per-lead models a run writes in part (delete+insert on lead_id) mark each row with the
    time the run started. A test configured with `where: "built_at > __last_build_finished_at__"`
    checks only the rows written since the last successful build finished: it tested every row
    written before, a row nobody wrote again is as it was, and rows replaced on their key
    cannot leave a second row for it. With no earlier build (LEADFLOW_LAST_BUILD_FINISHED_AT
    unset or empty, e.g. `dbt build` by hand) the time is one older than any row, and the
    tests read every row. The mark's own not_null test stays unfiltered: the filter would pass
    a row without one.
#}
{% macro last_build_finished_at() -%}
    {%- set finished_at = env_var('LEADFLOW_LAST_BUILD_FINISHED_AT', '') if execute else '' -%}
    {%- set finished_at = (finished_at | trim) or '1900-01-01 00:00:00' -%}
    {{ dbt.cast(dbt.string_literal(finished_at), dbt.type_timestamp()) }}
{%- endmacro %}

{#- dbt's own test filter (`where`), with the placeholders above filled in. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace(
            '__events_loaded_since_last_build__', events_loaded_since_last_build()
        ) | replace('__last_build_finished_at__', last_build_finished_at()) -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
