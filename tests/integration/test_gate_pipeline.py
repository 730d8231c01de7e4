"""A broken batch through the real pipeline: the gate holds back both queues, then lets go.

The breakage is what the gate exists for and dbt's tests cannot see: after dbt has built the
queues (and passed its tests), one hand-off's owner is a rep id dim_reps does not have, and
one lead who unsubscribed is marked due an email. Both queues are rebuilt by the next run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import flows.pipeline
from flows.demo.generate import generate_dataset
from flows.pipeline import lead_pipeline

pytestmark = pytest.mark.slow

GENERATED_AT = datetime(2026, 11, 1)
RUN_AT = datetime(2026, 11, 1, 8, 30)
MISSING_REP = "rep_gone"


def break_the_queues(warehouse: Path) -> tuple[str, str]:
    """Give one hand-off an owner nobody has, mark one suppressed lead due; their lead ids."""
    with duckdb.connect(str(warehouse)) as connection:
        (handoff_lead,) = connection.execute(
            "select min(lead_id) from main.fct_handoff_queue"
        ).fetchone() or (None,)
        (suppressed_lead,) = connection.execute(
            "select min(lead_id) from main.fct_nurture_queue where is_suppressed"
        ).fetchone() or (None,)
        assert handoff_lead and suppressed_lead, "the demo data lost its hand-offs or opt-outs"
        connection.execute(
            "update main.fct_handoff_queue set owner_rep_id = ? where lead_id = ?",
            [MISSING_REP, handoff_lead],
        )
        connection.execute(
            "update main.fct_nurture_queue set is_due = true where lead_id = ?",
            [suppressed_lead],
        )
    return handoff_lead, suppressed_lead


def counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return {
            table: connection.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("ops.sales_tasks", "ops.email_sends")
        }


def test_a_broken_batch_creates_nothing_and_the_next_clean_run_hands_off(data_dir, monkeypatch):
    generate_dataset(data_dir / "inbox", leads=600, seed=11, as_of=GENERATED_AT)
    warehouse = data_dir / "warehouse.duckdb"
    real_transform = flows.pipeline.transform
    broken: list[str] = []

    def transform_then_break(as_of: datetime, full_refresh: bool = False) -> dict[str, int]:
        stages = real_transform(as_of, full_refresh)
        broken.extend(break_the_queues(warehouse))
        return stages

    monkeypatch.setattr(flows.pipeline, "transform", transform_then_break)
    blocked = lead_pipeline(as_of=RUN_AT)
    monkeypatch.setattr(flows.pipeline, "transform", real_transform)
    handoff_lead, suppressed_lead = broken

    assert not blocked.gate.passed
    assert blocked.gate.blocked == ["handoff_queue", "nurture_queue"]
    assert (blocked.handed_off, blocked.tasks_created, blocked.emails_sent) == (0, 0, 0)
    assert counts(warehouse) == {"ops.sales_tasks": 0, "ops.email_sends": 0}
    assert not list((data_dir / "outbox").glob("*.eml"))
    explanation = blocked.gate.explanation
    for named in (
        "owner_is_an_active_rep",
        f"owner_rep_status not_a_rep) (lead_id {handoff_lead})",
        "email_step_reaches_a_contactable_lead",
        suppressed_lead,
    ):
        assert named in explanation, explanation
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        recorded = dict(
            connection.execute(
                "select asset, failed_expectations from ops.gate_results "
                "where run_id = ? and severity = 'critical' and not success",
                [blocked.run_id],
            ).fetchall()
        )
        held_back = set(
            connection.execute(
                "select entity, record_key from ops.quarantine where stage = 'gate'"
            ).fetchall()
        )
    assert set(recorded) == {"handoff_queue", "nurture_queue"}
    [owner_failure] = json.loads(recorded["handoff_queue"])
    assert owner_failure.startswith("owner_is_an_active_rep: 1 of ")
    assert handoff_lead in owner_failure
    [email_failure] = json.loads(recorded["nurture_queue"])
    assert email_failure.startswith("email_step_reaches_a_contactable_lead: 1 of ")
    assert suppressed_lead in email_failure
    assert held_back == {("handoff_queue", handoff_lead), ("nurture_queue", suppressed_lead)}

    clean = lead_pipeline(as_of=RUN_AT + timedelta(hours=1))

    assert clean.gate.passed, clean.gate.explanation
    assert clean.handed_off > 0 and clean.emails_sent > 0
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        owners = connection.execute(
            "select owner_rep_id from ops.sales_tasks where lead_id = ? and reason = 'mql_handoff'",
            [handoff_lead],
        ).fetchall()
        emailed = connection.execute(
            "select count(*) from ops.email_sends where lead_id = ?", [suppressed_lead]
        ).fetchone()
    assert len(owners) == 1 and owners[0][0] != MISSING_REP
    assert emailed == (0,)  # the lead unsubscribed: the rebuilt queue does not mark it due
