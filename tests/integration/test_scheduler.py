"""Schedules that fire: `leadflow serve` against a real `prefect server start`, notifications
of failed runs to a local webhook, and the global concurrency limits."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prefect import flow, get_client

from flows.limits import EMAIL_PROVIDER, WAREHOUSE_WRITER, warehouse_writer
from flows.notify import notify
from flows.send import send_due_nurture
from flows.serve import TELEMETRY_OFF
from flows.settings import load_settings
from tests.webhook_receiver import WebhookReceiver, webhook_receiver

# A deployment of a real LeadFlow flow that is cheap on an empty warehouse (it sends nothing
# until a pipeline run has checked the queue) on an interval of seconds, not the 15 minutes
# of prefect.yaml: the scheduler path is the same, the test is not an hour long.
DEPLOYMENTS = """
deployments:
  - name: every-few-seconds
    entrypoint: flows/send.py:send_due_nurture
    parameters:
      as_of: "2026-12-01T08:15:00"
    schedules:
      - interval: 10
        timezone: "{{ $LEADFLOW_SCHEDULE_TIMEZONE }}"
"""


def wait_for(what: str, check, timeout_s: float, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in command:
                found.append(int(entry.name))
    return found


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_leadflow_serve_gets_a_scheduled_run_created_and_completed_then_stops_everything(
    tmp_path: Path,
):
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(DEPLOYMENTS)
    prefect_home = tmp_path / "prefect"
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")},
        **TELEMETRY_OFF,
        "LEADFLOW_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_HOME": str(prefect_home),
        # The scheduler looks for runs to create every 2 s instead of every 60 s.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "COLUMNS": "200",
    }
    leadflow = Path(sys.executable).with_name("leadflow")
    output = tmp_path / "serve.out"
    started = time.monotonic()
    with output.open("wb") as log:
        serve = subprocess.Popen(
            [str(leadflow), "serve", "--file", str(deployments)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    port = None
    try:
        ui = wait_for(
            "leadflow serve prints the UI's address",
            lambda: re.search(r"Prefect UI: (http://127\.0\.0\.1:(\d+))", output.read_text()),
            timeout_s=300,
        )
        api, port = ui.group(1) + "/api", int(ui.group(2))
        wait_for(
            "the deployment's next run is printed",
            lambda: "send_due_nurture/every-few-seconds" in output.read_text(),
            timeout_s=120,
        )
        completed = wait_for(
            "a scheduled run completes",
            lambda: httpx.post(
                f"{api}/flow_runs/filter",
                json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 1},
            ).json(),
            timeout_s=300,
            interval_s=2,
        )
        seconds_to_first_run = time.monotonic() - started
        (run,) = completed
        assert run["auto_scheduled"], "created by the server's scheduler, not by hand"
        # The ISO string from the deployment was validated into the flow's datetime.
        assert run["parameters"] == {"as_of": "2026-12-01T08:15:00"}
        limits = httpx.post(f"{api}/v2/concurrency_limits/filter", json={}).json()
        assert {limit["name"]: limit["limit"] for limit in limits} == {
            WAREHOUSE_WRITER: 1,
            EMAIL_PROVIDER: 10,
        }
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            code = None
        server_left = processes_mentioning(f"--port {port}") if port else []
        for pid in server_left:
            os.kill(pid, signal.SIGKILL)
    log_text = output.read_text()
    assert code == 0, f"leadflow serve did not stop on Ctrl-C within 120 s:\n{log_text}"
    assert "Stopped." in log_text
    assert server_left == [], "the Prefect server outlived leadflow serve"
    assert port is not None and not port_is_open(port)
    server_log = (prefect_home / "server.log").read_text()
    assert "bulk DML" not in server_log
    assert "telemetry" not in server_log.lower()
    print(f"first scheduled run completed {seconds_to_first_run:.0f} s after leadflow serve began")


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        monkeypatch.setenv("LEADFLOW_NOTIFY_WEBHOOK_URL", receiver.url)
        yield receiver


@pytest.mark.slow
def test_a_failed_run_is_posted_to_the_webhook_with_the_run_the_flow_and_the_reason(
    data_dir: Path, receiver: WebhookReceiver
):
    data_dir.mkdir(parents=True)
    (data_dir / "warehouse.duckdb").write_text("not a DuckDB file")
    with pytest.raises(Exception, match=r"warehouse\.duckdb"):
        send_due_nurture()
    (body,) = receiver.bodies
    assert body["event"] == "run_failed"
    assert body["flow"] == "send_due_nurture"
    assert body["run"] and body["flow_run_id"]
    assert "warehouse.duckdb" in str(body["reason"])
    assert f"send_due_nurture run {body['run']}" in str(body["text"])


@flow(name="gate_check_stand_in")
def blocked_gate_stand_in(reason: str) -> bool:
    return notify(load_settings(), "gate_blocked", reason)


@pytest.mark.slow
def test_a_blocked_gate_is_posted_from_the_run_that_saw_it(
    data_dir: Path, receiver: WebhookReceiver
):
    assert blocked_gate_stand_in("nurture_queue: 3 rows have no email")
    (body,) = receiver.bodies
    assert body["event"] == "gate_blocked"
    assert body["flow"] == "gate_check_stand_in"
    assert body["reason"] == "nurture_queue: 3 rows have no email"
    assert body["run"] and body["flow_run_id"]


@flow(name="warehouse_writer_stand_in")
def hold_the_writer(seconds: float) -> tuple[datetime, datetime]:
    with warehouse_writer(load_settings()):
        began = datetime.now()
        time.sleep(seconds)
        return began, datetime.now()


@pytest.mark.slow
def test_the_limits_exist_after_start_up_and_a_second_writer_waits_for_the_first(data_dir):
    held: dict[str, tuple[datetime, datetime]] = {}

    def writer(name: str) -> None:
        held[name] = hold_the_writer(3)

    first = threading.Thread(target=writer, args=("first",))
    first.start()
    time.sleep(1.5)
    second = threading.Thread(target=writer, args=("second",))
    second.start()
    first.join(timeout=120)
    second.join(timeout=120)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(WAREHOUSE_WRITER).limit == 1
        provider = client.read_global_concurrency_limit_by_name(EMAIL_PROVIDER)
        assert (provider.limit, provider.slot_decay_per_second) == (10, 10.0)
    (earlier_began, earlier_ended), (later_began, _) = sorted(held.values())
    assert earlier_began < earlier_ended <= later_began
