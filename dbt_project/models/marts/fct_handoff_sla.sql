with

sales_tasks as (

    select * from {{ ref('stg_ops__sales_tasks') }}

),

outcomes as (

    select * from {{ ref('int_lead_outcomes_resolved') }}

),

leads as (

    select * from {{ ref('dim_leads') }}

),

segments as (

    select * from {{ ref('segments') }}

),

-- Each hand-off round lasts until the next round of the same lead: an outcome answers the
-- round it falls in, never two.
handoffs as (

    select
        task_id,
        lead_id,
        owner_rep_id,
        task_status,
        created_at as handed_off_at,
        lead(created_at) over (
            partition by lead_id order by created_at, task_id
        ) as next_handed_off_at

    from sales_tasks
    where task_reason = 'mql_handoff' and created_at <= {{ as_of() }}

),

known_outcomes as (

    select * from outcomes
    where occurred_at <= {{ as_of() }}

),

touches as (

    select
        handoffs.task_id,
        known_outcomes.outcome,
        known_outcomes.occurred_at,
        row_number() over (
            partition by handoffs.task_id
            order by known_outcomes.occurred_at, known_outcomes.outcome_id
        ) as touch_rank

    from handoffs
    inner join known_outcomes
        on
            handoffs.lead_id = known_outcomes.lead_id
            and handoffs.handed_off_at <= known_outcomes.occurred_at
            and (
                handoffs.next_handed_off_at is null
                or handoffs.next_handed_off_at > known_outcomes.occurred_at
            )

),

timed as (

    select
        handoffs.task_id,
        handoffs.lead_id,
        handoffs.owner_rep_id,
        handoffs.task_status,
        leads.segment,
        handoffs.handed_off_at,
        coalesce(segments.sla_hours, {{ var('sla_hours') }}) as sla_hours,
        touches.occurred_at as first_touched_at,
        touches.outcome as first_touch_outcome

    from handoffs
    left join touches
        on handoffs.task_id = touches.task_id and touches.touch_rank = 1
    left join leads
        on handoffs.lead_id = leads.lead_id
    left join segments
        on leads.segment = segments.segment

),

deadlined as (

    select
        *,
        {{ dbt.dateadd('hour', 'sla_hours', 'handed_off_at') }} as sla_due_at

    from timed

),

classified as (

    select
        task_id,
        lead_id,
        owner_rep_id,
        task_status,
        segment,
        handed_off_at,
        sla_hours,
        sla_due_at,
        first_touched_at,
        first_touch_outcome,
        {{ hours_between('handed_off_at', 'first_touched_at') }} as hours_to_first_touch,
        -- Touching exactly at the deadline is in time.
        case
            when first_touched_at <= sla_due_at then 'met'
            when first_touched_at is not null then 'late'
            when sla_due_at < {{ as_of() }} then 'past_due'
            else 'open'
        end as sla_status

    from deadlined

),

final as (

    select
        *,
        sla_status = 'met' as is_within_sla,
        sla_status = 'past_due' as is_past_due,
        -- Past due and still on the rep's list (queued or open): what the rep owes right now. A
        -- superseded task is past due (the round was missed) but no longer owed.
        sla_status = 'past_due' and coalesce(task_status in ('queued', 'open'), false)
            as is_overdue

    from classified

)

select * from final
