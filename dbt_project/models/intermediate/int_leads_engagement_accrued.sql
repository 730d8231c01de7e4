{#-
    Incremental. Decay multiplies every event of a lead by the same factor as the clock moves
    (0.5 ^ (days passed / half-life)), so a lead's engagement, and the order of its event types
    by points, can be worked out once at one clock (accrued_as_of) and carried to any later
    clock by that one factor (dim_leads and the stage do, macro engagement_score). A run accrues again only the
    people whose events changed: those int_lead_events_scored wrote since this model last ran
    (new or re-delivered events, a new person, new points), and those with an event the clock
    has just passed. If the clock went back or the half-life changed, it accrues everyone.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
) }}
{%- set half_life_days = var('engagement_half_life_days') -%}

with

{% if is_incremental() %}
-- The clock and the half-life of the last run that wrote rows, and when it ran.
last_accrual as (

    select
        max(accrued_at) as accrued_at,
        max(accrued_as_of) as accrued_as_of,
        min(half_life_days) as half_life_days

    from {{ this }}
    where accrued_at = (select max(accrued_at) from {{ this }})

),

people_to_accrue as (

    select distinct scored_events.lead_id

    -- The event log read where needed rather than through a CTE, which the database would copy
    -- whole (ten million rows) to read it twice.
    from {{ ref('int_lead_events_scored') }} as scored_events
    cross join last_accrual
    where
        last_accrual.accrued_at is null
        or scored_events.scored_at > last_accrual.accrued_at
        or (
            scored_events.occurred_at > last_accrual.accrued_as_of
            and scored_events.occurred_at <= {{ as_of() }}
        )
        or last_accrual.accrued_as_of > {{ as_of() }}
        or last_accrual.half_life_days <> {{ half_life_days }}

),
{% endif %}

-- Every event of the people to accrue; those after the clock do not count yet.
events_to_accrue as (

    select
        scored_events.lead_id,
        scored_events.event_type,
        scored_events.occurred_at,
        scored_events.counted_points,
        scored_events.is_positive_engagement,
        scored_events.occurred_at <= {{ as_of() }} as is_known

    from {{ ref('int_lead_events_scored') }} as scored_events
    {% if is_incremental() %}
        where exists (
            select 1
            from people_to_accrue
            where scored_events.lead_id = people_to_accrue.lead_id
        )
    {% endif %}

),

event_types_accrued as (

    select
        lead_id,
        event_type,
        sum(case when is_known then 1 else 0 end) as event_count,
        sum(
            case
                when is_known
                    then {{ decayed('counted_points', days_between('occurred_at', as_of())) }}
            end
        ) as accrued_points,
        max(case when is_known then occurred_at end) as last_occurred_at,
        -- Every loaded event, even one stamped after the clock: an opt-out counts from the
        -- moment it is loaded (a provider's clock may run ahead of the run's), so no email
        -- goes out after it.
        count(*) as loaded_event_count,
        max(occurred_at) as last_loaded_at,
        {{ dbt.bool_or('is_positive_engagement') }} as is_positive_engagement

    from events_to_accrue
    group by lead_id, event_type

),

-- A lead's event types by points: the same order at any later clock.
ranked_types as (

    select
        *,
        row_number() over (
            partition by lead_id
            order by accrued_points desc, event_type asc
        ) as strength_rank

    from event_types_accrued
    where is_positive_engagement and accrued_points > 0

),

strongest_types as (

    select
        {{ side_by_side('engagement', 'strength_rank', {
            'event_type': 'event_type',
            'points': 'accrued_points',
            'event_count': 'event_count',
            'last_occurred_at': 'last_occurred_at',
        }) }}
        lead_id

    from ranked_types
    where strength_rank <= {{ why_now_ranks() | length }}
    group by lead_id

),

lead_totals as (

    select
        lead_id,
        coalesce(sum(accrued_points), 0) as accrued_points,
        sum(case when is_positive_engagement then event_count else 0 end) as positive_event_count,
        max(case when is_positive_engagement then last_occurred_at end) as last_engaged_at,
        -- An unsubscribe holds for good; one from an email's unsubscribe group holds until a
        -- later resubscribe to a group (the claim-time check knows which group it was).
        {{ dbt.bool_or("event_type = 'unsubscribe' and loaded_event_count > 0") }}
        or coalesce(
            max(case when event_type = 'group_unsubscribe' then last_loaded_at end)
            > coalesce(
                max(case when event_type = 'group_resubscribe' then last_loaded_at end),
                cast('1900-01-01 00:00:00' as {{ dbt.type_timestamp() }})
            ),
            false
        ) as has_unsubscribed,
        {{ dbt.bool_or("event_type = 'bounce' and loaded_event_count > 0") }} as has_bounced,
        {{ dbt.bool_or("event_type = 'spam_report' and loaded_event_count > 0") }}
            as has_reported_spam

    from event_types_accrued
    group by lead_id

),

final as (

    select
        lead_totals.lead_id,
        {{ as_of() }} as accrued_as_of,
        {{ run_started_at_timestamp() }} as accrued_at,
        {{ half_life_days }} as half_life_days,
        lead_totals.accrued_points,
        {%- for rank in why_now_ranks() %}
            strongest_types.engagement_{{ rank }}_event_type,
            strongest_types.engagement_{{ rank }}_points,
            strongest_types.engagement_{{ rank }}_event_count,
            strongest_types.engagement_{{ rank }}_last_occurred_at,
        {%- endfor %}
        lead_totals.positive_event_count,
        lead_totals.last_engaged_at,
        lead_totals.has_unsubscribed,
        lead_totals.has_bounced,
        lead_totals.has_reported_spam

    from lead_totals
    left join strongest_types
        on lead_totals.lead_id = strongest_types.lead_id

)

select * from final
