{#-
    What the "why now" says besides the data: the window of "in the last N days" and the
    activity labels of seed engagement_points, as one md5. int_leads_top_contributions keeps it
    in each row, so a run can tell that the words changed and write every lead's sentence again.
-#}
{% macro why_now_wording_hash() -%}
    (
        select
            md5(
                {{ dbt.concat([
                    "'" ~ var('why_now_window_days') ~ "|'",
                    dbt.listagg(
                        dbt.concat(['event_type', "'='", 'activity_label']), "'|'", 'order by event_type'
                    ),
                ]) }}
            )
        from {{ ref('engagement_points') }}
    )
{%- endmacro %}

{#-
    For int_leads_top_contributions: whether every lead's "why now" must be worked out again,
    not only those with new engagement or a change due. True in a full build, while parsing,
    before the model had its bookkeeping columns, and when int_leads_strongest_fit_rules was
    built since the model last wrote (lead records or fit rules changed: leads can appear,
    disappear or change fit rules) or the wording changed.
-#}
{% macro why_now_needs_every_lead() -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set stored_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- if 'built_at' not in stored_columns or 'wording_hash' not in stored_columns -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set needs_every_lead = run_query(
        'select ' ~ built_since_this_wrote(ref('int_leads_strongest_fit_rules'), 'built_at', 'built_at')
        ~ ' or coalesce((select max(wording_hash) from ' ~ this ~ ') <> '
        ~ why_now_wording_hash() ~ ', true)'
    ).columns[0].values()[0] -%}
    {%- do return(needs_every_lead) -%}
{%- endmacro %}
