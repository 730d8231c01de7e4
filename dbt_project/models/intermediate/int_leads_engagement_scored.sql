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
        round(
            cast(
                coalesce(
                    {{ decayed(
                        'accrued.accrued_points',
                        days_between('accrued.accrued_as_of', as_of()),
                    ) }},
                    0
                ) as {{ dbt.type_numeric() }}
            ),
            2
        ) as engagement_score,
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
