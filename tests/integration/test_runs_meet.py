"""Runs that meet: `leadflow run` twice at once, and a run stopped with SIGTERM.

Real processes, as a user starts them: each `leadflow run` starts its own temporary Prefect
server, dbt and GX, on a small generated data folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from flows.runs import read_holder

pytestmark = pytest.mark.slow

LEADFLOW = Path(sys.executable).with_name("leadflow")


def leadflow_env(data: Path) -> dict[str, str]:
    """The environment of a user's terminal: this data folder, no test harness's Prefect."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "LEADFLOW_"))
    }
    return env | {
        "LEADFLOW_DATA_DIR": str(data),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    subprocess.run(
        [LEADFLOW, "generate", "--leads", "300", "--seed", "3"],
        env=leadflow_env(data),
        check=True,
        capture_output=True,
    )
    return data


def group_members(group: int) -> list[int]:
    """Processes still in a process group (Linux: field 5 of /proc/PID/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_two_runs_started_together_both_complete_one_after_the_other(data):
    runs = [
        subprocess.Popen(
            [LEADFLOW, "run", "--json"],
            env=leadflow_env(data),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "Error logging to API" not in stderr  # the last logs reached Prefect in time
    assert sum("Waiting for " in stderr for _, stderr in outputs) == 1, outputs
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        (first, second) = connection.execute(
            "select status, started_at, finished_at from ops.runs order by started_at"
        ).fetchall()
        files_loaded = connection.execute("select count(*) from ops.loads").fetchone()
    assert first[0] == second[0] == "completed"
    assert second[1] >= first[2], "the second run started before the first had finished"
    assert files_loaded == (5,)  # the second found nothing new: each file loaded once

    # The digest, a short flow, ends before Prefect's log worker would have sent its last
    # lines on its own: they are sent before the temporary server stops.
    digest = subprocess.run(
        [LEADFLOW, "digest"], env=leadflow_env(data), capture_output=True, text=True, timeout=300
    )
    assert digest.returncode == 0, digest.stderr
    assert "Digests sent: " in digest.stdout
    assert "Error logging to API" not in digest.stderr, digest.stderr


def test_a_terminated_run_leaves_no_process_behind(data):
    run = subprocess.Popen(
        [LEADFLOW, "run"],
        env=leadflow_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: every child it starts is in it
    )
    group = run.pid
    deadline = time.monotonic() + 300
    # In the flow: the run has named itself in the lock file, so its Prefect server is up.
    while read_holder(data / "warehouse.duckdb").run_id is None:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    assert len(group_members(group)) >= 2, "no temporary Prefect server in the run's group"
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert "Interrupted." in stderr
    assert "Traceback" not in stderr
    time.sleep(1)
    survivors = group_members(group)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"processes left behind by the terminated run: {survivors}"
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        statuses = connection.execute("select status from ops.runs").fetchall()
    # Interrupted, or failed when the signal landed inside a DuckDB query (which DuckDB turns
    # into its own error): never left running.
    assert statuses in ([("interrupted",)], [("failed",)]), statuses
