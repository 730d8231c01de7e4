{#-
    A view: the score decays with the clock, so a table would be every lead written again each
    run; its readers take the leads they need (int_leads_staged, int_leads_profiled).
-#}
{{ config(materialized='view') }}

with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

accrued as (

    select * from {{ ref('int_leads_engagement_accrued') }}

),

flagged as (

    select
        leads.lead_id,
        -- Carried from the clock it was accrued at to this run's: one decay factor per lead.
        {{ engagement_score('accrued.accrued_points', 'accrued.accrued_as_of') }}
            as engagement_score,
        coalesce(accrued.positive_event_count, 0) as positive_event_count,
        accrued.last_engaged_at,
        coalesce(accrued.has_unsubscribed, false) as has_unsubscribed,
        coalesce(accrued.has_bounced, false) as has_bounced,
        coalesce(accrued.has_reported_spam, false) as has_reported_spam,
        leads.is_do_not_email,
        leads.email is null as has_no_email

    from leads
    left join accrued
        on leads.lead_id = accrued.lead_id

),

final as (

    select
        *,
        (
            has_unsubscribed or has_bounced or has_reported_spam or is_do_not_email or has_no_email
        ) as is_suppressed,
        -- The strongest reason first: a spam report matters more than a bounce.
        case
            when has_reported_spam then 'spam_report'
            when has_unsubscribed then 'unsubscribed'
            when is_do_not_email then 'do_not_email'
            when has_bounced then 'bounced'
            when has_no_email then 'no_email'
        end as suppression_reason

    from flagged

)

select * from final
