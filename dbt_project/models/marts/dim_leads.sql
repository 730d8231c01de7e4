with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

assignments as (

    select * from {{ ref('int_leads_assigned') }}

),

fit_scores as (

    select * from {{ ref('int_leads_fit_scored') }}

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
        engagement_scores.engagement_score,
        fit_scores.fit_score + engagement_scores.engagement_score as lead_score,
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
        top_contributions.why_now

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

)

select * from final
