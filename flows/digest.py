"""The reps' daily digest: each rep's open tasks in one email, once a day.

Reads the tasks the last hand-off left in ``ops.sales_tasks`` (no extract, no dbt) and sends
each rep with open tasks their digest through the configured email provider; the digest
ledger keeps a rep from getting a day twice, however often this runs. Scheduled by the
``reps-daily-digest`` deployment in prefect.yaml; ``leadflow digest`` runs it once.
"""

# No ``from __future__ import annotations``: Prefect validates deployed runs' parameters
# against the signature (see flows/pipeline.py).
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.email.providers import email_sender
from flows.limits import email_provider_rate_limit, warehouse_writer
from flows.notify import notify_failed_run
from flows.runs import run_lock, utc_now
from flows.sales.delivery import digest_sink
from flows.sales.sinks import SinkResult
from flows.settings import load_settings
from flows.warehouse import ensure_schema, open_warehouse


@task(cache_policy=NO_CACHE)
def send_digests(as_of: datetime) -> SinkResult | None:
    """None when the digest is turned off (LEADFLOW_DIGEST_ENABLED=false)."""
    settings = load_settings()
    sender = email_sender(settings, throttle=email_provider_rate_limit(settings))
    sink = digest_sink(settings, sender)
    if sink is None:
        return None
    sender.check()  # a wrong key or host fails here, before any ledger row is claimed
    with open_warehouse(settings.warehouse) as connection:
        ensure_schema(connection)
        return sink.deliver(connection, as_of)


@flow(
    name="reps_daily_digest",
    log_prints=True,
    on_failure=[notify_failed_run],
    on_crashed=[notify_failed_run],
)
def reps_daily_digest(as_of: datetime | None = None) -> dict[str, object]:
    """Send each rep with open tasks the day's digest, unless they have it already.

    Args:
        as_of: The digest's clock in UTC, an ISO time such as 2026-12-01T07:00:00 (default:
            now); its date in LEADFLOW_SCHEDULE_TIMEZONE is the digest's day, and tasks due
            before it are overdue.
    """
    settings = load_settings()
    settings.ensure_dirs()
    as_of = as_of or utc_now()
    # DuckDB has one writer: the same locks in the same order as the pipeline
    # (flows/pipeline.py). On PostgreSQL the digest runs beside a pipeline (the file lock is
    # only this host's, the writer limit none), its ledger claimed per rep and day.
    with (
        run_lock(settings.warehouse_path, wait_seconds=settings.run_wait_seconds),
        warehouse_writer(settings),
    ):
        result = send_digests(as_of)
    if result is None:
        print("The reps' digest is turned off (LEADFLOW_DIGEST_ENABLED=false)")
        return {"status": "disabled"}
    print(f"Digests sent: {result.delivered}, failed: {result.pending}")
    return {
        "status": "completed",
        "digests_sent": result.delivered,
        "digests_failed": result.pending,
        "problem": result.problem,
    }
