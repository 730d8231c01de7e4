"""Deliver sales tasks where reps work: sinks behind one interface.

``ops.sales_tasks`` is the system of record; every sink delivers from it and is idempotent, so
a run can call them all, any number of times, and a sink that failed catches up on the next
run. The sinks a run uses are chosen from the settings in one place
(``flows/sales/delivery.py``):

- ``WarehouseSink``, always: the table itself (it reports the rep's pending work);
- ``RepCsvSink``, always: ``<rep_id>.csv`` per rep with their open tasks, rewritten whole;
- ``WebhookSink`` (``flows/sales/webhook_sink.py``) when ``LEADFLOW_TASK_WEBHOOK_URL`` is set;
- ``DigestSink`` (``flows/sales/digest.py``), the daily digest email, run by its own flow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from flows.sales.tasks import PENDING_TASK_STATUSES, PRIORITY_TIER_SIZE
from flows.warehouse import Connection

TASK_COLUMNS = (
    "task_id",
    "due_at",
    "reason",
    "title",
    "why_now",
    "email",
    "phone",
    "lead_id",
    "track",
    "step",
    "created_at",
    "priority",
)


def rep_queue_order(clock: str = "?") -> str:
    """A rep's queue as every sink shows it: by priority tier (sales-ready hand-offs first,
    then follow-ups after a click, then the rest: flows/sales/tasks.py), overdue by ``clock``
    (a SQL parameter) first within a tier, then by priority (highest first), then soonest
    due."""
    return (
        f"priority // {PRIORITY_TIER_SIZE} desc nulls last, (due_at < {clock}) desc, "
        "priority desc nulls last, due_at, task_id"
    )


@dataclass(frozen=True)
class SinkResult:
    """What one sink did in one call."""

    sink: str
    delivered: int  # tasks (webhook: events, digest: emails) the sink holds or took this time
    pending: int = 0  # left for a later run
    problem: str | None = None  # why something is left, without secrets


class TaskSink(Protocol):
    name: str

    def deliver(self, connection: Connection, as_of: datetime) -> SinkResult:
        """Bring the sink up to date with ``ops.sales_tasks``; safe to call again."""
        ...


def deliver_tasks(
    connection: Connection, sinks: Sequence[TaskSink], as_of: datetime
) -> list[SinkResult]:
    return [sink.deliver(connection, as_of) for sink in sinks]


class WarehouseSink:
    """``ops.sales_tasks``, the system of record: a task is there from the moment it exists."""

    name = "warehouse"

    def deliver(self, connection: Connection, as_of: datetime) -> SinkResult:
        row = connection.execute(
            "select count(*) from ops.sales_tasks where list_contains(?, status)",
            [list(PENDING_TASK_STATUSES)],
        ).fetchone()
        return SinkResult(self.name, int(row[0]) if row else 0)


class RepCsvSink:
    """``<rep_id>.csv`` per rep in ``tasks_dir``: the rep's open tasks."""

    name = "rep_csv"

    def __init__(self, tasks_dir: Path) -> None:
        self.tasks_dir = tasks_dir

    def deliver(self, connection: Connection, as_of: datetime) -> SinkResult:
        counts = write_rep_task_files(connection, self.tasks_dir, as_of=as_of)
        return SinkResult(self.name, sum(counts.values()))


def rep_file_name(rep_id: str) -> str:
    """A safe file name for a rep id that came from a source file."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", rep_id).lstrip(".") + ".csv"


def _copy_to_csv(
    connection: Connection, query: str, parameters: list[object], target: Path
) -> None:
    """The query's rows as ``target``, replaced atomically: a reader sees the old or the new.
    The temporary file is the process's own: on PostgreSQL, runs may overlap."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    quoted = str(temporary).replace("'", "''")
    connection.execute(f"copy ({query}) to '{quoted}' (format csv, header)", parameters)
    os.replace(temporary, target)


def write_rep_task_files(
    connection: Connection, tasks_dir: Path, *, as_of: datetime | None = None
) -> dict[str, int]:
    """Write ``<rep_id>.csv`` with each rep's open tasks in queue order (overdue first by
    ``as_of``, default now). A file whose rep has no open task any more is emptied to its
    header, so a closed task never lingers in a rep's file."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    clock = as_of or datetime.now(UTC).replace(tzinfo=None)
    counts = dict(
        connection.execute(
            "select owner_rep_id, count(*) from ops.sales_tasks where status = 'open' "
            "group by all order by all"
        ).fetchall()
    )
    columns = ", ".join(TASK_COLUMNS)
    written = set()
    for rep_id in counts:
        target = tasks_dir / rep_file_name(rep_id)
        _copy_to_csv(
            connection,
            f"select {columns} from ops.sales_tasks where status = 'open' and owner_rep_id = ? "
            f"order by {rep_queue_order()}",
            [rep_id, clock],
            target,
        )
        written.add(target.name)
    for stale in sorted(tasks_dir.glob("*.csv")):
        if stale.name not in written:
            _copy_to_csv(
                connection, f"select {columns} from ops.sales_tasks where false", [], stale
            )
    return counts
