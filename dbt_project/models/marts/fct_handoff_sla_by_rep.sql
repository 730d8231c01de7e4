with

handoff_sla as (

    select * from {{ ref('fct_handoff_sla') }}

),

reps as (

    select * from {{ ref('int_reps_deduplicated') }}

),

keyed as (

    select
        *,
        coalesce(owner_rep_id, 'unassigned') as rep_key,
        coalesce(segment, 'unknown') as segment_key

    from handoff_sla

),

summarised as (

    select
        rep_key,
        segment_key,
        -- One segment, one agreement: the same hours on every row of the group.
        max(sla_hours) as sla_hours,
        count(*) as handoff_count,
        sum(case when first_touched_at is not null then 1 else 0 end) as touched_count,
        sum(case when is_within_sla then 1 else 0 end) as within_sla_count,
        sum(case when sla_status = 'late' then 1 else 0 end) as late_count,
        sum(case when is_past_due then 1 else 0 end) as past_due_count,
        sum(case when is_overdue then 1 else 0 end) as overdue_count,
        sum(case when sla_status = 'open' then 1 else 0 end) as open_count,
        {{ rounded('avg(hours_to_first_touch)', 2) }} as avg_hours_to_first_touch,
        -- Aggregates skip the untouched hand-offs (null hours): the times sales took so far.
        percentile_cont(0.5) within group (
            order by hours_to_first_touch
        ) as median_hours_to_first_touch,
        percentile_cont(0.9) within group (
            order by hours_to_first_touch
        ) as p90_hours_to_first_touch

    from keyed
    group by rep_key, segment_key

),

final as (

    select
        summarised.rep_key as owner_rep_id,
        reps.rep_name as owner_name,
        summarised.segment_key as segment,
        summarised.sla_hours,
        summarised.handoff_count,
        summarised.touched_count,
        summarised.within_sla_count,
        summarised.late_count,
        summarised.past_due_count,
        summarised.overdue_count,
        summarised.open_count,
        -- Open tasks are still in time: the share is over hand-offs whose deadline is decided.
        {{ rounded(
            'summarised.within_sla_count * 1.0'
            ' / nullif(summarised.handoff_count - summarised.open_count, 0)'
        ) }} as within_sla_share,
        summarised.avg_hours_to_first_touch,
        summarised.median_hours_to_first_touch,
        summarised.p90_hours_to_first_touch,
        {{ as_of() }} as measured_at

    from summarised
    left join reps
        on summarised.rep_key = reps.rep_id

)

select * from final
