{#-
    Incremental, and independent of the clock: an event's person and its capped points do not
    change as time passes (the decay does: int_leads_engagement_accrued and the score apply it).
    A daily cap shares points among the events of one
    (lead, event type, UTC day), so a run scores again every event of the groups something
    happened to - a new or re-delivered event, an event whose person changed (identity merged
    two people, or a lead record claimed an address only events knew: the old and the new
    person's groups), an event type whose points or cap changed in seed engagement_points - and
    delete+insert on event_id replaces their rows. A person can change only when
    int_lead_emails was built since the last scoring, so only then are all stored events
    compared with it (macro lead_emails_built_since_scoring). scored_at marks the rows a run
    wrote, so that int_leads_engagement_accrued can accrue again just the people they belong
    to.
-#}
{%- set event_columns = [
    'event_id', 'email', 'source_lead_id', 'event_type', 'occurred_at', 'campaign', 'url',
    'message_key', 'source', 'loaded_at',
] -%}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='append_new_columns',
) }}

{%- set newest_load = newest_load_in_this() %}
{%- set people_may_have_moved = lead_emails_built_since_scoring() %}

with

events as (

    select * from {{ ref('int_lead_events_deduplicated') }}

),

lead_emails as (

    select * from {{ ref('int_lead_emails') }}

),

lead_record_ids as (

    select * from {{ ref('int_lead_record_ids') }}

),

engagement_points as (

    select * from {{ ref('engagement_points') }}

),

-- In an incremental run, only what was delivered since the last run: new events, or events
-- delivered again with other details.
delivered_events as (

    select * from events
    {% if newest_load is not none %}
        where loaded_at > {{ newest_load }}
    {% endif %}

),

-- An event names its person by source record id (in its own source system) or by email; the
-- record id is the more precise where both are given. A key no lead record has (yet) keeps the
-- id a lead first known by it will get (unmatched_lead_id).
attributed_events as (

    select
        delivered_events.*,
        coalesce(
            lead_record_ids.lead_id,
            lead_emails.lead_id,
            {{ unmatched_lead_id(
                'delivered_events.email', 'delivered_events.source',
                'delivered_events.source_lead_id'
            ) }}
        ) as lead_id

    from delivered_events
    left join lead_record_ids
        on
            delivered_events.source = lead_record_ids.source
            and delivered_events.source_lead_id = lead_record_ids.source_lead_id
    left join lead_emails
        on delivered_events.email = lead_emails.email

),

{% if is_incremental() %}

-- Stored rows scored for a person, or with points, that no longer hold. A person can have
-- changed only if int_lead_emails or int_lead_record_ids was built since the last scoring.
{%- set person_now = (
    'coalesce(lead_record_ids.lead_id, lead_emails.lead_id, '
    ~ unmatched_lead_id(
        'stored_events.email', 'stored_events.source', 'stored_events.source_lead_id'
    ) ~ ')'
    if people_may_have_moved else 'stored_events.lead_id'
) %}
outdated_events as (

    select
        stored_events.event_id,
        stored_events.lead_id as scored_lead_id,
        {{ person_now }} as lead_id,
        stored_events.event_type,
        stored_events.event_day

    -- The table as the last run left it; read where needed rather than through a CTE, which
    -- the database would copy whole (ten million rows) before the joins.
    from {{ this }} as stored_events
    {%- if people_may_have_moved %}
        left join lead_record_ids
            on
                stored_events.source = lead_record_ids.source
                and stored_events.source_lead_id = lead_record_ids.source_lead_id
        left join lead_emails
            on stored_events.email = lead_emails.email
    {%- endif %}
    left join engagement_points
        on stored_events.event_type = engagement_points.event_type
    where
        {% if people_may_have_moved -%}
            stored_events.lead_id <> {{ person_now }} or
        {% endif -%}
        stored_events.base_points <> coalesce(engagement_points.points, 0)
        or stored_events.daily_cap is distinct from engagement_points.daily_cap

),

-- The (lead, type, day) groups whose daily cap must be worked out again: where a new event
-- landed, where a re-delivered event was before, where an event left or joined a person, where
-- the points changed.
rescored_groups as (

    select
        lead_id,
        event_type,
        {{ dbt.date_trunc('day', 'occurred_at') }} as event_day
    from attributed_events

    union

    select
        stored_events.lead_id,
        stored_events.event_type,
        stored_events.event_day
    from delivered_events
    inner join {{ this }} as stored_events
        on delivered_events.event_id = stored_events.event_id

    union

    select
        scored_lead_id as lead_id,
        event_type,
        event_day
    from outdated_events

    union

    select
        lead_id,
        event_type,
        event_day
    from outdated_events

),

{% endif %}

-- What to score: every event in a full build; in an incremental run the delivered events and
-- the stored events of the groups to score again that were not delivered again (with their
-- new person where it changed).
events_to_score as (

    select
        {%- for column in event_columns %}
            {{ column }},
        {%- endfor %}
        lead_id
    from attributed_events

    {% if is_incremental() %}

        union all

        select
            {%- for column in event_columns %}
                stored_events.{{ column }},
            {%- endfor %}
            coalesce(outdated_events.lead_id, stored_events.lead_id) as lead_id
        from {{ this }} as stored_events
        left join outdated_events
            on stored_events.event_id = outdated_events.event_id
        -- Semi and anti joins: the database then hashes the few groups and deliveries and
        -- streams the ten million stored events past them, whatever it estimates.
        where
            exists (
                select 1
                from rescored_groups
                where
                    stored_events.lead_id = rescored_groups.lead_id
                    and stored_events.event_type = rescored_groups.event_type
                    and stored_events.event_day = rescored_groups.event_day
            )
            and not exists (
                select 1
                from delivered_events
                where stored_events.event_id = delivered_events.event_id
            )

    {% endif %}

),

pointed as (

    select
        events_to_score.event_id,
        events_to_score.lead_id,
        events_to_score.email,
        events_to_score.source_lead_id,
        events_to_score.event_type,
        events_to_score.occurred_at,
        {{ dbt.date_trunc('day', 'events_to_score.occurred_at') }} as event_day,
        events_to_score.campaign,
        events_to_score.url,
        events_to_score.message_key,
        events_to_score.source,
        events_to_score.loaded_at,
        coalesce(engagement_points.points, 0) as base_points,
        engagement_points.daily_cap,
        events_to_score.event_type in {{ in_list(suppression_event_types()) }}
            as is_suppression_event

    from events_to_score
    left join engagement_points
        on events_to_score.event_type = engagement_points.event_type

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

final as (

    select
        event_id,
        lead_id,
        email,
        source_lead_id,
        event_type,
        occurred_at,
        event_day,
        campaign,
        url,
        message_key,
        source,
        loaded_at,
        base_points,
        daily_cap,
        case
            when daily_cap is null then base_points
            else greatest(0, least(base_points, daily_cap - earned_before_today))
        end as counted_points,
        base_points > 0 as is_positive_engagement,
        is_suppression_event,
        {{ run_started_at_timestamp() }} as scored_at

    from running

)

select * from final
