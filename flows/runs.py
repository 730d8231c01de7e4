"""The run ledger (``ops.runs``) and the run lock: one run at a time, and who holds the warehouse.

DuckDB lets one process open the warehouse file, and the pipeline closes it between stages
(dbt opens its own connection), so two runs started together would each fail at some stage,
whichever happened to open the file second. A run therefore holds an OS file lock next to the
warehouse (``warehouse.duckdb.lock``, ``fcntl.flock``) from start to end: a second run waits
for it, commands that only read take it shared and say who is busy when they cannot, and the
kernel releases it when the process dies, so a killed run never leaves it behind.

On a PostgreSQL warehouse the server takes any number of readers and writers, and runs may
overlap (sends and tasks are claimed atomically there). What stays one at a time is the
pipeline (extract and dbt build): its lock is a PostgreSQL advisory lock held by a session of
its own, which the server releases when the process dies, on whatever host it ran. Each run
also holds a lock of its own while it is ``running``, so the next run marks crashed only the
runs whose process is gone, not the ones still working beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from flows.settings import PostgresTarget
from flows.warehouse import WarehouseTarget, ensure_schema, open_warehouse

if TYPE_CHECKING:
    from flows.postgres import PostgresConnection

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


def read_holder(warehouse: WarehouseTarget) -> LockHolder:
    """The holder the lock file names (empty when nobody wrote one or it is unreadable); on
    PostgreSQL, the session that holds the pipeline lock."""
    if isinstance(warehouse, PostgresTarget):
        return _pipeline_holder(warehouse)
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


def _busy_after_waiting(holder: LockHolder, wait_seconds: float) -> WarehouseBusyError:
    return WarehouseBusyError(
        f"the warehouse is still busy with {holder.describe()} after waiting "
        f"{wait_seconds:g} s; try again when it finishes, or wait longer with "
        "LEADFLOW_RUN_WAIT_SECONDS",
        holder,
    )


@contextmanager
def run_lock(
    warehouse: WarehouseTarget,
    *,
    wait_seconds: float,
    on_wait: Callable[[LockHolder], None] = lambda holder: None,
) -> Iterator[None]:
    """Hold the warehouse for a run, waiting up to ``wait_seconds`` for the run before it.

    ``on_wait`` is told once who is being waited for. Raises WarehouseBusyError on timeout.
    """
    if isinstance(warehouse, PostgresTarget):
        with _pipeline_lock(warehouse, wait_seconds, on_wait):
            yield
        return
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
                    raise _busy_after_waiting(read_holder(warehouse), wait_seconds)
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
def reading_lock(warehouse: WarehouseTarget) -> Iterator[None]:
    """Share the warehouse with other readers; if a run holds it, say so at once.

    A reader must not open the file during a run: DuckDB's own lock would then make the run's
    next stage fail. Raises WarehouseBusyError naming the run. (PostgreSQL serves readers
    during a run: nothing to hold.)
    """
    if isinstance(warehouse, PostgresTarget) or lock_path(warehouse).resolve() in _held:
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


def announce_run(warehouse: WarehouseTarget, run_id: str, started_at: datetime) -> None:
    """Name the run in the lock file this process holds, for the messages of those who wait;
    on PostgreSQL, in the name of the session that holds the pipeline lock."""
    if isinstance(warehouse, PostgresTarget):
        session = _pipeline_sessions.get(warehouse.url)
        if session is not None:
            _name_session(
                session, LockHolder(os.getpid(), run_id, f"{started_at:%Y-%m-%d %H:%M:%S}")
            )
        return
    handle = _held.get(lock_path(warehouse).resolve())
    if handle is not None:
        _write_holder(handle, LockHolder(os.getpid(), run_id, f"{started_at:%Y-%m-%d %H:%M:%S}"))


def record_start(warehouse: WarehouseTarget, run_id: str, started_at: datetime) -> int:
    """Open the run's row; runs still ``running`` are marked ``crashed`` (returns how many).

    On DuckDB, called under the run lock: a run that still says ``running`` while the lock is
    free was killed before it could record its end. On PostgreSQL, where runs overlap, a
    ``running`` run is crashed when no session holds its own lock any more.
    """
    if isinstance(warehouse, PostgresTarget):
        return _record_start_on_postgres(warehouse, run_id, started_at)
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


def record_end(
    warehouse: WarehouseTarget, run_id: str, status: str, summary: dict[str, object]
) -> None:
    presence = _run_presences.pop(run_id, None)
    if presence is not None:
        presence.close()  # the server releases the run's own lock with its session
    with open_warehouse(warehouse) as connection:
        connection.execute(
            "update ops.runs set finished_at = ?, status = ?, summary = ? where run_id = ?",
            [utc_now(), status, json.dumps(summary, default=str), run_id],
        )


# -- PostgreSQL: the pipeline lock and each run's presence, as advisory locks ------------------
# Sessions this process holds: the pipeline lock's (by warehouse URL) and each running run's.
_pipeline_sessions: dict[str, PostgresConnection] = {}
_run_presences: dict[str, PostgresConnection] = {}
# The session name that carries the holder: "leadflow <pid> <run id or -> <started at>", in
# the 63 bytes PostgreSQL keeps of it.
_SESSION_NAME_PREFIX = "leadflow "


def _name_session(session: PostgresConnection, holder: LockHolder) -> None:
    started_at = (holder.started_at or "-").replace(" ", "T")
    session.name_session(f"{_SESSION_NAME_PREFIX}{holder.pid} {holder.run_id or '-'} {started_at}")


def _holder_named(name: str) -> LockHolder | None:
    parts = name.removeprefix(_SESSION_NAME_PREFIX).split(" ")
    if not name.startswith(_SESSION_NAME_PREFIX) or len(parts) != 3 or not parts[0].isdigit():
        return None
    run_id, started_at = (None if part == "-" else part for part in parts[1:])
    return LockHolder(int(parts[0]), run_id, started_at and started_at.replace("T", " "))


@contextmanager
def _pipeline_lock(
    warehouse: PostgresTarget, wait_seconds: float, on_wait: Callable[[LockHolder], None]
) -> Iterator[None]:
    if warehouse.url in _pipeline_sessions:
        yield
        return
    session = _session(warehouse)
    try:
        if not session.try_advisory_lock("pipeline"):
            on_wait(_pipeline_holder(warehouse))
            deadline = time.monotonic() + wait_seconds
            while not session.try_advisory_lock("pipeline"):
                if time.monotonic() >= deadline:
                    raise _busy_after_waiting(_pipeline_holder(warehouse), wait_seconds)
                time.sleep(POLL_SECONDS)
        _name_session(session, LockHolder(os.getpid(), None, f"{utc_now():%Y-%m-%d %H:%M:%S}"))
        _pipeline_sessions[warehouse.url] = session
        try:
            yield
        finally:
            del _pipeline_sessions[warehouse.url]
    finally:
        session.close()  # closing the session releases the lock


def _session(warehouse: PostgresTarget) -> PostgresConnection:
    from flows.postgres import PostgresConnection

    return PostgresConnection(warehouse)


def _pipeline_holder(warehouse: PostgresTarget) -> LockHolder:
    """The run whose session holds the pipeline lock (empty when none does)."""
    with closing(_session(warehouse)) as session:
        holders = [_holder_named(name) for name in session.advisory_holders("pipeline")]
    return next((holder for holder in holders if holder is not None), LockHolder())


def _record_start_on_postgres(warehouse: PostgresTarget, run_id: str, started_at: datetime) -> int:
    # The run's own session holds its presence lock until record_end, and does the work too.
    presence = _session(warehouse)
    presence.try_advisory_lock(f"run {run_id}")
    _run_presences[run_id] = presence
    ensure_schema(presence)
    running = presence.execute("select run_id from ops.runs where status = 'running'").fetchall()
    held = presence.held_advisory_keys()
    gone = [other for (other,) in running if presence.advisory_key(f"run {other}") not in held]
    crashed = presence.execute(
        "update ops.runs set status = 'crashed', finished_at = ? "
        "where status = 'running' and list_contains(?, run_id) returning run_id",
        [started_at, gone],
    ).fetchall()
    presence.execute(
        "insert into ops.runs values (?, ?, null, 'running', null)", [run_id, started_at]
    )
    return len(crashed)
