with

crosswalk as (

    select * from {{ ref('int_lead_identity_crosswalk') }}

),

final as (

    select distinct
        email,
        lead_id

    from crosswalk
    where email is not null

)

select * from final
