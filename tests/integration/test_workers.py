"""Workers on several hosts, tested locally: a real Prefect server, a process work pool and two
workers, the deployments of prefect.yaml, a PostgreSQL warehouse, and nurture runs that
overlap. Every due step is sent once and every task created once.

Each worker stands for a host of its own: its own data folder (outbox, dbt state), the same
warehouse and the same email provider (a SendGrid double on 127.0.0.1 that answers slowly, so
the runs' sending overlaps).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from flows.demo.generate import generate_dataset
from flows.email.tracks import follow_up_policies, load_tracks
from flows.pipeline import lead_pipeline
from flows.serve import TELEMETRY_OFF, PrefectServer, start_server, stop_server
from flows.settings import PROJECT_ROOT, PostgresTarget
from flows.warehouse import connect
from tests.integration.test_scheduler import wait_for
from tests.sendgrid_double import SendGridDouble

pytestmark = pytest.mark.slow

GENERATED_AT = datetime(2026, 11, 1)
BUILT_AT = datetime(2026, 11, 2, 9, 0)
SENT_AT = "2026-11-02T09:30:00"
POOL = "leadflow-process"
KEY = "SG." + "w" * 22 + "." + "k" * 43  # the shape of a SendGrid key


def sendgrid_ready_project(root: Path) -> Path:
    """The checkout as a project whose tracks have SendGrid unsubscribe groups (SendGrid
    refuses a send without one): the tracks copied, the rest linked."""
    project = root / "project"
    project.mkdir()
    for folder in ("dbt_project", "expectations", "flows"):
        (project / folder).symlink_to(PROJECT_ROOT / folder)
    shutil.copy(PROJECT_ROOT / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(PROJECT_ROOT / "templates", project / "templates")
    tracks = sorted((project / "templates" / "tracks").glob("*/track.yml"))
    for group, track_file in enumerate(tracks, start=101):
        track_file.write_text(track_file.read_text() + f"unsubscribe_group: {group}\n")
    return project


def prefect(*arguments: str, environment: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *arguments],
        env=environment,
        cwd=environment["LEADFLOW_PROJECT_DIR"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"prefect {' '.join(arguments)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrefectServer]:
    server = start_server(tmp_path / "prefect")
    try:
        yield server
    finally:
        stop_server(server)


def base_environment(
    server: PrefectServer, warehouse: PostgresTarget, project: Path
) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "LEADFLOW_", "SENDGRID_"))
    }
    return {
        **inherited,
        **TELEMETRY_OFF,
        "PREFECT_API_URL": server.api_url,
        "LEADFLOW_PROJECT_DIR": str(project),
        "LEADFLOW_SCHEDULE_TIMEZONE": "UTC",
        "LEADFLOW_WAREHOUSE_URL": warehouse.url,
    }


def start_worker(
    name: str, environment: dict[str, str], data_dir: Path, log_dir: Path
) -> subprocess.Popen[bytes]:
    """A process worker that takes one flow run at a time, as a host of its own."""
    with (log_dir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
             "--name", name, "--limit", "1"],
            env={**environment, "LEADFLOW_DATA_DIR": str(data_dir)},
            cwd=environment["LEADFLOW_PROJECT_DIR"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def flow_runs(server: PrefectServer, ids: list[str]) -> list[dict]:
    return httpx.post(
        f"{server.api_url}/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}
    ).json()


def test_two_workers_overlap_yet_send_each_step_once_and_create_each_task_once(
    tmp_path: Path, postgres_database: PostgresTarget, server: PrefectServer, monkeypatch
):
    warehouse = postgres_database
    project = sendgrid_ready_project(tmp_path)
    # The queue, built and gated by a pipeline run on the PostgreSQL warehouse, with every due
    # email held back (a daily limit of 0) for the workers' runs to send.
    monkeypatch.setenv("LEADFLOW_PROJECT_DIR", str(project))
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "builder"))
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", warehouse.url)
    monkeypatch.setenv("LEADFLOW_DAILY_SEND_LIMIT", "0")
    generate_dataset(tmp_path / "builder" / "inbox", leads=600, seed=5, as_of=GENERATED_AT)
    built = lead_pipeline(as_of=BUILT_AT)
    assert built.gate.passed, built.gate.explanation
    assert built.emails_sent == 0 and built.emails_deferred > 0
    with closing(connect(warehouse)) as connection:
        due = {
            (lead, track, step)
            for lead, track, step in connection.execute(
                "select lead_id, nurture_track, next_step from main.fct_nurture_queue where is_due"
            ).fetchall()
        }

    # Both hosts built the models before (dbt's record of its last build): the hourly run then
    # rebuilds only what the clock reaches, and reaches its nurture stage while the 15-minute
    # send is still sending.
    for name in ("host-a", "host-b"):
        shutil.copytree(tmp_path / "builder" / "dbt", tmp_path / name / "dbt")
    environment = base_environment(server, warehouse, project)
    prefect("work-pool", "create", POOL, "--type", "process", environment=environment)
    deployed = prefect("deploy", "--all", environment=environment)
    assert "send_due_nurture/business-hours" in deployed

    with ExitStack() as cleanup, SendGridDouble(latency_s=4) as double:
        sending = {
            **environment,
            "SENDGRID_API_KEY": KEY,
            "LEADFLOW_SENDGRID_HOST": double.url,
        }
        for name in ("host-a", "host-b"):
            worker = start_worker(name, sending, tmp_path / name, tmp_path)
            cleanup.callback(stop, worker)
        # Two nurture runs at once, one per worker: the 15-minute send, and an hourly pipeline
        # run, which builds the models again on its host and then sends what is still due.
        run_ids = []
        for deployment in ("send_due_nurture/business-hours", "lead_pipeline/hourly"):
            output = prefect(
                "deployment", "run", deployment, "--param", f"as_of={SENT_AT}",
                environment=environment,
            )  # fmt: skip
            run_ids += [line.split()[-1] for line in output.splitlines() if "UUID" in line]
        assert len(run_ids) == 2, run_ids
        finished = wait_for(
            "both runs finish",
            lambda: (
                runs
                if len(runs := flow_runs(server, run_ids)) == 2
                and all(run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED") for run in runs)
                else None
            ),
            timeout_s=900,
            interval_s=3,
        )
        messages = double.accepted_messages()

    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("host-a", "host-b")}
    states = {run["id"]: run["state"]["type"] for run in finished}
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    # Each worker took one of the runs.
    assert sorted(sum(run_id in log for run_id in run_ids) for log in logs.values()) == [1, 1]

    with closing(connect(warehouse)) as connection:
        ledger = connection.execute(
            "select lead_id, track, step, status, run_id, message_key from ops.email_sends"
        ).fetchall()
        # The hourly run rebuilt the queue at its own clock: steps due by then count too.
        due_later = set(
            connection.execute(
                "select lead_id, nurture_track, next_step from main.fct_nurture_queue where is_due"
            ).fetchall()
        )
        tasks = connection.execute(
            "select lead_id, owner_rep_id, reason, track, step, status from ops.sales_tasks"
        ).fetchall()
    sent = [row for row in ledger if row[3] == "sent"]
    sent_steps = {(lead, track, step) for lead, track, step, *_ in sent}
    assert due <= sent_steps and due_later <= sent_steps, "every due step was sent"
    assert sent_steps <= due | due_later
    # Both runs sent: their sending overlapped, and neither sent what the other had claimed.
    assert len({run for *_, run, _ in sent}) == 2, "both runs sent some of the due steps"
    keys = Counter(key for key, _ in messages)
    assert set(keys) == {key for *_, key in sent}
    assert max(keys.values()) == 1, "a step was emailed twice"

    # Each task once, and one open task per lead and rep.
    assert max(Counter(task[:5] for task in tasks).values()) == 1
    open_tasks = Counter(task[:2] for task in tasks if task[5] in ("queued", "open"))
    assert max(open_tasks.values()) == 1
    policies = follow_up_policies(load_tracks(project / "templates"))
    follow_ups = [task for task in tasks if task[3] is not None]
    always = {
        (lead, track, step)
        for lead, track, step in sent_steps
        if policies[(track, step)] == "always"
    }
    assert {(lead, track, step) for lead, _, _, track, step, _ in follow_ups} == always
    print(json.dumps({"due": len(due | due_later), "requests": len(double.requests)}))
