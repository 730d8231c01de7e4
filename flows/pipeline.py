"""The main flow: extract → transform → gate → hand-off → nurture, and a summary of it all."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.extract import extract
from flows.handoff import handoff
from flows.nurture import nurture
from flows.quality import gate
from flows.report import GateSummary, RunSummary
from flows.runs import new_run_id, record_end, record_start, utc_now
from flows.settings import load_settings
from flows.transform import transform

T = TypeVar("T")


def timed(summary: RunSummary, step: str, run: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return run()
    finally:
        summary.durations_s[step] = round(time.perf_counter() - started, 2)


@flow(name="lead_pipeline", log_prints=True)
def lead_pipeline(as_of: datetime | None = None) -> RunSummary:
    """One run of LeadFlow over everything new in the inbox, as of ``as_of`` (default: now)."""
    settings = load_settings()
    settings.ensure_dirs()
    as_of = as_of or utc_now()
    run_id = new_run_id(as_of)
    summary = RunSummary(run_id=run_id, as_of=as_of.isoformat(sep=" "))
    record_start(settings.warehouse_path, run_id, utc_now())
    try:
        extracted = timed(summary, "extract", lambda: extract(run_id, as_of))
        summary.files_loaded = extracted.files_loaded
        summary.files_skipped = extracted.files_skipped
        summary.leads_loaded = extracted.rows_loaded.get("leads", 0)
        summary.rows_loaded = sum(extracted.rows_loaded.values())
        summary.rows_quarantined = extracted.rows_quarantined
        summary.quarantine_reasons = extracted.quarantine_reasons
        summary.file_errors = extracted.file_errors

        summary.stage_counts = timed(summary, "transform", lambda: transform(as_of))

        report = timed(summary, "gate", lambda: gate(run_id, as_of))
        summary.gate = GateSummary(
            passed=report.passed,
            blocked=[asset for asset, result in report.assets.items() if not result.passed],
            explanation="" if report.passed else report.explain(),
            warnings=sum(len(result.warnings) for result in report.assets.values()),
        )
        # A critical failure blocks what that queue would do: no task, no email from bad data.
        if report.assets["handoff_queue"].passed:
            summary.handed_off = timed(summary, "handoff", lambda: handoff(run_id, as_of))
        if report.assets["nurture_queue"].passed:
            dispatched, follow_ups = timed(summary, "nurture", lambda: nurture(run_id, as_of))
            summary.emails_due = dispatched.due
            summary.emails_sent = dispatched.sent
            summary.emails_failed = dispatched.failed
            summary.emails_not_rendered = dispatched.not_rendered
            summary.emails_suppressed = dispatched.suppressed
            summary.emails_gave_up = dispatched.gave_up
            summary.emails_deferred = dispatched.deferred
            summary.email_errors = list(dispatched.errors)
            summary.tasks_created = summary.handed_off + follow_ups
        else:
            summary.tasks_created = summary.handed_off
    except BaseException as error:
        record_end(settings.warehouse_path, run_id, "failed", {"error": str(error)})
        raise
    status = "completed_with_file_errors" if summary.file_errors else "completed"
    record_end(settings.warehouse_path, run_id, status, summary.to_dict())
    create_markdown_artifact(
        markdown=summary.to_markdown(), key="lead-pipeline-summary", description="Run summary"
    )
    return summary
