with

credits as (

    select * from {{ ref('int_conversion_touches_credited') }}

),

final as (

    select
        campaign,
        conversion_type,
        count(*) as touched_conversion_count,
        {{ rounded('sum(first_touch_credit)') }} as first_touch_conversions,
        {{ rounded('sum(last_touch_credit)') }} as last_touch_conversions,
        {{ rounded('sum(linear_credit)') }} as linear_conversions,
        {{ rounded('sum(first_touch_credit * converted_amount)', 2) }} as first_touch_amount,
        {{ rounded('sum(last_touch_credit * converted_amount)', 2) }} as last_touch_amount,
        {{ rounded('sum(linear_credit * converted_amount)', 2) }} as linear_amount

    from credits
    group by campaign, conversion_type

)

select * from final
