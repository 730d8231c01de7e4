with

outcomes as (

    select * from {{ ref('stg_raw__outcomes') }}

),

lead_emails as (

    select * from {{ ref('int_lead_emails') }}

),

sales_tasks as (

    select * from {{ ref('stg_ops__sales_tasks') }}

),

final as (

    select
        outcomes.outcome_record_id,
        outcomes.outcome_id,
        -- The person whose email the outcome names; else the person of the task it answers (a
        -- rep may type an address the lead never used); else the id the email will key.
        coalesce(
            lead_emails.lead_id, sales_tasks.lead_id, {{ dbt.hash('outcomes.email') }}
        ) as lead_id,
        outcomes.email,
        outcomes.outcome,
        outcomes.reason,
        outcomes.rep_id,
        outcomes.task_id,
        outcomes.amount,
        outcomes.occurred_at,
        outcomes.load_id,
        outcomes.source,
        outcomes.source_file,
        outcomes.source_line,
        outcomes.loaded_at

    from outcomes
    left join lead_emails
        on outcomes.email = lead_emails.email
    left join sales_tasks
        on outcomes.task_id = sales_tasks.task_id

)

select * from final
