with

reps as (

    select * from {{ ref('int_reps_deduplicated') }}

),

rep_capacity as (

    select * from {{ ref('rep_capacity') }}

),

final as (

    select
        reps.rep_id,
        reps.rep_name,
        reps.rep_email,
        reps.region,
        reps.segment,
        reps.is_active,
        coalesce(
            rep_capacity.daily_task_capacity, {{ var('rep_daily_task_capacity') }}
        ) as daily_task_capacity

    from reps
    left join rep_capacity
        on reps.rep_id = rep_capacity.rep_id

)

select * from final
