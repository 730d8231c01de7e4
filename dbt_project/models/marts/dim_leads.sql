{#-
    A view: every lead's stored profile (int_leads_profiled) with its engagement points decayed
    and its "why now" sentence put together at the run's clock on read - a projection of one
    table - so that the clock alone writes no row. Every reader sees the score and the sentence
    at the clock of the last build.
-#}
{{ config(materialized='view') }}

with

profiles as (

    select * from {{ ref('int_leads_profiled') }}

),

scored as (

    select
        *,
        {{ engagement_score('accrued_points', 'accrued_as_of') }} as engagement_score,
        {{ why_now_sentence() }} as why_now

    from profiles

),

final as (

    select
        lead_id,
        email,
        email_domain,
        first_name,
        last_name,
        company,
        title,
        industry,
        employee_count,
        country,
        region,
        is_served_country,
        segment,
        phone,
        lead_source,
        first_campaign,
        source,
        source_lead_id,
        created_at,
        updated_at,
        record_count,
        source_count,
        fit_score,
        engagement_score,
        fit_score + engagement_score as lead_score,
        is_competitor,
        is_student,
        has_personal_email,
        stage,
        stage_reason,
        nurture_track,
        track_entered_at,
        latest_outcome,
        latest_outcome_at,
        handed_off_at,
        is_awaiting_feedback,
        owner_rep_id,
        owner_name,
        owner_email,
        assignment_rule,
        assignment_rule_label,
        reassigned_from_rep_id,
        positive_event_count,
        last_engaged_at,
        is_do_not_email,
        is_suppressed,
        suppression_reason,
        why_now

    from scored

)

select * from final
