"""The frames the gate validates: each queue as dbt built it, plus what dbt's tests cannot see.

dbt's tests check a model against itself (unique, not null, accepted values). The gate checks
each queue against the rest of the warehouse at the moment it would act: the reps who would
receive the hand-offs (``dim_reps``, and the tasks open on their lists now), the runs
before this one (``ops.gate_results``, ``ops.sales_tasks``) and the lead each email step would
reach (``dim_leads``). SQL prepares those facts as extra columns, set-based; the expectations
that judge them stay simple and live as reviewed files under ``expectations/gx/``.

Gate columns of ``handoff_queue``:
    owner_rep_status           active, inactive, not_a_rep (absent from dim_reps) or unassigned
    owner_daily_task_capacity  the owner's daily_task_capacity in dim_reps
    owner_capacity_left        that capacity minus the owner's tasks open now, before this batch
                               (``queued`` ones wait for room and take none of it)
    handoff_volume_ratio       this batch's size over the median queue size of the trailing runs
                               (null with fewer than ``MIN_TRAILING_RUNS`` of them)
    source_share_drift         the share of this batch from the row's source minus that source's
                               share of the trailing runs' hand-off tasks (null with fewer than
                               ``MIN_TRAILING_RUNS`` runs or a batch under ``MIN_BATCH_FOR_SHARES``)
Gate column of ``nurture_queue``:
    email_blocker              for a step due now: why the lead may not be emailed (its
                               suppression reason, do_not_email, no_email, email_changed,
                               lead_not_found); null when it may be, and on steps not due
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from flows.sales.tasks import HANDOFF_REASON
from flows.warehouse import Connection

# How many earlier runs make the baseline for volume and source shares, and how few are too few.
TRAILING_RUNS = 7
MIN_TRAILING_RUNS = 3
# The task status that takes room in a rep's capacity (flows.sales.tasks.TASK_STATUSES): the
# capacity caps the tasks open on a rep's list; queued ones wait for room.
OPEN_STATUS = "open"
# Below this many hand-offs a source's share swings by chance alone: no drift verdict.
MIN_BATCH_FOR_SHARES = 30

HANDOFF_FRAME_SQL = """
with
queue as (
    select * from main.fct_handoff_queue
),
reps as (
    select rep_id, is_active, daily_task_capacity from main.dim_reps
),
open_now as (
    select owner_rep_id, count(*) as open_count
    from ops.sales_tasks
    where status = $open_status
    group by owner_rep_id
),
trailing_queues as (
    select evaluated_rows
    from ops.gate_results
    where asset = 'handoff_queue' and severity = 'critical' and run_id <> $run_id
        and checked_at <= $as_of
    order by checked_at desc
    limit $trailing_runs
),
volume_baseline as (
    select count(*) as run_count, median(evaluated_rows) as median_rows from trailing_queues
),
trailing_handoff_runs as (
    select run_id
    from ops.sales_tasks
    where reason = $handoff_reason and run_id <> $run_id and created_at <= $as_of
    group by run_id
    order by max(created_at) desc
    limit $trailing_runs
),
trailing_handoffs as (
    select coalesce(leads.source, 'unknown') as source
    from ops.sales_tasks as tasks
    inner join trailing_handoff_runs using (run_id)
    left join main.dim_leads as leads on tasks.lead_id = leads.lead_id
    where tasks.reason = $handoff_reason
),
source_baseline as (
    select
        source,
        count(*) / sum(count(*)) over () as trailing_share,
        (select count(*) from trailing_handoff_runs) as run_count
    from trailing_handoffs
    group by source
),
batch_size as (
    select count(*) as batch_size from queue
),
source_sizes as (
    select coalesce(source, 'unknown') as source_key, count(*) as source_size
    from queue
    group by coalesce(source, 'unknown')
)
select
    queue.*,
    case
        when queue.owner_rep_id is null then 'unassigned'
        when reps.rep_id is null then 'not_a_rep'
        when not reps.is_active then 'inactive'
        else 'active'
    end as owner_rep_status,
    reps.daily_task_capacity as owner_daily_task_capacity,
    reps.daily_task_capacity - coalesce(open_now.open_count, 0) as owner_capacity_left,
    case
        when volume_baseline.run_count >= $min_trailing_runs and volume_baseline.median_rows > 0
            then batch_size.batch_size / volume_baseline.median_rows
    end as handoff_volume_ratio,
    case
        when (select max(run_count) from source_baseline) >= $min_trailing_runs
            and batch_size.batch_size >= $min_batch_for_shares
            then source_sizes.source_size / batch_size.batch_size
                - coalesce(source_baseline.trailing_share, 0)
    end as source_share_drift
from queue
cross join batch_size
cross join volume_baseline
left join source_sizes on coalesce(queue.source, 'unknown') = source_sizes.source_key
left join reps on queue.owner_rep_id = reps.rep_id
left join open_now on queue.owner_rep_id = open_now.owner_rep_id
left join source_baseline on source_sizes.source_key = source_baseline.source
"""

NURTURE_FRAME_SQL = """
select
    queue.*,
    case
        when not queue.is_due then null
        when leads.lead_id is null then 'lead_not_found'
        when queue.email is null or leads.email is null then 'no_email'
        when leads.is_do_not_email then 'do_not_email'
        when leads.is_suppressed then coalesce(leads.suppression_reason, 'suppressed')
        when lower(trim(leads.email)) <> lower(trim(queue.email)) then 'email_changed'
    end as email_blocker
from main.fct_nurture_queue as queue
left join main.dim_leads as leads on queue.lead_id = leads.lead_id
"""


def read_gate_frames(
    connection: Connection, run_id: str, as_of: datetime
) -> dict[str, pd.DataFrame]:
    """Each gated queue with its gate columns, keyed by GX asset name."""
    handoff = connection.execute(
        HANDOFF_FRAME_SQL,
        {
            "run_id": run_id,
            "as_of": as_of,
            "open_status": OPEN_STATUS,
            "handoff_reason": HANDOFF_REASON,
            "trailing_runs": TRAILING_RUNS,
            "min_trailing_runs": MIN_TRAILING_RUNS,
            "min_batch_for_shares": MIN_BATCH_FOR_SHARES,
        },
    ).df()
    nurture = connection.execute(NURTURE_FRAME_SQL).df()
    return {"handoff_queue": handoff, "nurture_queue": nurture}
