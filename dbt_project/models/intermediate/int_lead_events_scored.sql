with

events as (

    select * from {{ ref('stg_raw__events') }}

),

engagement_points as (

    select * from {{ ref('engagement_points') }}

),

-- An event re-delivered in a later load counts once; events after the clock do not exist yet.
deduplicated as (

    select
        *,
        row_number() over (
            partition by event_id
            order by loaded_at desc, load_id desc, source_line desc
        ) as load_rank

    from events
    where occurred_at <= {{ as_of() }}

),

pointed as (

    select
        deduplicated.event_id,
        deduplicated.lead_id,
        deduplicated.event_type,
        deduplicated.occurred_at,
        {{ dbt.date_trunc('day', 'deduplicated.occurred_at') }} as event_day,
        deduplicated.campaign,
        deduplicated.url,
        deduplicated.message_key,
        deduplicated.source,
        deduplicated.loaded_at,
        coalesce(engagement_points.points, 0) as base_points,
        engagement_points.daily_cap,
        deduplicated.event_type in {{ in_list(suppression_event_types()) }} as is_suppression_event

    from deduplicated
    left join engagement_points
        on deduplicated.event_type = engagement_points.event_type
    where deduplicated.load_rank = 1

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
