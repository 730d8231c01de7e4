{#
    Whether int_lead_emails or int_lead_record_ids was built since the incremental model this
    runs in (event scoring) last wrote rows: only then can an event's person have changed, and
    only then does a run compare every stored event's person with them (a join of ten million
    events on email and record id). The tables carry the start of the dbt invocation that wrote them (built_at, scored_at); equal
    times are one run, in which scoring ran after the emails were built and compared them. A
    run that wrote no scores leaves the comparison to the next run. True in a full build, while
    parsing, and when either table is empty.
#}
{% macro lead_emails_built_since_scoring() -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set built_since = run_query(
        'select ' ~ built_since_this_wrote(ref('int_lead_emails'), 'built_at', 'scored_at')
        ~ ' or ' ~ built_since_this_wrote(ref('int_lead_record_ids'), 'built_at', 'scored_at')
    ).columns[0].values()[0] -%}
    {%- do return(built_since) -%}
{%- endmacro %}

{#-
    SQL: whether `upstream` was built (its `upstream_mark`) after the incremental model this
    runs in last wrote (its `own_mark`); both marks are the start of the dbt invocation that
    wrote the rows. True when either table is empty.
-#}
{% macro built_since_this_wrote(upstream, upstream_mark, own_mark) -%}
    coalesce(
        (select max({{ upstream_mark }}) from {{ upstream }})
        > (select max({{ own_mark }}) from {{ this }}),
        true
    )
{%- endmacro %}
