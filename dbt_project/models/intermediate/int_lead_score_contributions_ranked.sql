{%- set window_days = var('why_now_window_days') -%}

with

matched_rules as (

    select * from {{ ref('int_lead_fit_rules_matched') }}

),

event_types_decayed as (

    select * from {{ ref('int_lead_event_types_decayed') }}

),

engagement_points as (

    select * from {{ ref('engagement_points') }}

),

fit_contributions as (

    select
        lead_id,
        'fit' as contribution_kind,
        rule_id as contribution_key,
        cast(points as {{ dbt.type_numeric() }}) as contribution_points,
        {{ dbt.concat([
            'description', "' (+'", dbt.cast('points', dbt.type_string()), "' fit)'"
        ]) }} as contribution_text

    from matched_rules
    where points > 0

),

event_type_totals as (

    select * from event_types_decayed
    where is_positive_engagement

),

engagement_contributions as (

    select
        event_type_totals.lead_id,
        'engagement' as contribution_kind,
        event_type_totals.event_type as contribution_key,
        cast(event_type_totals.decayed_points as {{ dbt.type_numeric() }}) as contribution_points,
        case
            when event_type_totals.recent_event_count > 0
                then {{ dbt.concat([
                    'engagement_points.activity_label',
                    "' '",
                    times_phrase('event_type_totals.recent_event_count'),
                    "' in the last " ~ window_days ~ " days'",
                ]) }}
            else {{ dbt.concat([
                'engagement_points.activity_label',
                "' '",
                times_phrase('event_type_totals.event_count'),
                "', last '",
                dbt.cast(
                    dbt.cast('floor(event_type_totals.days_since_last)', dbt.type_int()),
                    dbt.type_string(),
                ),
                "' days ago'",
            ]) }}
        end as contribution_text

    from event_type_totals
    inner join engagement_points
        on event_type_totals.event_type = engagement_points.event_type
    where event_type_totals.decayed_points > 0

),

contributions as (

    select * from fit_contributions
    union all
    select * from engagement_contributions

),

ranked as (

    select
        *,
        row_number() over (
            partition by lead_id
            order by contribution_points desc, contribution_kind asc, contribution_key asc
        ) as contribution_rank

    from contributions

),

final as (

    select
        lead_id,
        contribution_rank,
        contribution_kind,
        contribution_key,
        contribution_points,
        contribution_text

    from ranked
    where contribution_rank <= 3

)

select * from final
