"""Sales tasks a rep can work: created set-based and idempotent, one pending per lead and rep,
ranked by priority and held to each rep's daily capacity.

A task's id is derived from what it is about (for a nurture follow-up
``md5(lead_id|reason|track|step)``, for a hand-off the lead and sales' latest feedback), and
``ops.sales_tasks.task_id`` is the primary key: re-running a hand-off, or settling a send
ledger twice, can never create a second task for the same thing.

Every new task starts ``queued``; ``arrange_task_queues`` then supersedes the older pending
task of the same lead and rep and opens queued tasks, highest priority first, while the rep
has room (``dim_reps.daily_task_capacity`` open tasks). Both run on every hand-off and
follow-up round, so a re-run only ever finds the queues already arranged.

On PostgreSQL several workers may create tasks at once (a hand-off beside a nurture run's
follow-ups): the primary key keeps each task to one row, and each round's insert and
arrangement run in turns under one lock (``TASKS_LOCK``), so the queues are read and
rearranged by one round at a time: one pending task per lead and rep, no rep over capacity.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from flows.crm_links import CrmLinks, crm_url_sql
from flows.warehouse import Connection, one_writer_at_a_time

HANDOFF_REASON = "mql_handoff"
TASKS_LOCK = "sales_tasks"  # taken by every round that creates or rearranges tasks
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
    "why_now, due_at, status, created_at, run_id, priority, assignment_rule"
)

# When a nurture email makes a follow-up task (track.yml `follow_up_when`), and from what
# moment its due days count: the lead's first open or click of that very email (matched by its
# message key), or the send itself for `always`.
FOLLOW_UP_POLICIES: dict[str, str] = {
    "engaged": "when the lead opens or clicks the email",  # the default
    "opened": "when the lead opens the email",
    "clicked": "when the lead clicks a link in the email",
    "always": "for every email sent",
    "never": "never",
}
DEFAULT_FOLLOW_UP_POLICY = "engaged"

# Priority, higher first: hand-offs of sales-ready leads above every follow-up, a follow-up
# after a click above one after an open or a plain send; within each tier the lead score
# (fit + engagement, clamped to 0-999) orders the leads.
PRIORITY_TIER_SIZE = 1000
HANDOFF_TIER = 2
CLICKED_FOLLOW_UP_TIER = 1


def priority_sql(tier: str, lead_score: str) -> str:
    return (
        f"({tier}) * {PRIORITY_TIER_SIZE} "
        f"+ least(greatest(coalesce(round({lead_score}), 0), 0), {PRIORITY_TIER_SIZE - 1})"
    )


TASK_ID_SQL = (
    "md5(concat_ws('|', {lead_id}, {reason}, coalesce({track}, ''), "
    "coalesce(cast({step} as varchar), '')))"
)


def task_id_sql(lead_id: str, reason: str, track: str, step: str) -> str:
    return TASK_ID_SQL.format(lead_id=lead_id, reason=reason, track=track, step=step)


# The title says how the rep reaches the lead, by the channels the lead has: no call for a lead
# without a phone, no email for one without an address. A lead with neither (reach_by = crm) is
# found by its source and record id, linked by its source's template (flows/crm_links.py) and
# without a link when there is none.
HANDOFF_TITLE_SQL = f"""
    case
        when reach_by = 'crm' then concat_ws(' ',
            'Follow up on', source, 'record', source_lead_id,
            case when company is not null then 'at ' || company end,
            {crm_url_sql("source", "source_lead_id")})
        else concat_ws(' ',
            case
                when email is not null and phone is not null then 'Call or email'
                when email is not null then 'Email'
                else 'Call'
            end,
            coalesce(concat_ws(' ', first_name, last_name), 'the lead'),
            case when company is not null then 'at ' || company end)
    end"""


def _count_new(connection: Connection, run_id: str, reason: str) -> int:
    row = connection.execute(
        "select count(*) from ops.sales_tasks where run_id = ? and reason = ?", [run_id, reason]
    ).fetchone()
    return int(row[0]) if row else 0


def create_handoff_tasks(
    connection: Connection,
    run_id: str,
    as_of: datetime,
    crm_links: CrmLinks | None = None,
) -> int:
    """One task per lead in ``fct_handoff_queue``; returns how many were new.

    A hand-off is identified by the lead and sales' latest feedback on it
    (``dim_leads.latest_outcome_at``): re-running adds nothing, while a lead that sales
    recycled and that qualifies again is handed off anew. ``step`` numbers those rounds.
    A lead known only by its source record id gets a task naming the source and the record
    id, with a link into the CRM when ``crm_links`` has a template for its source.
    """
    with one_writer_at_a_time(connection, TASKS_LOCK):
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
            'queued',
            $as_of,
            $run_id,
            {priority_sql(str(HANDOFF_TIER), "lead_score")},
            assignment_rule
        from queue
        on conflict (task_id) do nothing
        """,
            {"as_of": as_of, "run_id": run_id, **(crm_links or CrmLinks()).sql_parameters()},
        )
        _arrange_task_queues(connection, as_of)
    return _count_new(connection, run_id, HANDOFF_REASON)


