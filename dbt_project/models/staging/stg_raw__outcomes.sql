with

source as (

    select * from {{ source('raw', 'outcomes') }}

),

renamed as (

    select
        {{ raw_record_id() }} as outcome_record_id,
        outcome_id,
        {{ normalised_email('email') }} as email,
        {{ clean_text('source_lead_id') }} as source_lead_id,
        {{ clean_text('lead_id') }} as lead_id,
        lower(trim(outcome)) as outcome,
        lower({{ clean_text('reason') }}) as reason,
        {{ clean_text('rep_id') }} as rep_id,
        {{ clean_text('task_id') }} as task_id,
        amount,
        {{ clean_text('note') }} as note,
        occurred_at,
        load_id,
        source,
        source_file,
        source_line,
        loaded_at

    from source

)

select * from renamed
