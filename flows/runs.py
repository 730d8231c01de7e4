"""The run ledger (``ops.runs``) and the run lock: one run at a time, and who holds the warehouse.

DuckDB lets one process open the warehouse file, and the pipeline closes it between stages
(dbt opens its own connection), so two runs started together would each fail at some stage,
whichever happened to open the file second. A run therefore holds an OS file lock next to the
warehouse (``warehouse.duckdb.lock``, ``fcntl.flock``) from start to end: a second run waits
for it, commands that only read take it shared and say who is busy when they cannot, and the
kernel releases it when the process dies, so a killed run never leaves it behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from flows.warehouse import ensure_schema, open_warehouse

# How often a waiting run tries the lock again.
POLL_SECONDS = 0.5


# Signals that stopped this process's run: libraries in the way may turn the KeyboardInterrupt
# into an error of their own (DuckDB raises RuntimeError("Query interrupted")).
_signals_received: list[str] = []


def raise_interrupt(signal_number: int, frame: object) -> None:
    """Signal handler for SIGINT and SIGTERM: stop the run as Ctrl-C does, and remember why."""
    _signals_received.append(signal.Signals(signal_number).name)
    raise KeyboardInterrupt(_signals_received[-1])


def interrupted_by() -> str | None:
    """The signal that stopped this process's run, if one did."""
    return _signals_received[-1] if _signals_received else None


def utc_now() -> datetime:
    """The run clock: naive UTC to the second, the form every timestamp in the warehouse has."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_run_id(as_of: datetime) -> str:
    return f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the run lock, as the holder wrote it into the lock file."""

    pid: int | None = None
    run_id: str | None = None
    started_at: str | None = None

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "another run"
        details = [f"started at {self.started_at} UTC" if self.started_at else ""]
        details.append(f"process {self.pid}" if self.pid else "")
        shown = ", ".join(detail for detail in details if detail)
        return run + (f" ({shown})" if shown else "")


class WarehouseBusyError(Exception):
    """Another run holds the warehouse; the message says which and what to do."""

    def __init__(self, message: str, holder: LockHolder) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


def read_holder(warehouse: Path) -> LockHolder:
    """The holder the lock file names (empty when nobody wrote one or it is unreadable)."""
    try:
        values = json.loads(lock_path(warehouse).read_text() or "{}")
    except (OSError, ValueError):
        return LockHolder()
    if not isinstance(values, dict):
        return LockHolder()
    return LockHolder(values.get("pid"), values.get("run_id"), values.get("started_at"))


# Lock files this process holds exclusively, by path: a run's flow takes the lock its command
# already holds without waiting on itself (flock locks belong to each open file).
_held: dict[Path, IO[str]] = {}


def _try_flock(handle: IO[str], operation: int) -> bool:
    try:
        fcntl.flock(handle.fileno(), operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_lock_file(warehouse: Path) -> IO[str]:
    path = lock_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a+")


@contextmanager
def run_lock(
    warehouse: Path,
    *,
    wait_seconds: float,
    on_wait: Callable[[LockHolder], None] = lambda holder: None,
) -> Iterator[None]:
    """Hold the warehouse for a run, waiting up to ``wait_seconds`` for the run before it.

    ``on_wait`` is told once who is being waited for. Raises WarehouseBusyError on timeout.
    """
    path = lock_path(warehouse).resolve()
    if path in _held:
        yield
        return
    handle = _open_lock_file(warehouse)
    try:
        if not _try_flock(handle, fcntl.LOCK_EX):
            holder = read_holder(warehouse)
            on_wait(holder)
            deadline = time.monotonic() + wait_seconds
            while not _try_flock(handle, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"the warehouse is still busy with {read_holder(warehouse).describe()} "
                        f"after waiting {wait_seconds:g} s; try again when it finishes, or "
                        "wait longer with LEADFLOW_RUN_WAIT_SECONDS",
                        holder,
                    )
                time.sleep(POLL_SECONDS)
        _write_holder(handle, LockHolder(os.getpid(), None, f"{utc_now():%Y-%m-%d %H:%M:%S}"))
        _held[path] = handle
        try:
            yield
        finally:
            del _held[path]
            handle.truncate(0)
            handle.flush()
    finally:
        handle.close()  # closing the file releases the lock


@contextmanager
def reading_lock(warehouse: Path) -> Iterator[None]:
    """Share the warehouse with other readers; if a run holds it, say so at once.

    A reader must not open the file during a run: DuckDB's own lock would then make the run's
    next stage fail. Raises WarehouseBusyError naming the run.
    """
    if lock_path(warehouse).resolve() in _held:
        yield
        return
    handle = _open_lock_file(warehouse)
    try:
        if not _try_flock(handle, fcntl.LOCK_SH):
            holder = read_holder(warehouse)
            raise WarehouseBusyError(busy_message(holder), holder)
        yield
    finally:
        handle.close()


def busy_message(holder: LockHolder) -> str:
    return f"the warehouse is busy with {holder.describe()}; try again when it finishes"


def _write_holder(handle: IO[str], holder: LockHolder) -> None:
    handle.seek(0)
    handle.truncate(0)
    handle.write(json.dumps({k: v for k, v in vars(holder).items() if v is not None}))
    handle.flush()


def announce_run(warehouse: Path, run_id: str, started_at: datetime) -> None:
    """Name the run in the lock file this process holds, for the messages of those who wait."""
    handle = _held.get(lock_path(warehouse).resolve())
    if handle is not None:
        _write_holder(handle, LockHolder(os.getpid(), run_id, f"{started_at:%Y-%m-%d %H:%M:%S}"))


def record_start(warehouse: Path, run_id: str, started_at: datetime) -> int:
    """Open the run's row; runs still ``running`` are marked ``crashed`` (returns how many).

    Called under the run lock: a run that still says ``running`` while the lock is free was
    killed before it could record its end.
    """
    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        crashed = connection.execute(
            "update ops.runs set status = 'crashed', finished_at = ? where status = 'running' "
            "returning run_id",
            [started_at],
        ).fetchall()
        connection.execute(
            "insert into ops.runs values (?, ?, null, 'running', null)", [run_id, started_at]
        )
    return len(crashed)


def record_end(warehouse: Path, run_id: str, status: str, summary: dict[str, object]) -> None:
    with open_warehouse(warehouse) as connection:
        connection.execute(
            "update ops.runs set finished_at = ?, status = ?, summary = ? where run_id = ?",
            [utc_now(), status, json.dumps(summary, default=str), run_id],
        )
