{#- Standard SQL double: dbt.type_float() is a 4-byte float on DuckDB, too coarse for shares
    that must add up to 1. -#}
{%- set credit_type = 'double precision' -%}

with

progress as (

    select * from {{ ref('int_leads_progressed') }}

),

scored_events as (

    select * from {{ ref('int_lead_events_scored') }}

),

-- A lead converts twice at most: when it becomes an opportunity and when it is won.
conversions as (

    select
        lead_id,
        'opportunity' as conversion_type,
        opportunity_at as converted_at,
        cast(null as {{ dbt.type_numeric() }}) as converted_amount

    from progress
    where opportunity_at is not null

    union all

    select
        lead_id,
        'customer' as conversion_type,
        won_at as converted_at,
        cast(won_amount as {{ dbt.type_numeric() }}) as converted_amount

    from progress
    where won_at is not null

),

-- The campaign that brought the lead in is its first touch; campaign events are the others.
-- Unsubscribes, bounces and spam reports are not touches that persuaded anyone.
touches as (

    select
        lead_id,
        first_campaign as campaign,
        created_at as touched_at

    from progress
    where first_campaign is not null

    union all

    select
        lead_id,
        campaign,
        occurred_at as touched_at

    from scored_events
    where
        campaign is not null
        and is_positive_engagement
        and occurred_at <= {{ as_of() }}

),

campaign_touches as (

    select
        conversions.lead_id,
        conversions.conversion_type,
        touches.campaign,
        min(touches.touched_at) as first_touched_at,
        max(touches.touched_at) as last_touched_at

    from conversions
    inner join touches
        on
            conversions.lead_id = touches.lead_id
            and conversions.converted_at >= touches.touched_at
    group by conversions.lead_id, conversions.conversion_type, touches.campaign

),

touched_conversions as (

    select distinct
        lead_id,
        conversion_type

    from campaign_touches

),

ranked as (

    select
        *,
        row_number() over (
            partition by lead_id, conversion_type order by first_touched_at, campaign
        ) as first_touch_rank,
        row_number() over (
            partition by lead_id, conversion_type order by last_touched_at desc, campaign desc
        ) as last_touch_rank,
        count(*) over (partition by lead_id, conversion_type) as campaign_count

    from campaign_touches

),

-- A conversion without any campaign touch is credited to 'unattributed', so every conversion
-- hands out exactly one unit of credit under each model.
credited as (

    select
        ranked.lead_id,
        ranked.conversion_type,
        ranked.campaign,
        ranked.first_touched_at,
        ranked.last_touched_at,
        cast(case when ranked.first_touch_rank = 1 then 1 else 0 end as {{ credit_type }})
            as first_touch_credit,
        cast(case when ranked.last_touch_rank = 1 then 1 else 0 end as {{ credit_type }})
            as last_touch_credit,
        cast(1 as {{ credit_type }}) / ranked.campaign_count as linear_credit

    from ranked

    union all

    select
        conversions.lead_id,
        conversions.conversion_type,
        'unattributed' as campaign,
        cast(null as {{ dbt.type_timestamp() }}) as first_touched_at,
        cast(null as {{ dbt.type_timestamp() }}) as last_touched_at,
        cast(1 as {{ credit_type }}) as first_touch_credit,
        cast(1 as {{ credit_type }}) as last_touch_credit,
        cast(1 as {{ credit_type }}) as linear_credit

    from conversions
    left join touched_conversions
        on
            conversions.lead_id = touched_conversions.lead_id
            and conversions.conversion_type = touched_conversions.conversion_type
    where touched_conversions.lead_id is null

),

final as (

    select
        credited.lead_id,
        credited.conversion_type,
        credited.campaign,
        conversions.converted_at,
        conversions.converted_amount,
        credited.first_touched_at,
        credited.last_touched_at,
        credited.first_touch_credit,
        credited.last_touch_credit,
        credited.linear_credit

    from credited
    inner join conversions
        on
            credited.lead_id = conversions.lead_id
            and credited.conversion_type = conversions.conversion_type

)

select * from final
