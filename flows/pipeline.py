"""The main flow: extract → transform → gate → hand-off → nurture, and a summary of it all."""

# No ``from __future__ import annotations`` in a flow's module: Prefect validates a deployed
# run's parameters against the signature, and string annotations left it unable to resolve
# ``datetime`` there ("Lead_PipelineModel is not fully defined").
import time
from collections.abc import Callable
from datetime import datetime
from logging import Logger, LoggerAdapter
from typing import TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal

from flows.checks.gate import build_data_docs
from flows.dbt_runner import generate_docs
from flows.email.providers import email_sender
from flows.extract import extract
from flows.handoff import count_task_overflow, handoff
from flows.limits import warehouse_writer
from flows.notify import notify, notify_failed_run
from flows.nurture import nurture
from flows.quality import gate
from flows.report import GateSummary, RunSummary
from flows.runs import (
    announce_run,
    interrupted_by,
    new_run_id,
    record_end,
    record_start,
    run_lock,
    utc_now,
)
from flows.settings import Settings, load_settings
from flows.transform import transform

T = TypeVar("T")


def timed(summary: RunSummary, step: str, run: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return run()
    finally:
        summary.durations_s[step] = round(time.perf_counter() - started, 2)


@task(cache_policy=NO_CACHE)
def build_docs() -> dict[str, str]:
    """dbt docs and GX Data Docs, so the published definitions match the night's build."""
    settings = load_settings()
    return {
        "dbt_docs": str(generate_docs(settings)),
        "gx_data_docs": str(build_data_docs(settings.expectations_dir)),
    }


@flow(
    name="lead_pipeline",
    log_prints=True,
    on_failure=[notify_failed_run],
    on_crashed=[notify_failed_run],
)
def lead_pipeline(
    as_of: datetime | None = None, full_refresh: bool = False, with_docs: bool = False
) -> RunSummary:
    """One run of LeadFlow over everything new in the inbox.

    Args:
        as_of: The run's clock in UTC, an ISO time such as 2026-12-01T08:00:00 (default: now);
            an earlier time reproduces a past run.
        full_refresh: Rebuild every dbt model from scratch instead of only what changed since
            the last successful build (the nightly refresh).
        with_docs: After the run, build the dbt docs and the GX Data Docs.
    """
    settings = load_settings()
    settings.ensure_dirs()
    logger = get_run_logger()
    # `leadflow run` already holds the lock (and said what it waits for); a served or deployed
    # run takes it here. The file lock comes first, then Prefect's writer limit: every writer
    # takes them in that order, so two runs never hold one each and wait for the other.
    with (
        run_lock(
            settings.warehouse,
            wait_seconds=settings.run_wait_seconds,
            on_wait=lambda holder: logger.warning("Waiting for %s to finish", holder.describe()),
        ),
        warehouse_writer(settings),
    ):
        summary = run_stages(settings, as_of or utc_now(), full_refresh, logger)
        if not summary.gate.passed:
            notify(settings, "gate_blocked", summary.gate.explanation)
        if with_docs:
            build_docs()
    return summary


def run_stages(
    settings: Settings,
    as_of: datetime,
    full_refresh: bool,
    logger: Logger | LoggerAdapter[Logger],
) -> RunSummary:
    run_id = new_run_id(as_of)
    summary = RunSummary(
        run_id=run_id,
        as_of=as_of.isoformat(sep=" "),
        email_provider=email_sender(settings).provider,
    )
    print(f"Run {run_id}: nurture email goes through {summary.email_provider}")
    started_at = utc_now()
    summary.runs_marked_crashed = record_start(settings.warehouse, run_id, started_at)
    if summary.runs_marked_crashed:
        logger.warning(summary.crashed_note())
    try:
        # Named once its row exists: from here on, however the run ends, its row says so.
        announce_run(settings.warehouse, run_id, started_at)
        extracted = timed(summary, "extract", lambda: extract(run_id, as_of))
        summary.files_loaded = extracted.files_loaded
        summary.files_skipped = extracted.files_skipped
        summary.leads_loaded = extracted.rows_loaded.get("leads", 0)
        summary.rows_loaded = sum(extracted.rows_loaded.values())
        summary.rows_quarantined = extracted.rows_quarantined
        summary.quarantine_reasons = extracted.quarantine_reasons
        summary.file_errors = extracted.file_errors

        summary.stage_counts = timed(summary, "transform", lambda: transform(as_of, full_refresh))

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
            summary.emails_deferred_quiet_hours = dispatched.deferred_quiet_hours
            summary.emails_pending_unknown = dispatched.unknown_pending
            summary.emails_released_never_sent = dispatched.released_never_sent
            summary.email_errors = list(dispatched.errors)
            summary.tasks_created = summary.handed_off + follow_ups
        else:
            summary.tasks_created = summary.handed_off
        summary.tasks_queued = count_task_overflow()
    except BaseException as error:
        # Ctrl-C or SIGTERM is not a failure. During a flow Prefect turns SIGTERM into its
        # TerminationSignal. (A signal landing inside a DuckDB query surfaces as DuckDB's
        # RuntimeError("Query interrupted") and is recorded as a failure.)
        stopped = (
            isinstance(error, KeyboardInterrupt | TerminationSignal) or interrupted_by() is not None
        )
        status = "interrupted" if stopped else "failed"
        record_end(settings.warehouse, run_id, status, {"error": str(error) or status})
        raise
    status = "completed_with_file_errors" if summary.file_errors else "completed"
    record_end(settings.warehouse, run_id, status, summary.to_dict())
    create_markdown_artifact(
        markdown=summary.to_markdown(), key="lead-pipeline-summary", description="Run summary"
    )
    return summary
