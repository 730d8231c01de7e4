"""Create sales tasks, set-based and idempotent.

A task's id is derived from what it is about, ``md5(lead_id|reason|track|step)``, and
``ops.sales_tasks.task_id`` is the primary key: re-running a hand-off, or settling a send
ledger twice, can never create a second task for the same thing.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

HANDOFF_REASON = "mql_handoff"
NURTURE_FOLLOW_UP_REASON = "nurture_follow_up"

TASK_ID_SQL = (
    "md5(concat_ws('|', {lead_id}, {reason}, coalesce({track}, ''), "
    "coalesce(cast({step} as varchar), '')))"
)


def task_id_sql(lead_id: str, reason: str, track: str = "null", step: str = "null") -> str:
    return TASK_ID_SQL.format(lead_id=lead_id, reason=reason, track=track, step=step)


def _count_new(connection: duckdb.DuckDBPyConnection, run_id: str, reason: str) -> int:
    row = connection.execute(
        "select count(*) from ops.sales_tasks where run_id = ? and reason = ?", [run_id, reason]
    ).fetchone()
    return int(row[0]) if row else 0


def create_handoff_tasks(
    connection: duckdb.DuckDBPyConnection, run_id: str, as_of: datetime
) -> int:
    """One task per lead in ``fct_handoff_queue``; returns how many were new."""
    connection.execute(
        f"""
        insert into ops.sales_tasks
        select
            {task_id_sql("lead_id", f"'{HANDOFF_REASON}'")},
            lead_id,
            email,
            owner_rep_id,
            owner_email,
            '{HANDOFF_REASON}',
            null,
            null,
            concat_ws(' ', 'Follow up with', first_name, last_name,
                      case when company is not null then 'at ' || company end),
            why_now,
            due_at,
            'open',
            ?,
            ?
        from main.fct_handoff_queue
        on conflict (task_id) do nothing
        """,
        [as_of, run_id],
    )
    return _count_new(connection, run_id, HANDOFF_REASON)


def create_follow_up_tasks(
    connection: duckdb.DuckDBPyConnection, run_id: str, as_of: datetime
) -> int:
    """A follow-up task for every sent nurture email that has none yet.

    Derived from the send ledger rather than from the batch just sent, so an email whose run
    crashed before its task was written still gets the task on the next run.
    """
    connection.execute(
        f"""
        insert into ops.sales_tasks
        select
            {task_id_sql("lead_id", f"'{NURTURE_FOLLOW_UP_REASON}'", "track", "step")},
            lead_id,
            email,
            owner_rep_id,
            owner_email,
            '{NURTURE_FOLLOW_UP_REASON}',
            track,
            step,
            follow_up_title,
            why_now,
            sent_at + to_days(follow_up_due_days),
            'open',
            ?,
            ?
        from ops.email_sends
        where status = 'sent' and owner_rep_id is not null
        on conflict (task_id) do nothing
        """,
        [as_of, run_id],
    )
    return _count_new(connection, run_id, NURTURE_FOLLOW_UP_REASON)
