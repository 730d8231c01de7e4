"""Outcomes in (landing, sealing, upload naming, loading) and an outcome closing tasks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from flows.email.events import LandingWriter
from flows.sales.outcomes import (
    LANDING_PREFIX,
    OutcomeError,
    TaskOnRecord,
    callback_signature,
    checked_reason,
    close_tasks_for_outcomes,
    command_outcome,
    find_task,
    outcome_reasons,
    place_upload,
    seal_landed_outcomes,
    upload_target,
)
from flows.settings import PROJECT_ROOT
from flows.sources.inbox import load_file, scan_inbox
from flows.warehouse import connect

AS_OF = datetime(2026, 11, 22, 9)
CREATED = datetime(2026, 11, 20, 8)


def add_task(warehouse, task_id, lead_id, status="open", created_at=CREATED):
    warehouse.execute(
        "insert into ops.sales_tasks (task_id, lead_id, email, owner_rep_id, owner_email, "
        "reason, title, why_now, due_at, status, created_at, run_id) values "
        "(?, ?, null, 'rep_01', 'r1@x.com', 'mql_handoff', 'Follow up', 'why', ?, ?, ?, 'run')",
        [task_id, lead_id, created_at, status, created_at],
    )


def add_outcomes(warehouse, rows):
    """Resolved outcomes (outcome_id, lead_id, outcome, reason, occurred_at), as dbt builds."""
    warehouse.execute("create schema if not exists main")  # dbt's, on PostgreSQL
    warehouse.execute(
        "create or replace table main.int_lead_outcomes_resolved (outcome_id varchar, "
        "lead_id varchar, outcome varchar, reason varchar, occurred_at timestamp)"
    )
    warehouse.executemany(
        "insert into main.int_lead_outcomes_resolved values (?, ?, ?, ?, ?)", rows
    )


def task_states(warehouse):
    return {
        task_id: (status, closed_at, close_reason)
        for task_id, status, closed_at, close_reason in warehouse.execute(
            "select task_id, status, closed_at, close_reason from ops.sales_tasks"
        ).fetchall()
    }


def test_an_outcome_ends_the_leads_pending_tasks_as_done_or_closed_with_its_reason(warehouse):
    for task_id, lead_id in [("t1", "L1"), ("t2", "L2"), ("t3", "L3"), ("t4", "L4")]:
        add_task(warehouse, task_id, lead_id)
    add_task(warehouse, "t1-queued", "L1", status="queued")
    add_task(warehouse, "t5", "L5")  # no outcome
    at = datetime(2026, 11, 21, 15)
    add_outcomes(
        warehouse,
        [
            ("o1", "L1", "accepted", None, at),
            ("o2", "L2", "rejected", "not_ready", at),
            ("o3", "L3", "lost", None, at),
            ("o4", "L4", "won", None, at),
        ],
    )

    assert close_tasks_for_outcomes(warehouse, AS_OF) == 5

    assert task_states(warehouse) == {
        "t1": ("done", at, "accepted"),
        "t1-queued": ("done", at, "accepted"),
        "t2": ("closed", at, "not_ready"),
        "t3": ("closed", at, "lost"),
        "t4": ("done", at, "won"),
        "t5": ("open", None, None),
    }


def test_closing_is_idempotent_and_never_touches_an_ended_task(warehouse):
    add_task(warehouse, "t1", "L1")
    add_task(warehouse, "t-old", "L1", status="superseded")
    add_outcomes(warehouse, [("o1", "L1", "rejected", "bad_fit", datetime(2026, 11, 21))])

    assert close_tasks_for_outcomes(warehouse, AS_OF) == 1
    first = task_states(warehouse)
    add_outcomes(
        warehouse,
        [
            ("o1", "L1", "rejected", "bad_fit", datetime(2026, 11, 21)),
            ("o2", "L1", "won", None, datetime(2026, 11, 21, 12)),
        ],
    )
    assert close_tasks_for_outcomes(warehouse, AS_OF) == 0
    assert task_states(warehouse) == first
    assert first["t-old"] == ("superseded", None, None)


def test_an_outcome_older_than_a_task_or_after_the_run_clock_does_not_close_it(warehouse):
    add_task(warehouse, "t-new", "L1", created_at=datetime(2026, 11, 21, 9))
    add_task(warehouse, "t2", "L2")
    add_outcomes(
        warehouse,
        [
            ("o-before", "L1", "rejected", "not_ready", datetime(2026, 11, 21, 8, 59)),
            ("o-future", "L2", "accepted", None, datetime(2026, 11, 22, 9, 1)),
        ],
    )

    assert close_tasks_for_outcomes(warehouse, AS_OF) == 0
    assert {state[0] for state in task_states(warehouse).values()} == {"open"}


def test_the_first_outcome_after_the_task_ends_it(warehouse):
    add_task(warehouse, "t1", "L1")
    add_outcomes(
        warehouse,
        [
            ("o-won", "L1", "won", None, datetime(2026, 11, 21, 12)),
            ("o-acc", "L1", "accepted", None, datetime(2026, 11, 21, 10)),
        ],
    )
    close_tasks_for_outcomes(warehouse, AS_OF)
    assert task_states(warehouse)["t1"] == ("done", datetime(2026, 11, 21, 10), "accepted")


def test_the_reasons_an_outcome_can_give_come_from_the_reasons_seed():
    reasons = outcome_reasons(PROJECT_ROOT / "dbt_project")
    assert "not_ready" in reasons and reasons["not_ready"].startswith("Sales says")
    assert "won" not in reasons  # a stage reason, not one sales gives
    assert checked_reason(" Not_Ready ", reasons) == "not_ready"
    assert checked_reason(None, reasons) is None
    with pytest.raises(OutcomeError) as raised:
        checked_reason("too_expensive", reasons)
    assert "'too_expensive' is not a reason" in str(raised.value)
    assert "  no_budget: Sales says the lead has no budget now." in str(raised.value)


def test_find_task_names_a_task_that_does_not_exist(warehouse):
    add_task(warehouse, "t1", "L1")
    assert find_task(warehouse, " t1 ").lead_id == "L1"
    with pytest.raises(OutcomeError, match="no sales task 'nope'"):
        find_task(warehouse, "nope")


def test_the_same_command_outcome_has_the_same_id():
    task = TaskOnRecord("t1", "L1", "rep_01", "open", "Follow up")
    at = datetime(2026, 11, 22, 9, 30)
    record = command_outcome(task, "rejected", "not_ready", "call in Q3", at)
    assert record == command_outcome(
        task, "rejected", "not_ready", "call in Q3", at.replace(hour=10)
    ) | {"occurred_at": "2026-11-22 09:30:00"}
    assert record["outcome_id"] != command_outcome(task, "accepted", None, None, at)["outcome_id"]
    assert (record["task_id"], record["lead_id"], record["rep_id"]) == ("t1", "L1", "rep_01")


def test_sealing_copies_each_complete_new_line_once(tmp_path):
    landing, drop = tmp_path / "sales_outcomes", tmp_path / "landing"
    writer = LandingWriter(landing, prefix=LANDING_PREFIX)
    writer.append([{"outcome_id": "a"}, {"outcome_id": "b"}])

    assert seal_landed_outcomes(landing, drop) == 2
    assert seal_landed_outcomes(landing, drop) == 0
    writer.append([{"outcome_id": "c"}])
    with next(landing.glob("*.jsonl")).open("ab") as handle:
        handle.write(b'{"outcome_id": "d", "outc')  # a write in progress
    assert seal_landed_outcomes(landing, drop) == 1
    writer.close()

    sealed = sorted(drop.glob("outcomes__sales__*.jsonl"))
    assert [path.name.rsplit(".", 2)[1] for path in sealed] == ["L1-2", "L3-3"]
    lines = [json.loads(line) for path in sealed for line in path.read_text().splitlines()]
    assert lines == [{"outcome_id": "a"}, {"outcome_id": "b"}, {"outcome_id": "c"}]
    assert not list(drop.glob(".*"))  # no temporary file left behind


def test_a_line_a_crash_cut_short_is_sealed_as_a_record_that_is_quarantined(tmp_path, warehouse):
    landing, drop = tmp_path / "sales_outcomes", tmp_path / "landing"
    landing.mkdir()
    (landing / "outcomes-20261122-1.jsonl").write_text(
        '{"outcome_id": "a", "outcome": "won", "task_id": "t1", "occurred_at": "2026-11-21"}\n'
        '{"outcome_id": "b", "outc\n'
    )
    seal_landed_outcomes(landing, drop)
    load = load_file(warehouse, scan_inbox(warehouse, drop).new[0], AS_OF, "run")

    assert (load.rows_read, load.rows_loaded, load.reasons) == (2, 1, {"missing_required": 1})
    record = warehouse.execute("select record from ops.quarantine").fetchone()[0]
    assert json.loads(record) == {"landed_line": '{"outcome_id": "b", "outc'}


def write_outcomes(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_outcomes_load_by_task_lead_email_or_record_id_and_a_resend_is_quarantined(
    tmp_path, warehouse
):
    header = "outcome_id,outcome,reason,occurred_at,task_id,lead_id,email,source_lead_id,note"
    drop = tmp_path / "landing"
    drop.mkdir()
    write_outcomes(
        drop / "outcomes__crm__one.csv",
        header,
        "o1,rejected,not_ready,2026-11-21 10:00,t1,,,,call in Q3",
        "o2,accepted,,2026-11-21 10:00,,L2,,,",
        "o3,won,,2026-11-21 10:00,,,ann@acme.com,,",
        "o4,lost,competitor,2026-11-21 10:00,,,,CRM-4,",
        "o5,accepted,,2026-11-21 10:00,,,,,",
    )
    first = load_file(warehouse, scan_inbox(warehouse, drop).new[0], AS_OF, "run")
    assert (first.rows_loaded, first.reasons) == (4, {"missing_contact_key": 1})
    assert warehouse.execute(
        "select outcome_id, task_id, lead_id, note from raw.outcomes order by outcome_id limit 2"
    ).fetchall() == [("o1", "t1", None, "call in Q3"), ("o2", None, "L2", None)]

    # The CRM sends o1 again, and o6 is new; another source may reuse the id o1.
    write_outcomes(
        drop / "outcomes__crm__two.csv",
        header,
        "o1,rejected,not_ready,2026-11-21 10:00,t1,,,,call in Q3",
        "o6,accepted,,2026-11-21 11:00,t6,,,,",
    )
    write_outcomes(drop / "outcomes__web__one.csv", header, "o1,accepted,,2026-11-21,t9,,,,")
    loads = [load_file(warehouse, new, AS_OF, "run") for new in scan_inbox(warehouse, drop).new]

    assert [(load.rows_loaded, load.reasons) for load in loads] == [
        (1, {"loaded_before": 1}),
        (1, {}),
    ]
    assert warehouse.execute(
        "select reason from ops.quarantine where reason_code = 'loaded_before'"
    ).fetchall() == [('outcome_id "o1" was loaded from crm before (a resend)',)]


def test_an_upload_is_named_for_its_source_and_content_and_placed_once(tmp_path):
    upload = write_outcomes(tmp_path / "Q4 outcomes (final).CSV", "outcome_id,outcome")
    target = upload_target(upload, "crm", tmp_path / "landing")
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()[:12]
    assert target.name == f"outcomes__crm__Q4_outcomes_final_-{digest}.csv"

    assert place_upload(upload, target) is True
    assert place_upload(upload, target) is False
    assert target.read_bytes() == upload.read_bytes()
    with pytest.raises(OutcomeError, match="source 'My CRM': use lower-case letters"):
        upload_target(upload, "My CRM", tmp_path)
    with pytest.raises(OutcomeError, match="upload a CSV or JSON-lines file"):
        upload_target(tmp_path / "outcomes.xlsx", "crm", tmp_path)


def test_the_callback_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"outcome_id":"o1"}'
    expected = hmac.new(b"s3cret", b"1796000000." + body, hashlib.sha256).hexdigest()
    assert callback_signature("s3cret", "1796000000", body) == f"sha256={expected}"


# -- two workers on one PostgreSQL warehouse -----------------------------------------------------
def test_a_task_another_worker_is_closing_is_closed_once(postgres_database):
    first, second = connect(postgres_database), connect(postgres_database)
    for number in range(3):
        add_task(first, f"t{number}", f"L{number}")
    add_outcomes(
        first, [(f"o{n}", f"L{n}", "accepted", None, datetime(2026, 11, 21)) for n in range(3)]
    )

    first.begin()
    assert close_tasks_for_outcomes(first, AS_OF) == 3  # its row locks held until commit
    with ThreadPoolExecutor(1) as pool:
        closing = pool.submit(close_tasks_for_outcomes, second, AS_OF)
        deadline = time.monotonic() + 10
        while not first.execute(
            "select count(*) from pg_stat_activity "
            "where datname = current_database() and wait_event_type = 'Lock'"
        ).fetchall()[0][0]:
            assert time.monotonic() < deadline, "the second worker never waited for the first"
            time.sleep(0.05)
        first.commit()
        assert closing.result(timeout=10) == 0

    assert {state[0] for state in task_states(first).values()} == {"done"}
    first.close()
    second.close()
