{#-
    Incremental: a lead's stage changes with its data - its engagement (the accrual wrote its
    row again), sales' word (an outcome or hand-off, also one dated after the last run that the
    clock has now passed), its record or fit - or, by the clock alone, when its decaying
    engagement falls below the MQL threshold (or, after a recycle, its engagement since
    feedback below the threshold to qualify again): a time known when the row is written
    (changes_at). A run works out again the leads with new engagement, a change due, new sales'
    word (compared with the stored row: a few hundred thousand outcome and task rows, not the
    leads) and new leads; every lead when int_leads_deduplicated or int_leads_fit_scored was
    built since (lead records or fit rules changed) or a threshold, the half-life or seed
    lifecycle_reasons changed (macro needs_every_lead).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    on_schema_change='append_new_columns',
    post_hook="{{ delete_leads_merged_away() }}",
) }}
{%- set every_lead = needs_every_lead(
    [ref('int_leads_deduplicated'), ref('int_leads_fit_scored')],
    'definitions_hash',
    stage_definitions_hash(),
) %}
{%- set fit_threshold = var('mql_fit_threshold') -%}
{%- set engagement_threshold = var('mql_engagement_threshold') -%}
{%- set sales_word_columns = [
    'latest_outcome', 'latest_outcome_at', 'feedback_reason', 'won_at', 'handed_off_at',
] -%}
{#- When decay alone changes a stage (a positive threshold only: nothing decays to zero). -#}
{%- set stage_changes = ['cast(null as ' ~ dbt.type_timestamp() ~ ')'] -%}
{%- if engagement_threshold > 0.005 -%}
    {%- do stage_changes.append(
        "case when reasoned.stage_reason = 'meets_mql_thresholds' then "
        ~ decays_to_at('reasoned.accrued_points', 'reasoned.accrued_as_of', engagement_threshold - 0.005)
        ~ ' end'
    ) -%}
{%- endif -%}
{%- if engagement_threshold > 0 -%}
    {%- do stage_changes.append(
        "case when reasoned.stage_reason = 'requalified_after_recycle' then "
        ~ decays_to_at('reasoned.engagement_since_feedback', as_of(), engagement_threshold)
        ~ ' end'
    ) -%}
{%- endif -%}

with

all_leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

accrued as (

    select * from {{ ref('int_leads_engagement_accrued') }}

),

fit_scores as (

    select * from {{ ref('int_leads_fit_scored') }}

),

scored_events as (

    select * from {{ ref('int_lead_events_scored') }}

),

outcomes as (

    select * from {{ ref('int_lead_outcomes_resolved') }}

),

sales_tasks as (

    select * from {{ ref('stg_ops__sales_tasks') }}

),

lifecycle_reasons as (

    select * from {{ ref('lifecycle_reasons') }}

),

-- A blank track in the seed means "no nurture", however the CSV spelled it.
reason_definitions as (

    select
        reason_code,
        stage,
        {{ clean_text('nurture_track') }} as nurture_track

    from lifecycle_reasons

),

known_outcomes as (

    select * from outcomes
    where occurred_at <= {{ as_of() }}

),

-- Sales' latest word on each lead; on the same timestamp the furthest outcome wins.
ranked_outcomes as (

    select
        lead_id,
        outcome,
        reason,
        occurred_at,
        row_number() over (
            partition by lead_id
            order by
                occurred_at desc,
                case outcome
                    when 'won' then 1
                    when 'opportunity' then 2
                    when 'lost' then 3
                    when 'rejected' then 4
                    when 'no_response' then 5
                    when 'accepted' then 6
                end,
                outcome_id desc
        ) as recency_rank

    from known_outcomes

),

latest_outcomes as (

    select
        lead_id,
        outcome as latest_outcome,
        occurred_at as latest_outcome_at,
        -- Feedback without a reason: silence means unresponsive, anything else not ready yet.
        case
            when outcome = 'no_response' then coalesce(reason, 'unresponsive')
            when outcome in ('rejected', 'lost') then coalesce(reason, 'not_ready')
        end as feedback_reason

    from ranked_outcomes
    where recency_rank = 1

),

-- Once won, a customer stays a customer whatever sales records later (upsell, lost renewal).
won_leads as (

    select
        lead_id,
        min(occurred_at) as won_at

    from known_outcomes
    where outcome = 'won'
    group by lead_id

),

handoffs as (

    select
        lead_id,
        max(created_at) as handed_off_at

    from sales_tasks
    where task_reason = 'mql_handoff'
    group by lead_id

),

-- Sales' word on each lead it has spoken about, as the stage rules read it.
sales_word as (

    select
        coalesce(latest_outcomes.lead_id, handoffs.lead_id) as lead_id,
        latest_outcomes.latest_outcome,
        latest_outcomes.latest_outcome_at,
        latest_outcomes.feedback_reason,
        won_leads.won_at,
        handoffs.handed_off_at

    from latest_outcomes
    full outer join handoffs
        on latest_outcomes.lead_id = handoffs.lead_id
    left join won_leads
        on latest_outcomes.lead_id = won_leads.lead_id

),

{% if not every_lead %}
-- Leads whose sales' word is not the one their stored row was worked out with: new outcomes
-- and hand-offs, and outcomes dated after the last run that the clock has now passed.
leads_with_new_sales_word as (

    select coalesce(sales_word.lead_id, stored_word.lead_id) as lead_id

    from sales_word
    full outer join (
        select * from {{ this }}
        where latest_outcome is not null or handed_off_at is not null
    ) as stored_word
        on sales_word.lead_id = stored_word.lead_id
    where
        sales_word.lead_id is null
        or stored_word.lead_id is null
        {%- for column in sales_word_columns %}
            or sales_word.{{ column }} is distinct from stored_word.{{ column }}
        {%- endfor %}

),
{% endif %}

leads as (

    select * from all_leads
    {%- if not every_lead %}
        -- New engagement since this model last wrote, a change come due, new sales' word, or
        -- a new lead.
        where
            lead_id in {{ leads_written_since_this_wrote('accrued', 'accrued_at') }}
            or lead_id in (select lead_id from {{ this }} where changes_at <= {{ as_of() }})
            or lead_id in (select lead_id from leads_with_new_sales_word)
            or lead_id not in (select lead_id from {{ this }})
    {%- endif %}

),

-- Engagement earned after sales' latest feedback: a recycled lead re-qualifies on this alone.
engagement_since_feedback as (

    select
        scored_events.lead_id,
        sum({{ decayed(
            'scored_events.counted_points',
            days_between('scored_events.occurred_at', as_of())
        ) }}) as engagement_since_feedback

    from scored_events
    inner join latest_outcomes
        on scored_events.lead_id = latest_outcomes.lead_id
    inner join leads
        on latest_outcomes.lead_id = leads.lead_id
    where
        scored_events.occurred_at > latest_outcomes.latest_outcome_at
        and scored_events.occurred_at <= {{ as_of() }}
    group by scored_events.lead_id

),

evidence as (

    select
        leads.lead_id,
        leads.created_at,
        fit_scores.fit_score,
        fit_scores.is_competitor,
        fit_scores.is_student,
        {{ engagement_score('accrued.accrued_points', 'accrued.accrued_as_of') }}
            as engagement_score,
        coalesce(accrued.positive_event_count, 0) as positive_event_count,
        accrued.last_engaged_at,
        accrued.accrued_points,
        accrued.accrued_as_of,
        sales_word.latest_outcome,
        sales_word.feedback_reason,
        sales_word.latest_outcome_at,
        feedback_reasons.stage as feedback_stage,
        sales_word.won_at,
        sales_word.handed_off_at,
        coalesce(engagement_since_feedback.engagement_since_feedback, 0)
            as engagement_since_feedback,
        -- Handed off after sales' latest word: sales owns it now, so it is not queued again.
        coalesce(
            sales_word.handed_off_at > sales_word.latest_outcome_at
            or (sales_word.handed_off_at is not null and sales_word.latest_outcome_at is null),
            false
        ) as is_awaiting_feedback

    from leads
    inner join fit_scores
        on leads.lead_id = fit_scores.lead_id
    left join accrued
        on leads.lead_id = accrued.lead_id
    left join sales_word
        on leads.lead_id = sales_word.lead_id
    left join reason_definitions as feedback_reasons
        on sales_word.feedback_reason = feedback_reasons.reason_code
    left join engagement_since_feedback
        on leads.lead_id = engagement_since_feedback.lead_id

),

-- The stage rules, in precedence order (documented in the "definitions" doc).
reasoned as (

    select
        *,
        case
            when won_at is not null then 'won'
            when is_awaiting_feedback then 'awaiting_sales_feedback'
            when latest_outcome = 'opportunity' then 'opportunity_open'
            when
                feedback_stage = 'recycled'
                and fit_score >= {{ fit_threshold }}
                and engagement_since_feedback >= {{ engagement_threshold }}
                then 'requalified_after_recycle'
            when feedback_reason is not null then feedback_reason
            when latest_outcome = 'accepted' then 'accepted_by_sales'
            when is_competitor then 'competitor_employee'
            when is_student then 'student'
            when
                fit_score >= {{ fit_threshold }}
                and engagement_score >= {{ engagement_threshold }}
                then 'meets_mql_thresholds'
            when positive_event_count > 0 and fit_score < {{ fit_threshold }}
                then 'not_ready_low_fit'
            when positive_event_count > 0 then 'not_ready_low_engagement'
            else 'not_ready_no_engagement'
        end as stage_reason

    from evidence

),

final as (

    select
        reasoned.lead_id,
        reason_definitions.stage,
        reasoned.stage_reason,
        reason_definitions.nurture_track,
        reasoned.latest_outcome,
        reasoned.feedback_reason,
        reasoned.latest_outcome_at,
        reasoned.won_at,
        reasoned.handed_off_at,
        reasoned.is_awaiting_feedback,
        reasoned.engagement_since_feedback,
        -- When the lead entered its nurture track: sales' feedback, else its latest engagement.
        coalesce(
            reasoned.latest_outcome_at, reasoned.last_engaged_at, reasoned.created_at, {{ as_of() }}
        ) as track_entered_at,
        -- A minute before decay alone changes the stage: the engagement score, rounded to
        -- cents, falls below the MQL threshold, or engagement since feedback below the
        -- threshold to qualify again. Decay never raises a score, so no other reason moves by
        -- the clock alone; sales' word is compared with the stored row instead.
        {{ dbt.dateadd('minute', -1, 'least(' ~ (stage_changes | join(', ')) ~ ')') }}
            as changes_at,
        {{ as_of() }} as worked_out_as_of,
        {{ stage_definitions_hash() }} as definitions_hash,
        {{ run_started_at_timestamp() }} as built_at

    from reasoned
    left join reason_definitions
        on reasoned.stage_reason = reason_definitions.reason_code

)

select * from final
