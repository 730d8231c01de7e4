"""Gate: validate the hand-off and nurture queues with the GX checkpoint before anyone acts."""

import json
from datetime import datetime

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.checks.frames import read_gate_frames
from flows.checks.gate import GateReport, run_gate
from flows.checks.gx_project import prune_stored_results
from flows.checks.verdict import gate_fingerprint, kept_verdict, save_verdict
from flows.settings import load_settings
from flows.warehouse import open_warehouse


@task(cache_policy=NO_CACHE)
def read_queues(run_id: str, as_of: datetime) -> dict[str, pd.DataFrame]:
    """The queues with their gate columns: GX validates DuckDB data through pandas frames."""
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        return read_gate_frames(connection, run_id, as_of)


@task(cache_policy=NO_CACHE)
def validate_queues(frames: dict[str, pd.DataFrame]) -> GateReport:
    """GX's verdict on the queues; the last one again if nothing it reads has changed since."""
    settings = load_settings()
    fingerprint = gate_fingerprint(frames, settings.expectations_dir)
    kept = kept_verdict(settings.gate_verdict_path, fingerprint)
    if kept is not None:
        get_run_logger().info(
            "The queues hold what the last gate validated, under the same expectations: "
            "its verdict stands (passed: %s)",
            kept.passed,
        )
        return kept
    report = run_gate(frames, settings.expectations_dir)
    save_verdict(settings.gate_verdict_path, fingerprint, report)
    prune_stored_results(settings.expectations_dir, settings.gate_results_days)
    return report


@task(cache_policy=NO_CACHE)
def record_gate_results(report: GateReport, run_id: str, as_of: datetime) -> None:
    """Keep every verdict, and quarantine each row that failed a critical expectation."""
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
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
                        json.dumps([failure.named() for failure in failures]),
                        as_of,
                    ],
                )
            if result.failing_lead_ids:
                reason = " ".join(failure.named() for failure in result.critical_failures)
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
    frames = read_queues(run_id, as_of)
    report = validate_queues(frames)
    record_gate_results(report, run_id, as_of)
    return report
