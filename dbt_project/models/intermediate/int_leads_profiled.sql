{#-
    What dim_leads shows of each lead, stored once: its record, owner, fit, stage and "why now",
    with its engagement points as accrued at an earlier clock. dim_leads decays the points on
    read, so the clock alone changes no row here.

    Incremental: a lead's row changes only when a per-lead model it joins wrote the lead again
    - the accrual (new engagement), the stage or the "why now" (each of which knows when the
    clock changes it) - or when the lead is new. A run writes just those leads, and every lead
    when int_leads_deduplicated, int_leads_assigned or int_leads_fit_scored was built since
    (lead records, owners or fit changed; macro needs_every_lead).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    on_schema_change='append_new_columns',
    post_hook="{{ delete_leads_merged_away() }}",
) }}
{%- set every_lead = needs_every_lead(
    [ref('int_leads_deduplicated'), ref('int_leads_assigned'), ref('int_leads_fit_scored')]
) %}

with

all_leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

assignments as (

    select * from {{ ref('int_leads_assigned') }}

),

fit_scores as (

    select * from {{ ref('int_leads_fit_scored') }}

),

accrued as (

    select * from {{ ref('int_leads_engagement_accrued') }}

),

engagement_scores as (

    select * from {{ ref('int_leads_engagement_scored') }}

),

stages as (

    select * from {{ ref('int_leads_staged') }}

),

top_contributions as (

    select * from {{ ref('int_leads_top_contributions') }}

),

leads as (

    select * from all_leads
    {%- if not every_lead %}
        -- Written again since this model last wrote by the accrual, the stage or the "why
        -- now", or new.
        where
            lead_id in (
                select lead_id from accrued
                where accrued_at > (select max(built_at) from {{ this }})
            )
            or lead_id in (
                select lead_id from stages
                where built_at > (select max(built_at) from {{ this }})
            )
            or lead_id in (
                select lead_id from top_contributions
                where built_at > (select max(built_at) from {{ this }})
            )
            or lead_id not in (select lead_id from {{ this }})
    {%- endif %}

),

final as (

    select
        leads.lead_id,
        leads.email,
        leads.email_domain,
        leads.first_name,
        leads.last_name,
        leads.company,
        leads.title,
        leads.industry,
        leads.employee_count,
        leads.country,
        assignments.region,
        assignments.is_served_country,
        assignments.segment,
        leads.phone,
        leads.lead_source,
        leads.first_campaign,
        leads.created_at,
        leads.updated_at,
        leads.record_count,
        leads.source_count,
        fit_scores.fit_score,
        accrued.accrued_points,
        accrued.accrued_as_of,
        fit_scores.is_competitor,
        fit_scores.is_student,
        fit_scores.has_personal_email,
        stages.stage,
        stages.stage_reason,
        stages.nurture_track,
        stages.track_entered_at,
        stages.latest_outcome,
        stages.latest_outcome_at,
        stages.handed_off_at,
        stages.is_awaiting_feedback,
        assignments.owner_rep_id,
        assignments.owner_name,
        assignments.owner_email,
        engagement_scores.positive_event_count,
        engagement_scores.last_engaged_at,
        leads.is_do_not_email,
        engagement_scores.is_suppressed,
        engagement_scores.suppression_reason,
        top_contributions.why_now,
        {{ run_started_at_timestamp() }} as built_at

    from leads
    inner join assignments
        on leads.lead_id = assignments.lead_id
    inner join fit_scores
        on leads.lead_id = fit_scores.lead_id
    inner join engagement_scores
        on leads.lead_id = engagement_scores.lead_id
    inner join stages
        on leads.lead_id = stages.lead_id
    inner join top_contributions
        on leads.lead_id = top_contributions.lead_id
    left join accrued
        on leads.lead_id = accrued.lead_id

)

select * from final
