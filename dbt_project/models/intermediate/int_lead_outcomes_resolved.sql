with

outcomes as (

    select * from {{ ref('stg_raw__outcomes') }}

),

lead_emails as (

    select * from {{ ref('int_lead_emails') }}

),

lead_record_ids as (

    select * from {{ ref('int_lead_record_ids') }}

),

sales_tasks as (

    select * from {{ ref('stg_ops__sales_tasks') }}

),

known_leads as (

    select distinct lead_id from lead_record_ids

),

final as (

    select
        outcomes.outcome_record_id,
        outcomes.outcome_id,
        -- The person LeadFlow's lead id names; else whose source record id (in the outcome's
        -- source system) the outcome names; else whose email; else the person of the task it
        -- answers (a rep may type an address the lead never used); else the id those keys will
        -- key (unmatched_lead_id), or the lead id or task named as given.
        coalesce(
            known_leads.lead_id,
            lead_record_ids.lead_id,
            lead_emails.lead_id,
            sales_tasks.lead_id,
            {{ unmatched_lead_id('outcomes.email', 'outcomes.source', 'outcomes.source_lead_id') }},
            outcomes.lead_id,
            {{ dbt.hash(dbt.concat(["'task:'", 'outcomes.task_id'])) }}
        ) as lead_id,
        outcomes.email,
        outcomes.source_lead_id,
        outcomes.outcome,
        outcomes.reason,
        outcomes.rep_id,
        outcomes.task_id,
        outcomes.amount,
        outcomes.note,
        outcomes.occurred_at,
        outcomes.load_id,
        outcomes.source,
        outcomes.source_file,
        outcomes.source_line,
        outcomes.loaded_at

    from outcomes
    left join known_leads
        on outcomes.lead_id = known_leads.lead_id
    left join lead_record_ids
        on
            outcomes.source = lead_record_ids.source
            and outcomes.source_lead_id = lead_record_ids.source_lead_id
    left join lead_emails
        on outcomes.email = lead_emails.email
    left join sales_tasks
        on outcomes.task_id = sales_tasks.task_id

)

select * from final
