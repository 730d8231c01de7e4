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
            lead_id in {{ leads_written_since_this_wrote('accrued', 'accrued_at') }}
            or lead_id in {{ leads_written_since_this_wrote('stages', 'built_at') }}
            or lead_id in {{ leads_written_since_this_wrote('top_contributions', 'built_at') }}
            or lead_id not in (select lead_id from {{ this }})
    {%- endif %}

),

-- Engagement as accrued, and why email stops: the lead unsubscribed, bounced, reported spam,
-- asked not to be emailed or has no email.
engaged_leads as (

    select
        leads.*,
        accrued.accrued_points,
        accrued.accrued_as_of,
        coalesce(accrued.positive_event_count, 0) as positive_event_count,
        accrued.last_engaged_at,
        coalesce(accrued.has_unsubscribed, false) as has_unsubscribed,
        coalesce(accrued.has_bounced, false) as has_bounced,
        coalesce(accrued.has_reported_spam, false) as has_reported_spam,
        leads.email is null as has_no_email

    from leads
    left join accrued
        on leads.lead_id = accrued.lead_id

),

final as (

    select
        engaged_leads.lead_id,
        engaged_leads.email,
        engaged_leads.email_domain,
        engaged_leads.first_name,
        engaged_leads.last_name,
        engaged_leads.company,
        engaged_leads.title,
        engaged_leads.industry,
        engaged_leads.employee_count,
        engaged_leads.country,
        assignments.region,
        assignments.is_served_country,
        assignments.segment,
        engaged_leads.phone,
        engaged_leads.lead_source,
        engaged_leads.first_campaign,
        engaged_leads.source,
        engaged_leads.source_lead_id,
        engaged_leads.created_at,
        engaged_leads.updated_at,
        engaged_leads.record_count,
        engaged_leads.source_count,
        fit_scores.fit_score,
        engaged_leads.accrued_points,
        engaged_leads.accrued_as_of,
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
        assignments.assignment_rule,
        assignments.assignment_rule_label,
        assignments.reassigned_from_rep_id,
        engaged_leads.positive_event_count,
        engaged_leads.last_engaged_at,
        engaged_leads.is_do_not_email,
        (
            engaged_leads.has_unsubscribed
            or engaged_leads.has_bounced
            or engaged_leads.has_reported_spam
            or engaged_leads.is_do_not_email
            or engaged_leads.has_no_email
        ) as is_suppressed,
        -- The strongest reason first: a spam report matters more than a bounce.
        case
            when engaged_leads.has_reported_spam then 'spam_report'
            when engaged_leads.has_unsubscribed then 'unsubscribed'
            when engaged_leads.is_do_not_email then 'do_not_email'
            when engaged_leads.has_bounced then 'bounced'
            when engaged_leads.has_no_email then 'no_email'
        end as suppression_reason,
        top_contributions.contribution_1_text,
        top_contributions.contribution_1_last_at,
        top_contributions.contribution_2_text,
        top_contributions.contribution_2_last_at,
        top_contributions.contribution_3_text,
        top_contributions.contribution_3_last_at,
        {{ run_started_at_timestamp() }} as built_at

    from engaged_leads
    inner join assignments
        on engaged_leads.lead_id = assignments.lead_id
    inner join fit_scores
        on engaged_leads.lead_id = fit_scores.lead_id
    inner join stages
        on engaged_leads.lead_id = stages.lead_id
    inner join top_contributions
        on engaged_leads.lead_id = top_contributions.lead_id

)

select * from final
