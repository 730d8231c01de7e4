with

leads as (

    select * from {{ ref('dim_leads') }}

),

segments as (

    select * from {{ ref('segments') }}

),

lifecycle_reasons as (

    select * from {{ ref('lifecycle_reasons') }}

),

sales_ready as (

    select * from leads
    where
        stage = 'mql'
        -- Leads already handed off wait for sales' feedback instead of being queued again.
        and not is_awaiting_feedback

),

final as (

    select
        sales_ready.lead_id,
        sales_ready.email,
        sales_ready.first_name,
        sales_ready.last_name,
        sales_ready.company,
        sales_ready.title,
        sales_ready.phone,
        -- A lead known only by phone is called; one known only by its source record id is
        -- worked in that source's CRM; the rest are emailed first.
        case
            when sales_ready.email is not null then 'email'
            when sales_ready.phone is not null then 'phone'
            else 'crm'
        end as reach_by,
        sales_ready.source,
        sales_ready.source_lead_id,
        sales_ready.country,
        sales_ready.region,
        sales_ready.segment,
        sales_ready.stage_reason,
        sales_ready.owner_rep_id,
        sales_ready.owner_name,
        sales_ready.owner_email,
        sales_ready.assignment_rule,
        sales_ready.assignment_rule_label,
        sales_ready.fit_score,
        sales_ready.engagement_score,
        sales_ready.lead_score,
        -- Why sales gets the lead, in the words of the reasons seed, then its strongest signals.
        {{ dbt.concat([
            "coalesce(lifecycle_reasons.description, 'Sales-ready.')",
            "' '",
            "sales_ready.why_now",
        ]) }} as why_now,
        sales_ready.is_suppressed,
        coalesce(segments.sla_hours, {{ var('sla_hours') }}) as sla_hours,
        {{ as_of() }} as queued_at,
        {{ dbt.dateadd('hour', 'coalesce(segments.sla_hours, ' ~ var('sla_hours') ~ ')', as_of()) }}
            as due_at

    from sales_ready
    left join segments
        on sales_ready.segment = segments.segment
    left join lifecycle_reasons
        on sales_ready.stage_reason = lifecycle_reasons.reason_code

)

select * from final
