with

leads as (

    select * from {{ ref('int_leads_deduplicated') }}

),

stages as (

    select * from {{ ref('int_leads_staged') }}

),

outcomes as (

    select * from {{ ref('int_lead_outcomes_resolved') }}

),

sales_tasks as (

    select * from {{ ref('stg_ops__sales_tasks') }}

),

known_outcomes as (

    select * from outcomes
    where occurred_at <= {{ as_of() }}

),

-- A lead reaches sales through a hand-off, or (for history older than LeadFlow) through sales
-- recording feedback on it: either way marketing passed it on as qualified.
passed_to_sales as (

    select
        lead_id,
        created_at as passed_at

    from sales_tasks
    where task_reason = 'mql_handoff' and created_at <= {{ as_of() }}

    union all

    select
        lead_id,
        occurred_at as passed_at

    from known_outcomes

),

first_passes as (

    select
        lead_id,
        min(passed_at) as passed_to_sales_at

    from passed_to_sales
    group by lead_id

),

-- An opportunity implies sales accepted the lead; a win implies an opportunity.
milestones as (

    select
        lead_id,
        min(
            case when outcome in ('accepted', 'opportunity', 'won') then occurred_at end
        ) as sql_at,
        min(case when outcome in ('opportunity', 'won') then occurred_at end) as opportunity_at,
        min(case when outcome = 'won' then occurred_at end) as won_at,
        sum(case when outcome = 'won' then amount end) as won_amount

    from known_outcomes
    group by lead_id

),

final as (

    select
        leads.lead_id,
        leads.created_at,
        leads.lead_source,
        leads.first_campaign,
        stages.stage,
        first_passes.passed_to_sales_at,
        milestones.sql_at,
        milestones.opportunity_at,
        milestones.won_at,
        milestones.won_amount,
        (
            first_passes.passed_to_sales_at is not null
            or stages.stage in ('mql', 'sql', 'opportunity', 'customer')
        ) as has_reached_mql,
        milestones.sql_at is not null as has_reached_sql,
        milestones.opportunity_at is not null as has_reached_opportunity,
        milestones.won_at is not null as is_customer

    from leads
    inner join stages
        on leads.lead_id = stages.lead_id
    left join first_passes
        on leads.lead_id = first_passes.lead_id
    left join milestones
        on leads.lead_id = milestones.lead_id

)

select * from final
