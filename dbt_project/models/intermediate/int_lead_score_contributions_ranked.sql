{#-
    Each lead's three strongest fit rules (int_leads_strongest_fit_rules) and three strongest
    event types (int_leads_engagement_accrued, whose order no clock changes) are the only
    candidates for its top three. They are ranked side by side within the lead's row - each
    candidate's rank is one plus the candidates that beat it - rather than by sorting millions
    of rows every run.
-#}
{%- set window_days = var('why_now_window_days') -%}
{%- set slots = [] -%}
{%- for kind in ['fit', 'engagement'] -%}
    {%- for rank in why_now_ranks() -%}
        {%- do slots.append({'name': kind ~ '_' ~ rank, 'kind': kind}) -%}
    {%- endfor -%}
{%- endfor -%}


with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

strongest_fit_rules as (

    select * from {{ ref('int_leads_strongest_fit_rules') }}

),

accrued as (

    select * from {{ ref('int_leads_engagement_accrued') }}

),

scored_events as (

    select * from {{ ref('int_lead_events_scored') }}

),

engagement_points as (

    select * from {{ ref('engagement_points') }}

),

candidates as (

    select
        {%- for rank in why_now_ranks() %}
            strongest_fit_rules.fit_{{ rank }}_rule_id as fit_{{ rank }}_key,
            cast(strongest_fit_rules.fit_{{ rank }}_points as {{ dbt.type_numeric() }})
                as fit_{{ rank }}_points,
            strongest_fit_rules.fit_{{ rank }}_text,
            cast(null as {{ dbt.type_int() }}) as fit_{{ rank }}_event_count,
            cast(null as {{ dbt.type_timestamp() }}) as fit_{{ rank }}_last_occurred_at,
        {%- endfor %}
        {%- for rank in why_now_ranks() %}
            accrued.engagement_{{ rank }}_event_type as engagement_{{ rank }}_key,
            -- Carried to this run's clock, as the engagement score is.
            cast(
                {{ decayed(
                    'accrued.engagement_' ~ rank ~ '_points',
                    days_between('accrued.accrued_as_of', as_of()),
                ) }} as {{ dbt.type_numeric() }}
            ) as engagement_{{ rank }}_points,
            cast(null as {{ dbt.type_string() }}) as engagement_{{ rank }}_text,
            accrued.engagement_{{ rank }}_event_count,
            accrued.engagement_{{ rank }}_last_occurred_at,
        {%- endfor %}
        leads.lead_id

    from leads
    left join strongest_fit_rules
        on leads.lead_id = strongest_fit_rules.lead_id
    left join accrued
        on leads.lead_id = accrued.lead_id

),

ranked as (

    select
        {%- for slot in slots %}
            1
            {%- for other in slots if other.name != slot.name %}
                + case when {{ outranks(other, slot) }} then 1 else 0 end
            {%- endfor %} as {{ slot.name }}_rank,
        {%- endfor %}
        *

    from candidates

),

contributions as (

    {%- for slot in slots %}
        select
            lead_id,
            {{ slot.name }}_rank as contribution_rank,
            '{{ slot.kind }}' as contribution_kind,
            {{ slot.name }}_key as contribution_key,
            {{ slot.name }}_points as contribution_points,
            {{ slot.name }}_text as fit_text,
            {{ slot.name }}_event_count as event_count,
            {{ slot.name }}_last_occurred_at as last_occurred_at
        from ranked
        where
            {{ slot.name }}_key is not null
            and {{ slot.name }}_rank <= {{ why_now_ranks() | length }}
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

-- How often each lead did each thing in the window, for the engagement sentences.
recent_events as (

    select
        lead_id,
        event_type,
        count(*) as recent_event_count

    from scored_events
    where
        occurred_at >= {{ dbt.dateadd('day', -(window_days + 1), as_of()) }}
        and occurred_at <= {{ as_of() }}
        and {{ days_between('occurred_at', as_of()) }} <= {{ window_days }}
    group by lead_id, event_type

),

final as (

    select
        contributions.lead_id,
        contributions.contribution_rank,
        contributions.contribution_kind,
        contributions.contribution_key,
        contributions.contribution_points,
        case
            when contributions.contribution_kind = 'fit' then contributions.fit_text
            when coalesce(recent_events.recent_event_count, 0) > 0
                then {{ dbt.concat([
                    'engagement_points.activity_label',
                    "' '",
                    times_phrase('recent_events.recent_event_count'),
                    "' in the last " ~ window_days ~ " days'",
                ]) }}
            else {{ dbt.concat([
                'engagement_points.activity_label',
                "' '",
                times_phrase('contributions.event_count'),
                "', last '",
                dbt.cast(
                    dbt.cast(
                        'floor(' ~ days_between('contributions.last_occurred_at', as_of()) ~ ')',
                        dbt.type_int(),
                    ),
                    dbt.type_string(),
                ),
                "' days ago'",
            ]) }}
        end as contribution_text

    from contributions
    left join recent_events
        on
            contributions.lead_id = recent_events.lead_id
            and contributions.contribution_key = recent_events.event_type
            and contributions.contribution_kind = 'engagement'
    left join engagement_points
        on
            contributions.contribution_key = engagement_points.event_type
            and contributions.contribution_kind = 'engagement'

)

select * from final
