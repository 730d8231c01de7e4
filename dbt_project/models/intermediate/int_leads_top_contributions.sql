{#-
    Each lead's three strongest fit rules (int_leads_strongest_fit_rules) and three strongest
    event types (int_leads_engagement_accrued, whose order no clock changes) are the only
    candidates for its top three. They are ranked side by side within the lead's row - each
    candidate's rank is one plus the candidates that beat it - and the winners stay in that
    row: one row per lead, where a row per contribution would write and read back three times
    as many rows each run. The sentence is put together on read (macro why_now_sentence, in
    dim_leads), where "last N days ago" is counted at the reader's clock.

    Incremental: a lead's contributions change only with its engagement (the accrual wrote its
    row again) or at a time known when they are written (changes_at): an event leaves the "last
    N days" window, a decaying event type falls below a fit rule. A run works out again just
    those leads, and every lead when int_leads_strongest_fit_rules was built since (lead records
    or fit rules changed) or the wording changed (macro needs_every_lead).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    on_schema_change='append_new_columns',
    post_hook="{{ delete_leads_merged_away() }}",
) }}
{%- set every_lead = needs_every_lead(
    [ref('int_leads_strongest_fit_rules')],
    'wording_hash',
    why_now_wording_hash(),
) %}
{%- set window_days = var('why_now_window_days') -%}
{#- What the model keeps of each of a lead's top contributions. -#}
{%- set contribution_columns = ['kind', 'key', 'points', 'text', 'last_at'] -%}
{%- set slots = [] -%}
{%- for kind in ['fit', 'engagement'] -%}
    {%- for rank in why_now_ranks() -%}
        {%- do slots.append({'name': kind ~ '_' ~ rank, 'kind': kind, 'rank': rank}) -%}
    {%- endfor -%}
{%- endfor -%}
{#-
    When the clock alone changes the contributions: a counted event leaves the window, or a
    decaying event type that outranks a fit rule falls below it (a fit rule never passes an
    event type: fit points stay, engagement points only decay, both are positive).
-#}
{%- set changes = [] -%}
{%- for rank in why_now_ranks() -%}
    {%- do changes.append('engagement_' ~ rank ~ '_leaves_window_at') -%}
{%- endfor -%}
{%- for engagement_rank in why_now_ranks() -%}
    {%- for fit_rank in why_now_ranks() -%}
        {%- set engagement = 'engagement_' ~ engagement_rank -%}
        {%- set fit = 'fit_' ~ fit_rank -%}
        {%- do changes.append(
            'case when ' ~ engagement ~ '_points >= ' ~ fit ~ '_points then '
            ~ decays_to_at(engagement ~ '_accrued_points', 'accrued_as_of', fit ~ '_points')
            ~ ' end'
        ) -%}
    {%- endfor -%}
{%- endfor %}


with

leads as (

    select lead_id from {{ ref('int_leads_deduplicated') }}
    {%- if not every_lead %}
        -- New engagement since this model last wrote, a change come due, or a new lead.
        where
            lead_id in {{ leads_written_since_this_wrote(
                ref('int_leads_engagement_accrued'), 'accrued_at'
            ) }}
            or lead_id in (select lead_id from {{ this }} where changes_at <= {{ as_of() }})
            or lead_id not in (select lead_id from {{ this }})
    {%- endif %}

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

-- How often each lead did each of its strongest kinds of thing in the window.
recent_counts as (

    select
        {%- for rank in why_now_ranks() %}
            count(
                case
                    when scored_events.event_type = accrued.engagement_{{ rank }}_event_type then 1
                end
            ) as engagement_{{ rank }}_recent_count,
            -- The first of them to leave the window changes the count.
            min(
                case
                    when scored_events.event_type = accrued.engagement_{{ rank }}_event_type
                        then scored_events.occurred_at
                end
            ) as engagement_{{ rank }}_first_counted_at,
        {%- endfor %}
        accrued.lead_id

    from scored_events
    inner join accrued
        on scored_events.lead_id = accrued.lead_id
    inner join leads
        on accrued.lead_id = leads.lead_id
    where
        scored_events.occurred_at >= {{ dbt.dateadd('day', -(window_days + 1), as_of()) }}
        and scored_events.occurred_at <= {{ as_of() }}
        and {{ days_between('scored_events.occurred_at', as_of()) }} <= {{ window_days }}
    group by accrued.lead_id

),

candidates as (

    select
        {%- for rank in why_now_ranks() %}
            strongest_fit_rules.fit_{{ rank }}_rule_id as fit_{{ rank }}_key,
            cast(strongest_fit_rules.fit_{{ rank }}_points as {{ dbt.type_numeric() }})
                as fit_{{ rank }}_points,
            strongest_fit_rules.fit_{{ rank }}_text,
            cast(null as {{ dbt.type_timestamp() }}) as fit_{{ rank }}_last_at,
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
            case
                when coalesce(recent_counts.engagement_{{ rank }}_recent_count, 0) > 0
                    then {{ dbt.concat([
                        'engagement_' ~ rank ~ '_activities.activity_label',
                        "' '",
                        times_phrase('recent_counts.engagement_' ~ rank ~ '_recent_count'),
                        "' in the last " ~ window_days ~ " days'",
                    ]) }}
                else {{ dbt.concat([
                    'engagement_' ~ rank ~ '_activities.activity_label',
                    "' '",
                    times_phrase('accrued.engagement_' ~ rank ~ '_event_count'),
                ]) }}
            end as engagement_{{ rank }}_text,
            -- Not done in the window: the sentence adds "last N days ago", counted on read.
            case
                when coalesce(recent_counts.engagement_{{ rank }}_recent_count, 0) = 0
                    then accrued.engagement_{{ rank }}_last_occurred_at
            end as engagement_{{ rank }}_last_at,
            accrued.engagement_{{ rank }}_points as engagement_{{ rank }}_accrued_points,
            {{ dbt.dateadd(
                'day', window_days, 'recent_counts.engagement_' ~ rank ~ '_first_counted_at'
            ) }} as engagement_{{ rank }}_leaves_window_at,
        {%- endfor %}
        accrued.accrued_as_of,
        leads.lead_id

    from leads
    left join strongest_fit_rules
        on leads.lead_id = strongest_fit_rules.lead_id
    left join accrued
        on leads.lead_id = accrued.lead_id
    left join recent_counts
        on leads.lead_id = recent_counts.lead_id
    {%- for rank in why_now_ranks() %}
        left join engagement_points as engagement_{{ rank }}_activities
            on
                accrued.engagement_{{ rank }}_event_type
                = engagement_{{ rank }}_activities.event_type
    {%- endfor %}

),

ranked as (

    select
        {%- for slot in slots %}
            1
            {%- for other in slots if other.name != slot.name %}
                + case when {{ outranks(other, slot) }} then 1 else 0 end
            {%- endfor %} as {{ slot.name }}_rank,
        {%- endfor %}
        -- The next time the clock alone changes the contributions, a minute early: working a lead
        -- out again early changes nothing, late would keep an old one. The times are exact
        -- to the second, so a minute covers rounding; a wider margin would only have each run
        -- work out again the leads due in the next run as well.
        {{ dbt.dateadd('minute', -1, 'least(' ~ (changes | join(', ')) ~ ')') }} as changes_at,
        *

    from candidates

),

-- Each rank taken by the candidate that holds it (ranks are distinct among a lead's
-- candidates; a missing one has no key).
top_contributions as (

    select
        {%- for rank in why_now_ranks() %}
            {%- for column in contribution_columns %}
                case
                    {%- for slot in slots %}
                        {%- set value = (
                            "'" ~ slot.kind ~ "'" if column == 'kind' else slot.name ~ '_' ~ column
                        ) %}
                        when {{ slot.name }}_key is not null and {{ slot.name }}_rank = {{ rank }}
                            then {{ value }}
                    {%- endfor %}
                end as contribution_{{ rank }}_{{ column }},
            {%- endfor %}
        {%- endfor %}
        changes_at,
        lead_id

    from ranked

),

final as (

    select
        lead_id,
        {%- for rank in why_now_ranks() %}
            {%- for column in contribution_columns %}
                contribution_{{ rank }}_{{ column }},
            {%- endfor %}
        {%- endfor %}
        changes_at,
        {{ as_of() }} as worked_out_as_of,
        {{ why_now_wording_hash() }} as wording_hash,
        {{ run_started_at_timestamp() }} as built_at

    from top_contributions

)

select * from final
