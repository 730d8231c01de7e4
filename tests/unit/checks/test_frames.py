"""The gate's SQL: the facts beside each queue that dbt's tests cannot see, on a small warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd
import pytest

from flows.checks.frames import (
    MIN_BATCH_FOR_SHARES,
    MIN_TRAILING_RUNS,
    OPEN_STATUS,
    read_gate_frames,
)
from flows.sales.tasks import TASK_STATUSES
from flows.warehouse import Connection

AS_OF = datetime(2026, 12, 7, 8, 0)
RUN_ID = "run-now"


@pytest.fixture
def warehouse(warehouse: Connection) -> Iterator[Connection]:
    """Both warehouses (tests/conftest.py), with the marts the gate reads."""
    connection = warehouse
    connection.execute("""
        create table main.dim_reps as
        select * from (values
            ('rep_a', true, 3), ('rep_b', false, 40), ('rep_c', true, 0)
        ) as reps(rep_id, is_active, daily_task_capacity)
    """)
    connection.execute("""
        create table main.fct_handoff_queue (
            lead_id varchar, source varchar, owner_rep_id varchar, due_at timestamp
        )
    """)
    connection.execute("""
        create table main.dim_leads (
            lead_id varchar, email varchar, source varchar, is_do_not_email boolean,
            is_suppressed boolean, suppression_reason varchar
        )
    """)
    connection.execute("""
        create table main.fct_nurture_queue (lead_id varchar, email varchar, is_due boolean)
    """)
    yield connection


def add_handoffs(connection: Connection, *rows: tuple[str, str, str | None]) -> None:
    connection.executemany(
        "insert into main.fct_handoff_queue values (?, ?, ?, ?)",
        [[lead, source, owner, AS_OF] for lead, source, owner in rows],
    )


def add_task(
    connection: Connection,
    task_id: str,
    *,
    owner: str = "rep_a",
    lead_id: str = "old",
    status: str = "open",
    created_at: datetime = AS_OF,
    run_id: str = "run-earlier",
) -> None:
    connection.execute(
        """
        insert into ops.sales_tasks (task_id, lead_id, owner_rep_id, owner_email, reason, title,
            why_now, due_at, status, created_at, run_id)
        values (?, ?, ?, 'rep@leadflow.example', 'mql_handoff', 'Call', 'Demo', ?, ?, ?, ?)
        """,
        [task_id, lead_id, owner, created_at, status, created_at, run_id],
    )


def add_gate_run(connection: Connection, run_id: str, rows: int, days_ago: int):
    connection.execute(
        "insert into ops.gate_results values (?, 'handoff_queue', 'handoff_queue.critical', "
        "'critical', true, ?, '[]', ?)",
        [run_id, rows, AS_OF - timedelta(days=days_ago)],
    )


def handoff_frame(connection: Connection) -> dict[str, dict[str, object]]:
    frame = read_gate_frames(connection, RUN_ID, AS_OF)["handoff_queue"]
    return {row["lead_id"]: row for row in frame.to_dict("records")}


def test_the_open_status_is_one_of_the_task_statuses():
    assert OPEN_STATUS in TASK_STATUSES


def test_each_owner_is_looked_up_in_dim_reps(warehouse):
    add_handoffs(
        warehouse,
        ("l1", "crm", "rep_a"),
        ("l2", "crm", "rep_b"),
        ("l3", "crm", "rep_gone"),
        ("l4", "crm", None),
        ("l5", "crm", "rep_c"),
    )

    rows = handoff_frame(warehouse)

    assert {lead: row["owner_rep_status"] for lead, row in rows.items()} == {
        "l1": "active",
        "l2": "inactive",
        "l3": "not_a_rep",
        "l4": "unassigned",
        "l5": "active",
    }
    assert rows["l5"]["owner_daily_task_capacity"] == 0
    assert rows["l1"]["owner_capacity_left"] == 3


def test_capacity_left_counts_the_tasks_open_now(warehouse):
    add_handoffs(warehouse, ("l1", "crm", "rep_a"))
    for number in range(4):
        add_task(warehouse, f"today-{number}")
    add_task(warehouse, "yesterday", created_at=AS_OF - timedelta(days=1))
    add_task(warehouse, "waiting", status="queued")
    add_task(warehouse, "done-today", status="done")
    add_task(warehouse, "other-rep", owner="rep_b")

    # Three allowed, five open (four from today, one from yesterday): two over; queued and
    # ended tasks take no room.
    assert handoff_frame(warehouse)["l1"]["owner_capacity_left"] == -2


def test_volume_is_judged_against_the_median_of_the_trailing_runs_once_there_are_enough(
    warehouse,
):
    add_handoffs(warehouse, *((f"l{number}", "crm", "rep_a") for number in range(30)))
    for days_ago in range(1, MIN_TRAILING_RUNS):
        add_gate_run(warehouse, f"run-{days_ago}", 10, days_ago)

    assert pd.isna(handoff_frame(warehouse)["l0"]["handoff_volume_ratio"])

    add_gate_run(warehouse, "run-old", 1000, MIN_TRAILING_RUNS)  # an outlier moves no median
    add_gate_run(warehouse, RUN_ID, 30, 0)  # this run's own verdict is not its baseline
    ratios = {row["handoff_volume_ratio"] for row in handoff_frame(warehouse).values()}
    assert ratios == {3.0}


def test_source_share_drift_compares_with_the_trailing_runs_hand_offs(warehouse):
    batch = [(f"w{n}", "web_forms", "rep_a") for n in range(MIN_BATCH_FOR_SHARES)] + [
        (f"c{n}", "crm", "rep_a") for n in range(MIN_BATCH_FOR_SHARES)
    ]
    add_handoffs(warehouse, *batch)
    # Earlier runs handed off 3 crm leads for each web lead.
    for run in range(MIN_TRAILING_RUNS):
        for number in range(4):
            lead = f"old-{run}-{number}"
            source = "web_forms" if number == 0 else "crm"
            warehouse.execute(
                "insert into main.dim_leads values (?, null, ?, false, false, null)",
                [lead, source],
            )
            add_task(
                warehouse,
                f"t-{run}-{number}",
                lead_id=lead,
                run_id=f"run-{run}",
                created_at=AS_OF - timedelta(days=run + 1),
            )

    rows = handoff_frame(warehouse)

    assert rows["w0"]["source_share_drift"] == pytest.approx(0.5 - 0.25)
    assert rows["c0"]["source_share_drift"] == pytest.approx(0.5 - 0.75)


def test_source_share_drift_needs_a_batch_big_enough_to_mean_something(warehouse):
    add_handoffs(warehouse, *((f"l{n}", "crm", "rep_a") for n in range(MIN_BATCH_FOR_SHARES - 1)))
    for run in range(MIN_TRAILING_RUNS):
        add_task(warehouse, f"t-{run}", run_id=f"run-{run}", created_at=AS_OF - timedelta(days=1))

    assert all(pd.isna(row["source_share_drift"]) for row in handoff_frame(warehouse).values())


def test_a_due_email_step_is_checked_against_the_lead_it_would_reach(warehouse):
    warehouse.execute("""
        insert into main.dim_leads values
            ('ok', 'ok@acme.example', 'crm', false, false, null),
            ('no-address', null, 'crm', false, false, null),
            ('unsubscribed', 'u@acme.example', 'crm', false, true, 'unsubscribe'),
            ('dne', 'd@acme.example', 'crm', true, true, 'do_not_email'),
            ('moved', 'new@acme.example', 'crm', false, false, null),
            ('later', 'later@acme.example', 'crm', false, true, 'bounce')
    """)
    warehouse.execute("""
        insert into main.fct_nurture_queue values
            ('ok', 'OK@acme.example', true),
            ('no-address', 'stale@acme.example', true),
            ('unsubscribed', 'u@acme.example', true),
            ('dne', 'd@acme.example', true),
            ('moved', 'old@acme.example', true),
            ('gone', 'gone@acme.example', true),
            ('later', 'later@acme.example', false)
    """)

    frame = read_gate_frames(warehouse, RUN_ID, AS_OF)["nurture_queue"]

    blockers = frame["email_blocker"].astype(object).where(frame["email_blocker"].notna(), None)
    assert dict(zip(frame["lead_id"], blockers, strict=True)) == {
        "ok": None,
        "no-address": "no_email",
        "unsubscribed": "unsubscribe",
        "dne": "do_not_email",
        "moved": "email_changed",
        "gone": "lead_not_found",
        "later": None,  # not due: nothing is sent, nothing to block
    }
