{#
    Whether int_lead_emails was built since the incremental model this runs in (event scoring)
    last wrote rows: only then can an event's person have changed, and only then does a run
    compare every stored event's person with it (a join of ten million events on email). Both
    tables carry the start of the dbt invocation that wrote them (built_at, scored_at); equal
    times are one run, in which scoring ran after the emails were built and compared them. A
    run that wrote no scores leaves the comparison to the next run. True in a full build, while
    parsing, and when either table is empty.
#}
{% macro lead_emails_built_since_scoring() -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set built_since = run_query(
        'select coalesce(max(built_at) > (select max(scored_at) from ' ~ this ~ '), true) from '
        ~ ref('int_lead_emails')
    ).columns[0].values()[0] -%}
    {%- do return(built_since) -%}
{%- endmacro %}