def create_follow_up_tasks(
    connection: Connection,
    run_id: str,
    as_of: datetime,
    policies: Mapping[tuple[str, int], str],
) -> int:
    """A follow-up task for every sent nurture email whose step's policy says it helps.

    ``policies`` maps (track, step) to a FOLLOW_UP_POLICIES value (a step not in it gets the
    default). The lead's opens and clicks are its email events carrying the send's message
    key; an email that qualifies later (opened next week) gets its task on that run, due
    ``follow_up_due_days`` after the engagement. Derived from the send ledger rather than
    from the batch just sent, so an email whose run crashed before its task was written still
    gets the task on the next run. The why-now says what the lead did with which email and
    the lead's stage in the words of the lifecycle reasons seed; the title adds the channels
    the lead can be reached by.
    """
    keys = list(policies)
    task_id = task_id_sql(
        "sends.lead_id", f"'{NURTURE_FOLLOW_UP_REASON}'", "sends.track", "sends.step"
    )
    priority = priority_sql(
        f"case when sends.clicked_at is not null then {CLICKED_FOLLOW_UP_TIER} else 0 end",
        "leads.lead_score",
    )
    with one_writer_at_a_time(connection, TASKS_LOCK):
        connection.execute(
            f"""
        insert into ops.sales_tasks ({TASK_INSERT_COLUMNS})
        with policies as (
            select
                unnest(cast(? as varchar[])) as track,
                unnest(cast(? as integer[])) as step,
                unnest(cast(? as varchar[])) as follow_up_when
        ),

        engagement as (
            select
                message_key,
                min(occurred_at) filter (where event_type = 'email_open') as opened_at,
                min(occurred_at) filter (where event_type = 'email_click') as clicked_at
            from raw.events
            where message_key is not null and event_type in ('email_open', 'email_click')
            group by message_key
        ),

        sends as (
            select
                sends.*,
                engagement.clicked_at,
                case coalesce(policies.follow_up_when, '{DEFAULT_FOLLOW_UP_POLICY}')
                    when 'always' then sends.sent_at
                    when 'opened' then engagement.opened_at
                    when 'clicked' then engagement.clicked_at
                    when 'engaged' then least(engagement.opened_at, engagement.clicked_at)
                end as prompted_at,
                case
                    when engagement.clicked_at is not null then 'Clicked a link in'
                    when engagement.opened_at is not null then 'Opened'
                    else 'Was sent'
                end as lead_did
            from ops.email_sends as sends
            left join policies
                on sends.track = policies.track and sends.step = policies.step
            left join engagement on sends.message_key = engagement.message_key
            where sends.status = 'sent' and sends.owner_rep_id is not null
        )

        select
            {task_id},
            sends.lead_id,
            sends.email,
            leads.phone,
            sends.owner_rep_id,
            sends.owner_email,
            '{NURTURE_FOLLOW_UP_REASON}',
            sends.track,
            sends.step,
            sends.follow_up_title || case
                when leads.phone is not null then ' (call or email)' else ' (by email)'
            end,
            concat_ws(' ',
                sends.lead_did || ' the email "' || coalesce(sends.subject, sends.template)
                    || '" on ' || strftime(sends.prompted_at, '%Y-%m-%d') || '.',
                reasons.description),
            sends.prompted_at + to_days(sends.follow_up_due_days),
            'queued',
            ?,
            ?,
            {priority},
            -- The rule that made the rep the lead's owner, while the rep the email named still is.
            case when leads.owner_rep_id = sends.owner_rep_id then leads.assignment_rule end
        from sends
        left join main.dim_leads as leads on sends.lead_id = leads.lead_id
        left join main.lifecycle_reasons as reasons on leads.stage_reason = reasons.reason_code
        where sends.prompted_at is not null
        on conflict (task_id) do nothing
        """,
            [
                [track for track, _ in keys],
                [step for _, step in keys],
                [policies[key] for key in keys],
                as_of,
                run_id,
            ],
        )
        _arrange_task_queues(connection, as_of)
    return _count_new(connection, run_id, NURTURE_FOLLOW_UP_REASON)


