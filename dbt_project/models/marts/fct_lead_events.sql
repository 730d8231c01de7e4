-- A view: a copy of the ten-million-row event table on every run would cost more than every
-- query of it by a person (int_lead_events_scored is the table behind it).
{{ config(materialized='view') }}

with

scored_events as (

    select * from {{ ref('int_lead_events_scored') }}

),

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

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
        known_events.event_id,
        known_events.lead_id,
        known_events.event_type,
        known_events.occurred_at,
        known_events.event_day,
        known_events.campaign,
        known_events.url,
        known_events.message_key,
        known_events.source,
        known_events.loaded_at,
        known_events.base_points,
        known_events.counted_points,
        known_events.age_days,
        {{ decayed('known_events.counted_points', 'known_events.age_days') }} as decayed_points,
        known_events.is_positive_engagement,
        known_events.is_suppression_event

    from known_events
    -- Events of an address with no lead record yet wait in staging until the lead arrives.
    inner join leads
        on known_events.lead_id = leads.lead_id

)

select * from final
