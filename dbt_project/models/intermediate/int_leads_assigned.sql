with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

country_regions as (

    select * from {{ ref('country_regions') }}

),

segments as (

    select * from {{ ref('segments') }}

),

reps as (

    select * from {{ ref('int_reps_deduplicated') }}

),

active_reps as (

    select
        rep_id,
        rep_name,
        rep_email,
        region,
        row_number() over (partition by region order by rep_id) - 1 as rep_slot,
        count(*) over (partition by region) as region_rep_count

    from reps
    where is_active

),

staffed_regions as (

    select distinct
        region,
        region_rep_count

    from active_reps

),

segment_bands as (

    select
        segment,
        min_employee_count,
        lead(min_employee_count) over (order by min_employee_count) as next_min_employee_count

    from segments

),

leads_with_region as (

    select
        leads.lead_id,
        leads.country,
        -- Unknown country is not the same as unserved: no verdict until the country is known.
        case
            when leads.country is not null then country_regions.region is not null
        end as is_served_country,
        coalesce(country_regions.region, '{{ var("fallback_region") }}') as region,
        segment_bands.segment

    from leads
    left join country_regions
        on leads.country = country_regions.country_code
    left join segment_bands
        on
            leads.employee_count >= segment_bands.min_employee_count
            and (
                leads.employee_count < segment_bands.next_min_employee_count
                or segment_bands.next_min_employee_count is null
            )

),

routed as (

    select
        leads_with_region.*,
        -- A region whose reps all left hands its leads to the fallback region.
        coalesce(staffed_regions.region, '{{ var("fallback_region") }}') as routing_region

    from leads_with_region
    left join staffed_regions
        on leads_with_region.region = staffed_regions.region

),

final as (

    select
        routed.lead_id,
        routed.country,
        routed.is_served_country,
        routed.region,
        routed.segment,
        owners.rep_id as owner_rep_id,
        owners.rep_name as owner_name,
        owners.rep_email as owner_email,
        -- Bookkeeping: when this was built, for the per-lead models a run writes in part.
        {{ run_started_at_timestamp() }} as built_at

    from routed
    left join staffed_regions as routing_staff
        on routed.routing_region = routing_staff.region
    left join active_reps as owners
        on
            routed.routing_region = owners.region
            and owners.rep_slot
            = {{ hash_bucket('routed.lead_id', 'routing_staff.region_rep_count') }}

)

select * from final
