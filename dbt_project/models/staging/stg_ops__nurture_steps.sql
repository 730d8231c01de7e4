with

source as (

    select * from {{ source('ops', 'nurture_steps') }}

),

renamed as (

    select
        track as nurture_track,
        step as nurture_step,
        template,
        delay_days,
        subject,
        follow_up_title,
        follow_up_due_days

    from source

)

select * from renamed
