with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

matched_rules as (

    select * from {{ ref('int_lead_fit_rules_matched') }}

),

rule_totals as (

    select
        lead_id,
        sum(points) as fit_score,
        count(*) as matched_rule_count,
        {{ dbt.bool_or("signal = 'competitor'") }} as is_competitor,
        {{ dbt.bool_or("signal = 'student'") }} as is_student,
        {{ dbt.bool_or("signal = 'personal_email'") }} as has_personal_email,
        {{ dbt.bool_or("signal = 'unserved_country'") }} as is_unserved_country

    from matched_rules
    group by lead_id

),

final as (

    select
        leads.lead_id,
        coalesce(rule_totals.fit_score, 0) as fit_score,
        coalesce(rule_totals.matched_rule_count, 0) as matched_rule_count,
        coalesce(rule_totals.is_competitor, false) as is_competitor,
        coalesce(rule_totals.is_student, false) as is_student,
        coalesce(rule_totals.has_personal_email, false) as has_personal_email,
        coalesce(rule_totals.is_unserved_country, false) as is_unserved_country,
        -- Bookkeeping: when this was built, for the per-lead models a run writes in part.
        {{ run_started_at_timestamp() }} as built_at

    from leads
    left join rule_totals
        on leads.lead_id = rule_totals.lead_id

)

select * from final
