"""Create sales tasks, set-based and idempotent.

A task's id is derived from what it is about (for a nurture follow-up
``md5(lead_id|reason|track|step)``, for a hand-off the lead and sales' latest feedback), and
``ops.sales_tasks.task_id`` is the primary key: re-running a hand-off, or settling a send
ledger twice, can never create a second task for the same thing.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

HANDOFF_REASON = "mql_handoff"
# A task's life: `queued` waits for room in its rep's daily capacity, `open` is on the rep's
# list, and it ends `done` (sales accepted or won the lead), `closed` (rejected or lost, the
# reason in close_reason) or `superseded` (a newer task for the lead and rep replaced it).
# closed_at is set when it ends; only queued and open tasks count as the rep's work.
TASK_STATUSES = ("queued", "open", "done", "closed", "superseded")
PENDING_TASK_STATUSES = ("queued", "open")
NURTURE_FOLLOW_UP_REASON = "nurture_follow_up"
# Named, not positional: warehouses created before ``phone`` existed have it as the last column.
TASK_INSERT_COLUMNS = (
    "task_id, lead_id, email, phone, owner_rep_id, owner_email, reason, track, step, title, "
    "why_now, due_at, status, created_at, run_id"
)

TASK_ID_SQL = (
    "md5(concat_ws('|', {lead_id}, {reason}, coalesce({track}, ''), "
    "coalesce(cast({step} as varchar), '')))"
)


def task_id_sql(lead_id: str, reason: str, track: str, step: str) -> str:
    return TASK_ID_SQL.format(lead_id=lead_id, reason=reason, track=track, step=step)


# A lead with neither email nor phone (reach_by = crm) is found by its source and record id;
# the link replaces {source} and {source_lead_id} in the template (settings.crm_url_template),
# URL-encoded, and is left out when no template is set (the parameter is null).
HANDOFF_TITLE_SQL = """
    case
        when reach_by = 'crm' then concat_ws(' ',
            'Follow up on', source, 'record', source_lead_id,
            case when company is not null then 'at ' || company end,
            replace(replace(?, '{source}', url_encode(source)),
                    '{source_lead_id}', url_encode(source_lead_id)))
        else concat_ws(' ', 'Follow up with', first_name, last_name,
                       case when company is not null then 'at ' || company end)
    end"""


def _count_new(connection: duckdb.DuckDBPyConnection, run_id: str, reason: str) -> int:
    row = connection.execute(
        "select count(*) from ops.sales_tasks where run_id = ? and reason = ?", [run_id, reason]
    ).fetchone()
    return int(row[0]) if row else 0


def create_handoff_tasks(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    as_of: datetime,
    crm_url_template: str | None = None,
) -> int:
    """One task per lead in ``fct_handoff_queue``; returns how many were new.

    A hand-off is identified by the lead and sales' latest feedback on it
    (``dim_leads.latest_outcome_at``): re-running adds nothing, while a lead that sales
    recycled and that qualifies again is handed off anew. ``step`` numbers those rounds.
    A lead known only by its source record id gets a task naming the source and the record
    id, with a link into the CRM when ``crm_url_template`` is given.
    """
    connection.execute(
        f"""
        insert into ops.sales_tasks ({TASK_INSERT_COLUMNS})
        with rounds as (
            select lead_id, max(step) as last_round
            from ops.sales_tasks
            where reason = '{HANDOFF_REASON}'
            group by lead_id
        ),

        queue as (
            select
                queue.*,
                md5(concat_ws('|', queue.lead_id, '{HANDOFF_REASON}',
                              coalesce(cast(leads.latest_outcome_at as varchar), '')))
                    as task_id,
                coalesce(rounds.last_round, 0) + 1 as handoff_round
            from main.fct_handoff_queue as queue
            inner join main.dim_leads as leads on queue.lead_id = leads.lead_id
            left join rounds on queue.lead_id = rounds.lead_id
        )

        select
            task_id,
            lead_id,
            email,
            phone,
            owner_rep_id,
            owner_email,
            '{HANDOFF_REASON}',
            null,
            handoff_round,
            {HANDOFF_TITLE_SQL},
            why_now,
            due_at,
            'open',
            ?,
            ?
        from queue
        on conflict (task_id) do nothing
        """,
        [crm_url_template, as_of, run_id],
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
        insert into ops.sales_tasks ({TASK_INSERT_COLUMNS})
        select
            {task_id_sql("lead_id", f"'{NURTURE_FOLLOW_UP_REASON}'", "track", "step")},
            lead_id,
            email,
            null,
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
