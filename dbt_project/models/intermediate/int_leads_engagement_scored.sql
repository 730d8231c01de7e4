with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

event_types_decayed as (

    select * from {{ ref('int_lead_event_types_decayed') }}

),

event_totals as (

    select
        lead_id,
        sum(decayed_points) as engagement_score,
        sum(case when is_positive_engagement then event_count else 0 end) as positive_event_count,
        max(case when is_positive_engagement then last_occurred_at end) as last_engaged_at,
        {{ dbt.bool_or("event_type = 'unsubscribe'") }} as has_unsubscribed,
        {{ dbt.bool_or("event_type = 'bounce'") }} as has_bounced,
        {{ dbt.bool_or("event_type = 'spam_report'") }} as has_reported_spam

    from event_types_decayed
    group by lead_id

),

flagged as (

    select
        leads.lead_id,
        round(cast(coalesce(event_totals.engagement_score, 0) as {{ dbt.type_numeric() }}), 2)
            as engagement_score,
        coalesce(event_totals.positive_event_count, 0) as positive_event_count,
        event_totals.last_engaged_at,
        coalesce(event_totals.has_unsubscribed, false) as has_unsubscribed,
        coalesce(event_totals.has_bounced, false) as has_bounced,
        coalesce(event_totals.has_reported_spam, false) as has_reported_spam,
        leads.is_do_not_email,
        leads.email is null as has_no_email

    from leads
    left join event_totals
        on leads.lead_id = event_totals.lead_id

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
