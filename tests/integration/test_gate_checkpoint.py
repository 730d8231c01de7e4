"""The real GX project gating mart-shaped tables read from DuckDB, as the pipeline does.

The frames come from flows.checks.frames, so the gate sees what the pipeline's gate sees: each
queue joined to the reps, the leads and the warehouse's history.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.checks.frames import read_gate_frames
from flows.checks.gate import build_data_docs, run_gate
from flows.settings import PROJECT_ROOT
from flows.warehouse import ensure_schema

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
ROWS = 500

# Shaped and typed like the dbt marts (decimal scores, timestamps, booleans), with a few
# columns beyond the contract, which the gate must tolerate.
MART_TABLES = {
    "handoff_queue": f"""
        select
            md5('lead-' || i) as lead_id,
            -- Lead 3 is known only by phone: no email, and the gate lets it through.
            case when i <> 3 then 'person' || i || '@acme.example' end as email,
            case when i = 3 then 'phone' else 'email' end as reach_by,
            'Ada' as first_name,
            'Lovelace' as last_name,
            case when i % 20 = 0 then null else 'Acme' end as company,
            'VP Engineering' as title,
            case when i = 3 then '+44 20 7946 0000' end as phone,
            'GB' as country,
            'EMEA' as region,
            'mid_market' as segment,
            'rep-' || i % 4 as owner_rep_id,
            'Rita Rep' as owner_name,
            'rep' || i % 4 || '@leadflow.example' as owner_email,
            35 + i % 60 as fit_score,
            cast(40 + i % 90 + 0.25 as decimal(18, 2)) as engagement_score,
            cast(75 + i % 60 + i % 90 + 0.25 as decimal(18, 2)) as lead_score,
            'Requested a demo' as why_now,
            case when i % 2 = 0 then 'crm' else 'web_forms' end as source,
            false as is_suppressed,
            timestamp '2026-03-02 09:00' as due_at
        from range({ROWS}) as numbers(i)""",
    "dim_reps": """
        select
            'rep-' || i as rep_id, 'Rep ' || i as rep_name, 'rep' || i || '@leadflow.example'
                as rep_email, 'EMEA' as region, cast(null as varchar) as segment, true as is_active,
            40 as daily_task_capacity
        from range(4) as numbers(i)""",
    "dim_leads": f"""
        select
            md5('lead-' || i) as lead_id, 'person' || i || '@acme.example' as email,
            'crm' as source, false as is_do_not_email, false as is_suppressed,
            cast(null as varchar) as suppression_reason
        from range({ROWS}) as numbers(i)""",
    "nurture_queue": f"""
        select
            md5('lead-' || i) as lead_id,
            'person' || i || '@acme.example' as email,
            case when i % 10 = 0 then null else 'Grace' end as first_name,
            'Hopper' as last_name,
            'Acme' as company,
            'Engineer' as title,
            'rep-' || i % 4 as owner_rep_id,
            'Sam Seller' as owner_name,
            'rep' || i % 4 || '@leadflow.example' as owner_email,
            'recycled' as stage,
            'not_ready' as stage_reason,
            'not_ready' as nurture_track,
            1 + i % 3 as next_step,
            'not_ready/step_' || 1 + i % 3 || '.html' as template,
            'Checking in' as subject,
            timestamp '2026-03-01 09:00' + to_days(cast(i % 3 as integer)) as due_at,
            i % 3 = 0 as is_due,
            'Call after the email' as follow_up_title,
            3 as follow_up_due_days
        from range({ROWS}) as numbers(i)""",
}


def lead_id(number: int) -> str:
    return hashlib.md5(f"lead-{number}".encode()).hexdigest()


def mart_name(table: str) -> str:
    return table if table.startswith("dim_") else f"fct_{table}"


@pytest.fixture
def warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    ensure_schema(connection)
    for table, select in MART_TABLES.items():
        connection.execute(f"create table main.{mart_name(table)} as {select}")
    yield connection
    connection.close()


def read_marts(connection: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    return read_gate_frames(connection, "run-test", datetime(2026, 3, 2, 8, 0))


def committed_files(expectations_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(expectations_dir)): path.read_bytes()
        for path in expectations_dir.rglob("*")
        if path.is_file() and "uncommitted" not in path.relative_to(expectations_dir).parts
    }


def test_clean_marts_pass_and_the_run_touches_only_uncommitted(warehouse):
    frames = read_marts(warehouse)
    before = committed_files(EXPECTATIONS_DIR)

    report = run_gate(frames, EXPECTATIONS_DIR)

    assert committed_files(EXPECTATIONS_DIR) == before
    assert report.passed, report.explain()
    assert {asset: result.evaluated_rows for asset, result in report.assets.items()} == {
        "handoff_queue": ROWS,
        "nurture_queue": ROWS,
    }
    # 5% of companies and 10% of first names are missing: within the warning thresholds.
    assert all(not result.warnings for result in report.assets.values()), report.explain()


def test_bad_rows_in_the_warehouse_block_their_queue_and_are_named(warehouse):
    warehouse.execute(
        "update fct_handoff_queue set email = 'no-at-sign.acme.example' where lead_id = ?",
        [lead_id(8)],
    )
    warehouse.execute(
        "update fct_nurture_queue set email = 'nobody@localhost' where lead_id = ?", [lead_id(10)]
    )
    warehouse.execute("update fct_nurture_queue set company = null where lead_id = ?", [lead_id(1)])

    report = run_gate(read_marts(warehouse), EXPECTATIONS_DIR)

    assert not report.passed
    handoff, nurture = report.assets["handoff_queue"], report.assets["nurture_queue"]
    assert handoff.failing_lead_ids == {lead_id(8)}
    assert nurture.failing_lead_ids == {lead_id(10)}
    assert nurture.warnings == ()
    explanation = report.explain()
    assert explanation.startswith("The gate blocked handoff_queue, nurture_queue.")
    for number in (8, 10):
        assert lead_id(number) in explanation


def test_an_owner_who_left_and_a_suppressed_lead_due_an_email_block_their_queues(warehouse):
    # Leads 0, 4, 8, ... belong to rep-0, who has just left; lead 3's step is due (i % 3 = 0)
    # although the lead unsubscribed, which the queue failed to notice.
    warehouse.execute("update dim_reps set is_active = false where rep_id = 'rep-0'")
    warehouse.execute(
        "update dim_leads set is_suppressed = true, suppression_reason = 'unsubscribe' "
        "where lead_id = ?",
        [lead_id(3)],
    )

    report = run_gate(read_marts(warehouse), EXPECTATIONS_DIR)

    handoff, nurture = report.assets["handoff_queue"], report.assets["nurture_queue"]
    assert handoff.failing_lead_ids == {lead_id(number) for number in range(0, ROWS, 4)}
    assert [failure.name for failure in handoff.critical_failures] == ["owner_is_an_active_rep"]
    assert nurture.failing_lead_ids == {lead_id(3)}
    [failure] = nurture.critical_failures
    assert failure.name == "email_step_reaches_a_contactable_lead"
    assert "(email_blocker unsubscribe)" in failure.message


def test_data_docs_show_the_suites_and_the_latest_results(warehouse, tmp_path):
    project = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR, project, ignore=shutil.ignore_patterns("uncommitted"))
    run_gate(read_marts(warehouse), project)

    index = build_data_docs(project)

    assert index == project / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    html = index.read_text()
    for suite in ("handoff_queue.critical", "nurture_queue.warning"):
        assert suite in html
