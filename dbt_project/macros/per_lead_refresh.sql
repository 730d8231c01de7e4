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
    What decides a stage besides the lead's data: the MQL thresholds, the half-life, and the
    stage and nurture track of each reason in seed lifecycle_reasons, as one md5.
    int_leads_staged keeps it in each row, so a run can tell that a definition changed and work
    out every lead's stage again.
-#}
{% macro stage_definitions_hash() -%}
    (
        select
            md5(
                {{ dbt.concat([
                    "'fit " ~ var('mql_fit_threshold') ~ "|engagement "
                    ~ var('mql_engagement_threshold') ~ "|half-life "
                    ~ var('engagement_half_life_days') ~ "|'",
                    dbt.listagg(
                        dbt.concat([
                            'reason_code', "'='", 'stage', "'/'", "coalesce(nurture_track, '')",
                        ]),
                        "'|'",
                        'order by reason_code',
                    ),
                ]) }}
            )
        from {{ ref('lifecycle_reasons') }}
    )
{%- endmacro %}

{#-
    For the per-lead models a run writes in part (int_leads_top_contributions,
    int_leads_staged, int_leads_profiled): whether a run must work out every lead, not only
    those with new data or a change due. True in a full build, while parsing, before the model
    had its bookkeeping columns (built_at, and `hash_column` when given), when one of
    `full_inputs` was built since the model last wrote (the tables it reads that a build
    writes whole, each marked with built_at: lead records, owners or fit changed, and leads can
    appear, disappear or change), and when the stored rows' `hash_column` differs from
    `current_hash` (SQL): a definition they were written with changed.
-#}
{% macro needs_every_lead(full_inputs, hash_column=none, current_hash=none) -%}
    {%- if not (is_incremental() and execute) -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set stored_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- if 'built_at' not in stored_columns or (hash_column and hash_column not in stored_columns) -%}
        {%- do return(true) -%}
    {%- endif -%}
    {%- set reasons = [] -%}
    {%- for full_input in full_inputs -%}
        {%- do reasons.append(built_since_this_wrote(full_input, 'built_at', 'built_at')) -%}
    {%- endfor -%}
    {%- if hash_column -%}
        {%- do reasons.append(
            'coalesce((select max(' ~ hash_column ~ ') from ' ~ this ~ ') <> ' ~ current_hash ~ ', true)'
        ) -%}
    {%- endif -%}
    {%- set answer = run_query('select ' ~ reasons | join(' or ')).columns[0].values()[0] -%}
    {%- do return(answer) -%}
{%- endmacro %}

{#-
    SQL, for `lead_id in ...` in the per-lead models a run writes in part: the leads whose rows
    in `rows` (a relation or CTE name) were written after this model last wrote, by their
    `mark` (the start of the dbt invocation that wrote them) against this model's built_at.
-#}
{% macro leads_written_since_this_wrote(rows, mark) -%}
    (select lead_id from {{ rows }} where {{ mark }} > (select max(built_at) from {{ this }}))
{%- endmacro %}

{#-
    Post-hook of the per-lead models a run writes in part: delete+insert replaces the leads a run
    wrote, so a lead merged into another by identity would keep its row. Leads disappear only
    in runs that write every lead, but a hook cannot tell (needs_every_lead's answer changes
    once the model has written), so every incremental run checks (a scan of the lead ids).
-#}
{% macro delete_leads_merged_away() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where lead_id not in (select lead_id from {{ ref('int_leads_deduplicated') }})
    {%- endif -%}
{%- endmacro %}
