with

source as (

    select * from {{ source('raw', 'leads') }}

),

renamed as (

    select
        {{ raw_record_id() }} as lead_record_id,
        source_lead_id,
        {{ normalised_email('email') }} as email,
        {{ dbt.split_part(normalised_email('email'), "'@'", 2) }} as email_domain,
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name') }} as last_name,
        {{ clean_text('company') }} as company,
        {{ clean_text('title') }} as title,
        {{ clean_text('industry') }} as industry,
        employee_count,
        upper({{ clean_text('country') }}) as country,
        {{ clean_text('phone') }} as phone,
        lower({{ clean_text('lead_source') }}) as lead_source,
        {{ clean_text('first_campaign') }} as first_campaign,
        is_do_not_email,
        attributes,
        created_at,
        updated_at,
        load_id,
        source,
        source_file,
        source_line,
        loaded_at

    from source

)

select * from renamed
