"""`leadflow report sla`: the scorecard dbt built, shown for people and for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from typer.testing import CliRunner

from flows.cli import app
from flows.sla import SlaNotBuiltError, read_sla_report
from flows.warehouse import ensure_schema

MEASURED_AT = datetime(2026, 12, 7, 8, 0)
ROW_KEYS = [
    "rep_id",
    "rep_name",
    "segment",
    "sla_hours",
    "handoffs",
    "touched",
    "within_sla",
    "late",
    "still_in_time",
    "past_due",
    "overdue_now",
    "within_sla_share",
    "median_hours_to_first_touch",
    "p90_hours_to_first_touch",
]


def build_scorecard(connection: duckdb.DuckDBPyConnection) -> None:
    """fct_handoff_sla_by_rep as dbt builds it (column names and types), two reps."""
    connection.execute("""
        create table main.fct_handoff_sla_by_rep as
        select * from (values
            ('rep_01', 'Ada Rep', 'smb', 24, 10, 8, 6, 2, 1, 1, 0, 6 / 9, 3.5, 30.0),
            ('rep_02', 'Bo Rep', 'enterprise', 8, 4, 1, 1, 0, 0, 3, 2, 0.25, 2.0, 2.0),
            ('unassigned', null, 'unknown', 24, 2, 0, 0, 0, 2, 0, 0, null, null, null)
        ) as scorecard(
            owner_rep_id, owner_name, segment, sla_hours, handoff_count, touched_count,
            within_sla_count, late_count, open_count, past_due_count, overdue_count,
            within_sla_share, median_hours_to_first_touch, p90_hours_to_first_touch
        ), (select timestamp '2026-12-07 08:00:00' as measured_at)
    """)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(data))
    path = data / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        ensure_schema(connection)
        build_scorecard(connection)
    return path


def test_the_report_reads_the_scorecard_most_overdue_first():
    connection = duckdb.connect()
    build_scorecard(connection)

    report = read_sla_report(connection)

    assert report.measured_at == MEASURED_AT
    assert [(row.rep_id, row.overdue_now) for row in report.rows] == [
        ("rep_02", 2),
        ("rep_01", 0),
        ("unassigned", 0),
    ]
    rep_01 = report.rows[1]
    assert (rep_01.median_hours_to_first_touch, rep_01.p90_hours_to_first_touch) == (3.5, 30.0)
    assert rep_01.within_sla_share == pytest.approx(2 / 3)


def test_the_table_shows_hours_shares_and_gaps_for_a_person():
    connection = duckdb.connect()
    build_scorecard(connection)
    console = Console(width=140, record=True)

    console.print(read_sla_report(connection).to_rich())

    text = console.export_text()
    assert "measured at 2026-12-07 08:00 UTC" in text
    assert "Ada Rep" in text and "67% (6/9)" in text and "30.0" in text
    # Nobody touched the unassigned hand-offs yet, and they are all still in time.
    unassigned = next(line for line in text.splitlines() if "unassigned" in line)
    cells = [cell.strip() for cell in unassigned.strip("│ ").split("│")]
    assert cells[-4:] == ["-", "-", "-", "0"]


def test_before_any_run_the_report_says_to_run_first():
    with pytest.raises(SlaNotBuiltError, match="Run `leadflow run` first"):
        read_sla_report(duckdb.connect())


def test_json_keys_are_stable(warehouse):
    result = CliRunner().invoke(app, ["report", "sla", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report) == ["measured_at", "rows"]
    assert report["measured_at"] == "2026-12-07T08:00:00"
    assert [list(row) for row in report["rows"]] == [ROW_KEYS] * 3
    assert report["rows"][0] | {"within_sla_share": None} == {
        "rep_id": "rep_02",
        "rep_name": "Bo Rep",
        "segment": "enterprise",
        "sla_hours": 8.0,
        "handoffs": 4,
        "touched": 1,
        "within_sla": 1,
        "late": 0,
        "still_in_time": 0,
        "past_due": 3,
        "overdue_now": 2,
        "within_sla_share": None,
        "median_hours_to_first_touch": 2.0,
        "p90_hours_to_first_touch": 2.0,
    }
