with

events as (

    select * from {{ ref('int_lead_events_deduplicated') }}

),

lead_emails as (

    select * from {{ ref('int_lead_emails') }}

),

engagement_points as (

    select * from {{ ref('engagement_points') }}

),

-- Events after the clock do not exist yet. An event names its person by email; an email no
-- lead record has (yet) keeps the id a lead first known by it will get (md5 of the email,
-- already normalised: lead_id_of).
known_events as (

    select
        events.*,
        coalesce(lead_emails.lead_id, {{ dbt.hash('events.email') }}) as lead_id

    from events
    left join lead_emails
        on events.email = lead_emails.email
    where events.occurred_at <= {{ as_of() }}

),

pointed as (

    select
        known_events.event_id,
        known_events.lead_id,
        known_events.event_type,
        known_events.occurred_at,
        {{ dbt.date_trunc('day', 'known_events.occurred_at') }} as event_day,
        known_events.campaign,
        known_events.url,
        known_events.message_key,
        known_events.source,
        known_events.loaded_at,
        coalesce(engagement_points.points, 0) as base_points,
        engagement_points.daily_cap,
        known_events.event_type in {{ in_list(suppression_event_types()) }} as is_suppression_event

    from known_events
    left join engagement_points
        on known_events.event_type = engagement_points.event_type

),

-- Points already earned earlier the same day from the same event type, for the daily cap.
running as (

    select
        *,
        sum(base_points) over (
            partition by lead_id, event_type, event_day
            order by occurred_at, event_id
            rows between unbounded preceding and current row
        ) - base_points as earned_before_today

    from pointed

),

capped as (

    select
        *,
        case
            when daily_cap is null then base_points
            else greatest(0, least(base_points, daily_cap - earned_before_today))
        end as counted_points,
        {{ days_between('occurred_at', as_of()) }} as age_days

    from running

),

final as (

    select
        event_id,
        lead_id,
        event_type,
        occurred_at,
        event_day,
        campaign,
        url,
        message_key,
        source,
        loaded_at,
        base_points,
        counted_points,
        age_days,
        counted_points
        * power(0.5, age_days / {{ var('engagement_half_life_days') }}) as decayed_points,
        base_points > 0 as is_positive_engagement,
        is_suppression_event

    from capped

)

select * from final
