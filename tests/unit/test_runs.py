"""The run lock and the run ledger: one run at a time, who holds the warehouse, crashed runs.

Each runs on the DuckDB file (an OS file lock) and on a PostgreSQL warehouse (advisory locks,
held by sessions the server ends when their process dies).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from flows import runs
from flows.runs import (
    LockHolder,
    WarehouseBusyError,
    lock_path,
    read_holder,
    reading_lock,
    record_end,
    record_start,
    run_lock,
)
from flows.settings import PostgresTarget
from flows.warehouse import WarehouseTarget, connect

RUN_ID = "20261207T010000-abc123"

# Another process that holds the run lock, as a run would, until it is told to stop.
HOLDER = """
import sys, time
from datetime import datetime
from pathlib import Path
from flows.runs import announce_run, record_start, run_lock
from flows.settings import PostgresTarget
target = sys.argv[1]
warehouse = PostgresTarget(target) if target.startswith("postgresql:") else Path(target)
with run_lock(warehouse, wait_seconds=0):
    announce_run(warehouse, sys.argv[2], datetime(2026, 12, 7, 1, 0))
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold_lock(warehouse: WarehouseTarget, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, target_argument(warehouse), RUN_ID, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    return holder


def target_argument(warehouse: WarehouseTarget) -> str:
    return warehouse.url if isinstance(warehouse, PostgresTarget) else str(warehouse)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseTarget]:
    if request.param == "duckdb":
        yield tmp_path / "warehouse.duckdb"
    else:
        yield request.getfixturevalue("postgres_database")


def test_a_second_run_waits_for_the_first_and_is_told_which(warehouse):
    holder = hold_lock(warehouse, 1.5)
    waited_for: list[LockHolder] = []
    started = time.monotonic()
    with run_lock(warehouse, wait_seconds=30, on_wait=waited_for.append):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 1.2, "the lock was taken while the first run held it"
    assert [holder.run_id for holder in waited_for] == [RUN_ID]
    assert "started at 2026-12-07 01:00:00 UTC" in waited_for[0].describe()


def test_a_run_that_waits_too_long_names_the_run_and_the_setting(warehouse):
    holder = hold_lock(warehouse, 30)
    try:
        with pytest.raises(WarehouseBusyError) as raised, run_lock(warehouse, wait_seconds=0.6):
            pytest.fail("the lock was taken while another run held it")
    finally:
        holder.terminate()
        holder.wait()
    assert RUN_ID in str(raised.value)
    assert "LEADFLOW_RUN_WAIT_SECONDS" in str(raised.value)


def test_the_lock_of_a_killed_run_is_free_at_once(warehouse):
    holder = hold_lock(warehouse, 30)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_lock(warehouse, wait_seconds=0):
        assert read_holder(warehouse).pid == os.getpid()
    assert read_holder(warehouse) == LockHolder(), "a finished run leaves no holder named"


def test_readers_share_the_duckdb_file_but_never_open_it_during_a_run(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with reading_lock(warehouse), reading_lock(warehouse):
        pass
    holder = hold_lock(warehouse, 30)
    try:
        with pytest.raises(WarehouseBusyError) as raised, reading_lock(warehouse):
            pytest.fail("a reader got in during a run")
    finally:
        holder.terminate()
        holder.wait()
    assert f"busy with run {RUN_ID} (started at 2026-12-07 01:00:00 UTC" in str(raised.value)
    assert "try again when it finishes" in str(raised.value)


def test_the_run_holding_the_lock_may_read_and_take_it_again(warehouse):
    with (
        run_lock(warehouse, wait_seconds=0),
        run_lock(warehouse, wait_seconds=0),
        reading_lock(warehouse),
    ):
        pass
    if not isinstance(warehouse, PostgresTarget):
        assert lock_path(warehouse).exists()


def test_on_postgres_readers_go_on_during_a_run(postgres_database):
    holder = hold_lock(postgres_database, 30)
    try:
        with reading_lock(postgres_database):
            assert read_holder(postgres_database).run_id == RUN_ID
    finally:
        holder.terminate()
        holder.wait()


def test_a_run_killed_earlier_is_marked_crashed_when_the_next_starts(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    record_start(warehouse, "killed-run", datetime(2026, 12, 7, 1, 0))
    record_start(warehouse, "finished-run", datetime(2026, 12, 7, 2, 0))  # marks the first
    record_end(warehouse, "finished-run", "completed", {})
    crashed = record_start(warehouse, "next-run", datetime(2026, 12, 7, 3, 0))
    assert crashed == 0
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select run_id, status, finished_at from ops.runs order by started_at"
        ).fetchall()
    assert rows[0] == ("killed-run", "crashed", datetime(2026, 12, 7, 2, 0))
    assert rows[1][:2] == ("finished-run", "completed")
    assert rows[2] == ("next-run", "running", None)


# A run that records its start and works until it is killed.
RUNNING = """
import sys, time
from datetime import datetime
from flows.runs import record_start
from flows.settings import PostgresTarget
record_start(PostgresTarget(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3]))
print("running", flush=True)
time.sleep(60)
"""


def start_run(warehouse: PostgresTarget, run_id: str, at: datetime) -> subprocess.Popen[str]:
    run = subprocess.Popen(
        [sys.executable, "-c", RUNNING, warehouse.url, run_id, at.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    assert run.stdout.readline().strip() == "running"
    return run


def test_on_postgres_only_runs_whose_process_is_gone_are_marked_crashed(postgres_database):
    killed = start_run(postgres_database, "killed-run", datetime(2026, 12, 7, 1, 0))
    working = start_run(postgres_database, "working-run", datetime(2026, 12, 7, 1, 30))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    try:
        assert record_start(postgres_database, "next-run", datetime(2026, 12, 7, 2, 0)) == 1
        record_end(postgres_database, "next-run", "completed", {})
    finally:
        working.terminate()
        working.wait()
    with closing(connect(postgres_database)) as connection:
        rows = connection.execute(
            "select run_id, status, finished_at from ops.runs order by started_at"
        ).fetchall()
    assert rows[0] == ("killed-run", "crashed", datetime(2026, 12, 7, 2, 0))
    assert rows[1] == ("working-run", "running", None), "a run still working was not crashed"
    assert rows[2][:2] == ("next-run", "completed")


def test_a_signal_stops_the_run_and_is_remembered_whatever_error_it_surfaces_as(monkeypatch):
    monkeypatch.setattr(runs, "_signals_received", [])
    assert runs.interrupted_by() is None
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        runs.raise_interrupt(signal.SIGTERM, None)
    assert runs.interrupted_by() == "SIGTERM"
