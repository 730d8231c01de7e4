with

source as (

    select * from {{ source('raw', 'reps') }}

),

renamed as (

    select
        {{ raw_record_id() }} as rep_record_id,
        trim(rep_id) as rep_id,
        trim(name) as rep_name,
        {{ normalised_email('email') }} as rep_email,
        upper(trim(region)) as region,
        lower({{ clean_text('segment') }}) as segment,
        is_active,
        load_id,
        source,
        source_file,
        source_line,
        loaded_at

    from source

)

select * from renamed
