"""Send due nurture steps between pipeline runs, without rebuilding anything.

The hourly pipeline builds ``fct_nurture_queue`` and gates it; this flow sends from the queue
as that last build left it (no dbt, no extract), so emails go out every 15 minutes inside
business hours at the cost of a query. The send ledger keeps a step from going out twice, and
a queue the gate blocked stays blocked until a pipeline run passes it.

On a DuckDB warehouse (one writer) the send takes its turn with the pipeline; on PostgreSQL it
runs beside the pipeline and beside other sends: their claims on the ledger are atomic.
"""

# No ``from __future__ import annotations``: Prefect validates deployed runs' parameters
# against the signature (see flows/pipeline.py).
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.limits import warehouse_writer
from flows.notify import notify_failed_run
from flows.nurture import nurture
from flows.runs import new_run_id, record_end, record_start, run_lock, utc_now
from flows.settings import PostgresTarget, Settings, load_settings
from flows.warehouse import WarehouseTarget, ensure_schema, open_warehouse

NURTURE_QUEUE_SUITE = "nurture_queue.critical"


@dataclass(frozen=True)
class QueueVerdict:
    """The gate's verdict on the nurture queue of the last pipeline run that checked it."""

    run_id: str | None  # None: no pipeline run has built and checked the queue yet
    passed: bool
    failures: str = ""

    @property
    def reason(self) -> str:
        if self.run_id is None:
            return "no pipeline run has built and checked the nurture queue yet"
        if self.passed:
            return f"the gate passed the nurture queue of run {self.run_id}"
        return f"the gate blocked the nurture queue of run {self.run_id}: {self.failures}"


def last_queue_verdict(warehouse: WarehouseTarget) -> QueueVerdict:
    """Read from ops.gate_results which run built the queue last and whether it passed."""
    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        row = connection.execute(
            """
            select gate.run_id, gate.success, gate.failed_expectations
            from ops.gate_results as gate
            inner join ops.runs as runs on gate.run_id = runs.run_id
            where gate.suite = ?
            order by runs.started_at desc
            limit 1
            """,
            [NURTURE_QUEUE_SUITE],
        ).fetchone()
    if row is None:
        return QueueVerdict(run_id=None, passed=False)
    run_id, success, failures = row
    return QueueVerdict(run_id=run_id, passed=bool(success), failures=str(failures or ""))


@task(cache_policy=NO_CACHE)
def check_queue_verdict() -> QueueVerdict:
    return last_queue_verdict(load_settings().warehouse)


@contextmanager
def writers_turn(settings: Settings) -> Iterator[None]:
    """On DuckDB, wait for the warehouse's one writer slot: the same locks in the same order as
    the pipeline (flows/pipeline.py). PostgreSQL takes sends beside the pipeline and each
    other, so there is nothing to wait for."""
    if isinstance(settings.warehouse, PostgresTarget):
        yield
        return
    with (
        run_lock(settings.warehouse, wait_seconds=settings.run_wait_seconds),
        warehouse_writer(settings),
    ):
        yield


@flow(
    name="send_due_nurture",
    log_prints=True,
    on_failure=[notify_failed_run],
    on_crashed=[notify_failed_run],
)
def send_due_nurture(as_of: datetime | None = None) -> dict[str, object]:
    """Send the nurture steps that are due in the queue as the last pipeline run built it.

    Args:
        as_of: The send's clock in UTC, an ISO time such as 2026-12-01T08:15:00 (default:
            now); it stamps the send ledger and the follow-up tasks.
    """
    settings = load_settings()
    settings.ensure_dirs()
    as_of = as_of or utc_now()
    with writers_turn(settings):
        verdict = check_queue_verdict()
        print(verdict.reason)
        if not verdict.passed:
            # The pipeline run that blocked the queue has notified already.
            return {"status": "not_sent", "reason": verdict.reason}
        run_id = new_run_id(as_of)
        record_start(settings.warehouse, run_id, utc_now())
        try:
            dispatched, follow_ups = nurture(run_id, as_of)
        except BaseException as error:
            record_end(settings.warehouse, run_id, "failed", {"error": str(error)})
            raise
        result: dict[str, object] = {
            "status": "completed",
            "run_id": run_id,
            "emails_due": dispatched.due,
            "emails_sent": dispatched.sent,
            "emails_failed": dispatched.failed,
            "emails_not_rendered": dispatched.not_rendered,
            "emails_deferred_quiet_hours": dispatched.deferred_quiet_hours,
            "emails_pending_unknown": dispatched.unknown_pending,
            "emails_released_never_sent": dispatched.released_never_sent,
            "tasks_created": follow_ups,
        }
        record_end(settings.warehouse, run_id, "completed", result)
    return result
