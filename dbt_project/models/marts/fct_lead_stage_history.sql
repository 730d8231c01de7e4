with

stage_versions as (

    select * from {{ ref('snp_lead_stages') }}

),

-- A version stamped after the clock did not exist yet at as_of; one still open at as_of counts
-- up to as_of.
known_versions as (

    select
        *,
        case
            when dbt_valid_to is null or dbt_valid_to > {{ as_of() }} then {{ as_of() }}
            else dbt_valid_to
        end as counted_until

    from stage_versions
    where dbt_valid_from <= {{ as_of() }}

),

final as (

    select
        dbt_scd_id as stage_version_id,
        lead_id,
        stage,
        stage_reason,
        nurture_track,
        dbt_valid_from as entered_at,
        case when dbt_valid_to <= {{ as_of() }} then dbt_valid_to end as left_at,
        row_number() over (partition by lead_id order by dbt_valid_from) as stage_sequence,
        {{ days_between('dbt_valid_from', 'counted_until') }} as days_in_stage,
        dbt_valid_to is null or dbt_valid_to > {{ as_of() }} as is_current

    from known_versions

)

select * from final
