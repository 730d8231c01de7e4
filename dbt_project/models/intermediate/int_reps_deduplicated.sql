with

rep_records as (

    select * from {{ ref('stg_raw__reps') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by rep_id
            order by loaded_at desc, load_id desc, source_line desc
        ) as recency_rank

    from rep_records

),

final as (

    select
        rep_id,
        rep_name,
        rep_email,
        region,
        segment,
        is_active

    from ranked
    where recency_rank = 1

)

select * from final
