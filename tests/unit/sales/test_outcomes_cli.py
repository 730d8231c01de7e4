"""`leadflow outcome` and `leadflow outcomes load`: checked, landed for the next run, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.warehouse import ensure_schema

runner = CliRunner()


def one_line(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        ensure_schema(connection)
        connection.execute(
            "insert into ops.sales_tasks (task_id, lead_id, email, owner_rep_id, owner_email, "
            "reason, title, why_now, due_at, status, created_at, run_id) values ('t1', 'L1', "
            "'ann@acme.com', 'rep_01', 'r1@x.com', 'mql_handoff', 'Follow up with Ann', 'why', "
            "?, 'open', ?, 'run')",
            [datetime(2026, 11, 23), datetime(2026, 11, 22)],
        )
    return tmp_path


def landed(data_dir: Path) -> list[dict[str, Any]]:
    folder = data_dir / "landing" / "sales_outcomes"
    return [
        json.loads(line)
        for path in sorted(folder.glob("outcomes-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_an_outcome_is_landed_for_the_next_run(data_dir):
    result = runner.invoke(
        app, ["outcome", "t1", "rejected", "--reason", "Not_Ready", "--note", "call in Q3"]
    )

    assert result.exit_code == 0, result.output
    assert "Recorded rejected for task t1 (Follow up with Ann, lead L1, now open)" in (
        one_line(result)
    )
    assert "the lead's pending tasks end closed (not_ready)" in one_line(result)
    [record] = landed(data_dir)
    assert {
        k: record[k] for k in ("task_id", "lead_id", "outcome", "reason", "rep_id", "note")
    } == {
        "task_id": "t1",
        "lead_id": "L1",
        "outcome": "rejected",
        "reason": "not_ready",
        "rep_id": "rep_01",
        "note": "call in Q3",
    }
    assert record["outcome_id"].startswith("cli-")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["nope", "accepted"], "no sales task 'nope'; task ids are in the rep's task file"),
        (["t1", "maybe"], "'maybe' is not an outcome; give one of accepted, rejected, won, lost"),
        (["t1", "lost", "--reason", "too_pricey"], "'too_pricey' is not a reason"),
    ],
)
def test_a_wrong_task_outcome_or_reason_is_named_and_nothing_is_recorded(
    data_dir, arguments, problem
):
    result = runner.invoke(app, ["outcome", *arguments])

    assert result.exit_code == 1
    assert problem in one_line(result)
    assert "Traceback" not in result.output
    assert landed(data_dir) == []


def test_a_wrong_reason_lists_the_valid_ones(data_dir):
    result = runner.invoke(app, ["outcome", "t1", "lost", "--reason", "too_pricey"])
    assert "competitor: The lead chose a competitor" in one_line(result)


def test_with_no_warehouse_yet_the_command_says_to_run_first(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["outcome", "t1", "won"])
    assert result.exit_code == 1
    assert "no warehouse at" in one_line(result) and "run `leadflow run`" in one_line(result)


HOLD_RUN_LOCK = """
import sys, time
from pathlib import Path
from flows.runs import run_lock
with run_lock(Path(sys.argv[1]), wait_seconds=0):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_during_a_run_the_command_says_the_warehouse_is_busy_and_records_nothing(data_dir):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK, str(data_dir / "warehouse.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "holding"
        result = runner.invoke(app, ["outcome", "t1", "won"])
    finally:
        process.kill()
        process.wait()
    assert result.exit_code == 4, result.output
    assert "the warehouse is busy with " in one_line(result)
    assert "try again when it finishes" in one_line(result)
    assert landed(data_dir) == []


def test_an_upload_is_checked_and_placed_in_the_landing_folder_once(data_dir, tmp_path):
    upload = tmp_path / "q4.csv"
    upload.write_text(
        "outcome_id,outcome,reason,occurred_at,task_id\n"
        "u1,rejected,not_ready,2026-11-21 10:00,t1\n"
        "u2,maybe,,2026-11-21 10:00,t1\n"
    )

    first = runner.invoke(app, ["outcomes", "load", str(upload), "--source", "crm"])
    second = runner.invoke(app, ["outcomes", "load", str(upload), "--source", "crm"])

    assert first.exit_code == 0, first.output
    assert "q4.csv: 2 outcomes, 1 to load, 1 to quarantine (unknown_value 1)" in one_line(first)
    assert 'row 2: outcome "maybe" is not one of' in one_line(first)
    assert "the next `leadflow run` loads it" in one_line(first)
    assert "Already uploaded as" in one_line(second)
    [placed] = (data_dir / "landing").glob("outcomes__crm__q4-*.csv")
    assert placed.read_text() == upload.read_text()


def test_an_unreadable_upload_is_refused_and_not_placed(data_dir, tmp_path):
    upload = tmp_path / "q4.csv"
    upload.write_text("outcome_id,occurred_at\nu1,2026-11-21\n")

    result = runner.invoke(app, ["outcomes", "load", str(upload)])

    assert result.exit_code == 1
    assert "the header lacks required column(s) outcome" in one_line(result)
    assert "Nothing was uploaded" in one_line(result)
    assert not list((data_dir / "landing").glob("outcomes__*"))
