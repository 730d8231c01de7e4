with

credits as (

    select * from {{ ref('int_conversion_touches_credited') }}

),

final as (

    select
        campaign,
        conversion_type,
        count(*) as touched_conversion_count,
        sum(first_touch_credit) as first_touch_conversions,
        sum(last_touch_credit) as last_touch_conversions,
        sum(linear_credit) as linear_conversions,
        sum(first_touch_credit * converted_amount) as first_touch_amount,
        sum(last_touch_credit * converted_amount) as last_touch_amount,
        sum(linear_credit * converted_amount) as linear_amount

    from credits
    group by campaign, conversion_type

)

select * from final
