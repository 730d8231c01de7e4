with

progress as (

    select * from {{ ref('int_leads_progressed') }}

),

-- Cohorts by the month the lead arrived: each month's rates compare leads of the same age.
cohort_members as (

    select
        *,
        cast({{ dbt.date_trunc('month', 'created_at') }} as date) as cohort_month,
        coalesce(lead_source, 'unknown') as cohort_source

    from progress

),

cohorts as (

    select
        cohort_month,
        cohort_source as lead_source,
        count(*) as lead_count,
        sum(case when has_reached_mql then 1 else 0 end) as mql_count,
        sum(case when has_reached_sql then 1 else 0 end) as sql_count,
        sum(case when has_reached_opportunity then 1 else 0 end) as opportunity_count,
        sum(case when is_customer then 1 else 0 end) as customer_count,
        sum(coalesce(won_amount, 0)) as won_amount

    from cohort_members
    group by cohort_month, cohort_source

),

final as (

    select
        cohort_month,
        lead_source,
        lead_count,
        mql_count,
        sql_count,
        opportunity_count,
        customer_count,
        won_amount,
        mql_count * 1.0 / nullif(lead_count, 0) as lead_to_mql_rate,
        sql_count * 1.0 / nullif(mql_count, 0) as mql_to_sql_rate,
        opportunity_count * 1.0 / nullif(sql_count, 0) as sql_to_opportunity_rate,
        customer_count * 1.0 / nullif(opportunity_count, 0) as opportunity_to_customer_rate

    from cohorts

)

select * from final
