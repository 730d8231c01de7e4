{%- set window_days = var('why_now_window_days') -%}

with

scored_events as (

    select * from {{ ref('int_lead_events_scored') }}

),

-- Events after the clock do not exist yet.
known_events as (

    select
        *,
        {{ days_between('occurred_at', as_of()) }} as age_days

    from scored_events
    where occurred_at <= {{ as_of() }}

),

final as (

    select
        lead_id,
        event_type,
        count(*) as event_count,
        sum(case when age_days <= {{ window_days }} then 1 else 0 end) as recent_event_count,
        sum(counted_points) as counted_points,
        sum({{ decayed('counted_points', 'age_days') }}) as decayed_points,
        max(occurred_at) as last_occurred_at,
        min(age_days) as days_since_last,
        {{ dbt.bool_or('is_positive_engagement') }} as is_positive_engagement,
        {{ dbt.bool_or('is_suppression_event') }} as is_suppression_event

    from known_events
    group by lead_id, event_type

)

select * from final
