{#- The same survivorship as int_leads_deduplicated's latest-wins columns. -#}
{%- set trusted_first = survivorship_order() -%}

with

records as (

    select * from {{ ref('stg_raw__leads') }}

),

crosswalk as (

    select * from {{ ref('int_lead_identity_crosswalk') }}

),

source_priority as (

    select * from {{ ref('source_priority') }}

),

record_attributes as (

    select
        crosswalk.lead_id,
        entries.entry_key as attribute,
        {{ clean_text('entries.entry_text') }} as attribute_value,
        records.updated_at,
        records.loaded_at,
        records.load_id,
        records.source_line,
        -- Unlisted sources rank after every listed one.
        coalesce(source_priority.priority, 2147483647) as source_rank

    from records
    {{ json_object_entries('records.attributes') }}
    inner join crosswalk
        on records.lead_record_id = crosswalk.lead_record_id
    left join source_priority
        on records.source = source_priority.source

),

final as (

    select
        lead_id,
        attribute,
        {{ first_non_null('attribute_value', trusted_first) }} as attribute_value

    from record_attributes
    where attribute_value is not null
    group by lead_id, attribute

)

select * from final
