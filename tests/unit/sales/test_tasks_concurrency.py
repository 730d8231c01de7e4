"""Two workers creating sales tasks at once on a PostgreSQL warehouse (runs may overlap there):
each task is created once, by one of them, and the queues stay arranged: at most one pending
task per lead and rep, the hand-off kept, no rep over capacity."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import partial

from flows.sales.tasks import TASKS_LOCK, create_follow_up_tasks, create_handoff_tasks
from flows.warehouse import Connection, connect
from tests.concurrency import at_once
from tests.unit.sales.task_marts import (
    AS_OF,
    add_email_event,
    add_handoff_queue,
    add_send,
    create_task_marts,
)

REPS = ("R1", "R2", "R3")
LEADS = 60
CAPACITY = 15  # per rep: 20 leads each, so the queues overflow


def sales_ready_leads_with_an_opened_email(warehouse: Connection) -> None:
    """LEADS leads in the hand-off queue, each also sent a nurture email it opened (so a
    follow-up is due too): a hand-off and a follow-up compete for the same lead and rep."""
    create_task_marts(warehouse)
    for rep in REPS:
        warehouse.execute("insert into main.dim_reps values (?, ?, true)", [rep, CAPACITY])
    for number in range(LEADS):
        lead, rep = f"L{number:03d}", REPS[number % len(REPS)]
        queued = (lead, f"{lead}@acme.com", None, "A", "B", None, rep, "r@x.com", "Why", AS_OF)
        add_handoff_queue(warehouse, [queued], score=number)
        add_send(warehouse, f"k{number}", lead=lead, owner=rep)
        add_email_event(warehouse, f"k{number}", "email_open", AS_OF + timedelta(hours=1))


def test_two_workers_handing_off_the_same_leads_at_once_create_each_task_once(
    postgres_database,
):
    setup, first, second = (connect(postgres_database) for _ in range(3))
    sales_ready_leads_with_an_opened_email(setup)
    when = AS_OF + timedelta(hours=2)
    for round_number in range(3):  # rounds after the first find every task there already
        created = at_once(
            partial(create_handoff_tasks, first, f"A{round_number}", when),
            partial(create_handoff_tasks, second, f"B{round_number}", when),
        )
        assert sum(created) == (LEADS if round_number == 0 else 0)
    # A nurture run's follow-ups beside a hand-off, for the same leads and reps.
    created = at_once(
        partial(create_follow_up_tasks, first, "A-nurture", when, {}),
        partial(create_handoff_tasks, second, "B-handoff", when),
    )
    assert created == [LEADS, 0]

    assert setup.execute(
        "select reason, count(*), count(distinct lead_id) from ops.sales_tasks "
        "group by 1 order by 1"
    ).fetchall() == [("mql_handoff", LEADS, LEADS), ("nurture_follow_up", LEADS, LEADS)]
    # One pending task per lead and rep, the hand-off; the follow-ups superseded by it.
    assert setup.execute(
        "select reason, status, count(*) from ops.sales_tasks group by 1, 2 order by 1, 2"
    ).fetchall() == [
        ("mql_handoff", "open", CAPACITY * len(REPS)),
        ("mql_handoff", "queued", LEADS - CAPACITY * len(REPS)),
        ("nurture_follow_up", "superseded", LEADS),
    ]
    assert setup.execute(
        "select owner_rep_id, count(*) from ops.sales_tasks where status = 'open' "
        "group by 1 order by 1"
    ).fetchall() == [(rep, CAPACITY) for rep in REPS]
    for connection in (setup, first, second):
        connection.close()


def test_a_round_waits_while_another_worker_arranges_the_queues(postgres_database):
    holder, worker = connect(postgres_database), connect(postgres_database)
    sales_ready_leads_with_an_opened_email(holder)
    created: list[int] = []
    with holder.advisory_lock(TASKS_LOCK):
        waiting = threading.Thread(
            target=lambda: created.append(create_handoff_tasks(worker, "run-1", AS_OF))
        )
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive()
        assert holder.execute("select count(*) from ops.sales_tasks").fetchall() == [(0,)]
    waiting.join(timeout=60)
    assert created == [LEADS]
    holder.close()
    worker.close()
