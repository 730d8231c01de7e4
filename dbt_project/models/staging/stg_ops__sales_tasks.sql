with

source as (

    select * from {{ source('ops', 'sales_tasks') }}

),

renamed as (

    select
        task_id,
        lead_id,
        email,
        owner_rep_id,
        owner_email,
        reason as task_reason,
        track as nurture_track,
        step as nurture_step,
        title as task_title,
        why_now,
        due_at,
        status as task_status,
        created_at,
        run_id

    from source

)

select * from renamed
