"""Gate: validate the hand-off and nurture queues with the GX checkpoint before anyone acts."""

import json
from datetime import datetime

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.checks.gate import GateReport, run_gate
from flows.settings import load_settings
from flows.warehouse import open_warehouse

QUEUES = {"handoff_queue": "main.fct_handoff_queue", "nurture_queue": "main.fct_nurture_queue"}


@task(cache_policy=NO_CACHE)
def read_queues() -> dict[str, pd.DataFrame]:
    """The queues as DataFrames: GX validates DuckDB data through its pandas data source."""
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        return {
            asset: connection.execute(f"select * from {table}").df()
            for asset, table in QUEUES.items()
        }


@task(cache_policy=NO_CACHE)
def validate_queues(frames: dict[str, pd.DataFrame]) -> GateReport:
    return run_gate(frames, load_settings().expectations_dir)


@task(cache_policy=NO_CACHE)
def record_gate_results(report: GateReport, run_id: str, as_of: datetime) -> None:
    """Keep every verdict, and quarantine each row that failed a critical expectation."""
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        connection.begin()
        for asset, result in report.assets.items():
            for severity, failures, success in (
                ("critical", result.critical_failures, result.passed),
                ("warning", result.warnings, not result.warnings),
            ):
                connection.execute(
                    "insert into ops.gate_results values (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        asset,
                        f"{asset}.{severity}",
                        severity,
                        success,
                        result.evaluated_rows,
                        json.dumps([failure.message for failure in failures]),
                        as_of,
                    ],
                )
            if result.failing_lead_ids:
                reason = " ".join(failure.message for failure in result.critical_failures)
                connection.executemany(
                    """
                    insert into ops.quarantine (run_id, stage, entity, record_key,
                        reason_code, reason, quarantined_at)
                    values (?, 'gate', ?, ?, 'critical_expectation_failed', ?, ?)
                    """,
                    [
                        [run_id, asset, lead_id, reason, as_of]
                        for lead_id in result.failing_lead_ids
                    ],
                )
        connection.commit()


@flow(name="gate")
def gate(run_id: str, as_of: datetime) -> GateReport:
    frames = read_queues()
    report = validate_queues(frames)
    record_gate_results(report, run_id, as_of)
    return report
