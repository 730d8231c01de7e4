with

source as (

    select * from {{ source('raw', 'events') }}

),

renamed as (

    select
        {{ raw_record_id() }} as event_record_id,
        event_id,
        {{ normalised_email('email') }} as email,
        {{ clean_text('source_lead_id') }} as source_lead_id,
        lower(trim(event_type)) as event_type,
        occurred_at,
        {{ clean_text('campaign') }} as campaign,
        {{ clean_text('url') }} as url,
        {{ clean_text('message_key') }} as message_key,
        load_id,
        source,
        source_file,
        source_line,
        loaded_at

    from source

)

select * from renamed
