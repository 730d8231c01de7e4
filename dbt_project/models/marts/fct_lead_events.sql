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

final as (

    select
        scored_events.event_id,
        scored_events.lead_id,
        scored_events.event_type,
        scored_events.occurred_at,
        scored_events.event_day,
        scored_events.campaign,
        scored_events.url,
        scored_events.message_key,
        scored_events.source,
        scored_events.loaded_at,
        scored_events.base_points,
        scored_events.counted_points,
        {{ days_between('scored_events.occurred_at', as_of()) }} as age_days,
        {{ decayed('scored_events.counted_points', 'scored_events.occurred_at') }}
            as decayed_points,
        scored_events.is_positive_engagement,
        scored_events.is_suppression_event

    from scored_events
    -- Events of an address with no lead record yet wait in staging until the lead arrives.
    inner join leads
        on scored_events.lead_id = leads.lead_id
    -- Events after the clock do not exist yet.
    where scored_events.occurred_at <= {{ as_of() }}

)

select * from final