def arrange_task_queues(connection: Connection, as_of: datetime) -> None:
    """Supersede, then release: one pending task per lead and rep, open up to capacity.

    Of a lead's pending tasks with one rep the hand-off wins (sales-ready comes first), else
    the newest (ties: the later step); the others end ``superseded`` naming the task that
    replaced them. Then each rep's queued tasks open, highest priority first (then oldest),
    while the rep has fewer open tasks than ``dim_reps.daily_task_capacity`` and has had fewer
    than that opened on the run's (UTC) day, ``opened_at``: closing tasks makes room on the
    list, but a day's new work stays within the capacity. A rep not in ``dim_reps`` has no
    cap. The rest stays queued for a run with room.
    """
    with one_writer_at_a_time(connection, TASKS_LOCK):
        _arrange_task_queues(connection, as_of)


def _arrange_task_queues(connection: Connection, as_of: datetime) -> None:
    # Each update checks the status again on the row it changes: on PostgreSQL a task another
    # worker ended meanwhile (an outcome closes tasks outside TASKS_LOCK) stays ended.
    pending = ", ".join(f"'{status}'" for status in PENDING_TASK_STATUSES)
    connection.execute(
        f"""
        update ops.sales_tasks as tasks
        set status = 'superseded', closed_at = ?, close_reason = 'superseded by task ' || kept
        from (
            select
                task_id,
                first_value(task_id) over (
                    partition by lead_id, owner_rep_id
                    order by reason = '{HANDOFF_REASON}' desc, created_at desc,
                        step desc nulls last, task_id desc
                ) as kept
            from ops.sales_tasks
            where status in ({pending})
        ) as ranked
        where tasks.task_id = ranked.task_id and ranked.kept <> ranked.task_id
            and tasks.status in ({pending})
        """,
        [as_of],
    )
    day_start = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    connection.execute(
        """
        update ops.sales_tasks as tasks
        set status = 'open', opened_at = $as_of
        from (
            with open_counts as (
                select
                    owner_rep_id,
                    count(*) filter (where status = 'open') as open_count,
                    count(*) filter (
                        where opened_at >= $day_start and opened_at < $day_end
                    ) as opened_today_count
                from ops.sales_tasks
                group by owner_rep_id
            ),

            queued as (
                select
                    task_id,
                    owner_rep_id,
                    row_number() over (
                        partition by owner_rep_id order by priority desc nulls last,
                            created_at, task_id
                    ) as queue_position
                from ops.sales_tasks
                where status = 'queued'
            )

            select queued.task_id
            from queued
            left join main.dim_reps as reps on queued.owner_rep_id = reps.rep_id
            left join open_counts on queued.owner_rep_id = open_counts.owner_rep_id
            where reps.daily_task_capacity is null
                or queued.queue_position <= reps.daily_task_capacity - greatest(
                    coalesce(open_counts.open_count, 0),
                    coalesce(open_counts.opened_today_count, 0)
                )
        ) as released
        where tasks.task_id = released.task_id and tasks.status = 'queued'
        """,
        {"as_of": as_of, "day_start": day_start, "day_end": day_start + timedelta(days=1)},
    )


def queued_tasks_by_rep(connection: Connection) -> dict[str, int]:
    """Tasks waiting for room in each rep's capacity: the overflow the sales manager sees."""
    return dict(
        connection.execute(
            "select owner_rep_id, count(*) from ops.sales_tasks where status = 'queued' "
            "group by all order by all"
        ).fetchall()
    )
