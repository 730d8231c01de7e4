with

source as (

    select * from {{ source('ops', 'email_sends') }}

),

renamed as (

    select
        message_key,
        lead_id,
        email,
        track as nurture_track,
        step as nurture_step,
        template,
        subject,
        status as send_status,
        provider,
        provider_message_id,
        error as send_error,
        owner_rep_id,
        owner_email,
        follow_up_title,
        follow_up_due_days,
        why_now,
        created_at,
        sent_at,
        run_id

    from source

)

select * from renamed
