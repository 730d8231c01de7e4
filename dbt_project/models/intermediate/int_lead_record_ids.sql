with

crosswalk as (

    select * from {{ ref('int_lead_identity_crosswalk') }}

),

final as (

    select distinct
        source,
        source_lead_id,
        lead_id,
        -- Bookkeeping: tells event scoring whether people may have moved since it last ran.
        {{ run_started_at_timestamp() }} as built_at

    from crosswalk

)

select * from final
