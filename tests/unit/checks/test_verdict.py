"""The gate keeps its verdict only for queues whose checked content has not changed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flows.checks.gate import run_gate
from flows.checks.verdict import (
    columns_read,
    gate_fingerprint,
    kept_verdict,
    save_verdict,
    suite_columns,
)
from tests.unit.checks.test_gate import handoff_queue, handoff_row, nurture_queue, nurture_row


def queues(**frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"handoff_queue": handoff_queue(), "nurture_queue": nurture_queue()} | frames


def test_the_fingerprint_ignores_row_order_and_columns_no_expectation_reads(expectations_dir):
    before = gate_fingerprint(queues(), expectations_dir)
    shuffled = nurture_queue().sample(frac=1, random_state=7)
    reworded = handoff_queue(*[handoff_row(number, why_now="Visited") for number in range(10)])

    assert gate_fingerprint(queues(nurture_queue=shuffled), expectations_dir) == before
    # why_now is shown to sales but no expectation reads it.
    assert "why_now" not in (suite_columns(expectations_dir, "handoff_queue") or {"why_now"})
    assert gate_fingerprint(queues(handoff_queue=reworded), expectations_dir) == before


@pytest.mark.parametrize(
    "changed",
    [
        # A value an expectation reads.
        {"handoff_queue": handoff_queue(*[handoff_row(n, fit_score=n + 0.5) for n in range(10)])},
        # Which lead a row is (failing rows are named by lead_id).
        {"nurture_queue": nurture_queue(*[nurture_row(n + 100) for n in range(10)])},
        # One row more.
        {"nurture_queue": nurture_queue(size=11)},
        # A column more (table-level expectations compare the column names).
        {"nurture_queue": nurture_queue().assign(extra=1)},
    ],
)
def test_the_fingerprint_changes_with_what_the_expectations_read(expectations_dir, changed):
    assert gate_fingerprint(queues(**changed), expectations_dir) != gate_fingerprint(
        queues(), expectations_dir
    )


def test_the_fingerprint_changes_with_the_expectations(expectations_dir):
    before = gate_fingerprint(queues(), expectations_dir)
    suite = expectations_dir / "gx" / "expectations" / "nurture_queue" / "warning.json"
    document = json.loads(suite.read_text())
    document["expectations"][0]["kwargs"]["mostly"] = 0.5
    suite.write_text(json.dumps(document))

    assert gate_fingerprint(queues(), expectations_dir) != before


def test_validation_results_written_by_gx_do_not_change_the_fingerprint(expectations_dir):
    before = gate_fingerprint(queues(), expectations_dir)
    run_gate(queues(), expectations_dir)  # writes under gx/uncommitted/

    assert gate_fingerprint(queues(), expectations_dir) == before


@pytest.mark.parametrize(
    "expectation",
    [
        {
            "type": "expect_column_values_to_be_null",
            "kwargs": {"column": "a", "row_condition": 'b=="x"'},
        },
        {"type": "expect_column_pair_values_a_to_be_greater_than_b", "kwargs": {"column_a": "a"}},
    ],
)
def test_an_expectation_reading_columns_it_does_not_name_makes_every_column_count(expectation):
    assert columns_read([expectation]) is None
    assert columns_read([{"type": "expect_x", "kwargs": {"column_list": ["a", "b"]}}]) == {"a", "b"}


def test_a_blocked_verdict_is_kept_whole_and_only_for_its_fingerprint(expectations_dir, tmp_path):
    bad = nurture_queue(
        *[nurture_row(n) for n in range(9)], nurture_row(9, email_blocker="bounced")
    )
    frames = queues(nurture_queue=bad)
    report = run_gate(frames, expectations_dir)
    assert not report.passed  # a blocked gate
    fingerprint = gate_fingerprint(frames, expectations_dir)
    path = tmp_path / "gate" / "last-verdict.json"

    save_verdict(path, fingerprint, report)

    assert kept_verdict(path, fingerprint) == report
    assert kept_verdict(path, "another fingerprint") is None
    path.write_text("{not json")
    assert kept_verdict(path, fingerprint) is None
    assert kept_verdict(tmp_path / "missing.json", fingerprint) is None
