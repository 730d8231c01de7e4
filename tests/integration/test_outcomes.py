"""Outcomes in three ways, on the real pipeline: each closes its task on the next run, and a lead
rejected as not ready is in the not-ready nurture track (issue 22's acceptance)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.demo.generate import generate_dataset
from flows.pipeline import lead_pipeline
from flows.runs import utc_now
from flows.sales.outcomes import callback_signature

pytestmark = pytest.mark.slow

SECRET = "integration-shared-secret-0123456789"
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post_signed(url: str, payload: object) -> int:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-LeadFlow-Timestamp": timestamp,
            "X-LeadFlow-Signature": callback_signature(SECRET, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_until_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the receiver exited"
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the receiver did not start")


def pending_tasks(warehouse: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(
            "select task_id, lead_id from ops.sales_tasks "
            "where reason = 'mql_handoff' and status in ('queued', 'open') order by task_id"
        ).fetchall()


def test_an_outcome_recorded_each_way_closes_its_task_on_the_next_run(
    tmp_path, data_dir, monkeypatch
):
    first_at = utc_now() - timedelta(hours=2)
    generate_dataset(data_dir / "inbox", leads=900, seed=11, as_of=first_at)
    lead_pipeline(as_of=first_at)
    warehouse = data_dir / "warehouse.duckdb"
    (by_command, lead_1), (by_upload, lead_2), (by_callback, lead_3) = pending_tasks(warehouse)[:3]

    # 1. The command, for a lead that is not ready.
    recorded = runner.invoke(app, ["outcome", by_command, "rejected", "--reason", "not_ready"])
    assert recorded.exit_code == 0, recorded.output

    # 2. An upload naming its lead by LeadFlow's lead id.
    upload = tmp_path / "accepted.csv"
    upload.write_text(
        "outcome_id,outcome,occurred_at,lead_id,note\n"
        f"up-1,accepted,{utc_now():%Y-%m-%d %H:%M:%S},{lead_2},met on Tuesday\n"
    )
    uploaded = runner.invoke(app, ["outcomes", "load", str(upload), "--source", "crm"])
    assert uploaded.exit_code == 0, uploaded.output

    # 3. The signed callback on the real receiver, sent twice (a retry), and a forged one.
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import main; main()", "webhook", "serve",
         "--port", str(port)],
        env={**os.environ, "LEADFLOW_SALES_CALLBACK_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, receiver)
        lost = {"outcome_id": "crm-77", "task_id": by_callback, "outcome": "lost",
                "reason": "competitor", "rep_id": "rep_03"}  # fmt: skip
        assert post_signed(f"{base}/sales/outcomes", lost) == 200
        assert post_signed(f"{base}/sales/outcomes", [lost]) == 200
        forged = urllib.request.Request(
            f"{base}/sales/outcomes",
            data=json.dumps({**lost, "outcome_id": "forged"}).encode(),
            headers={"X-LeadFlow-Timestamp": str(int(time.time())),
                     "X-LeadFlow-Signature": "sha256=" + "0" * 64},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 403
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)

    second_at = utc_now() + timedelta(minutes=1)
    summary = lead_pipeline(as_of=second_at)
    assert summary.file_errors == []

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        ended = dict(
            (task_id, (status, close_reason))
            for task_id, status, close_reason in connection.execute(
                "select task_id, status, close_reason from ops.sales_tasks where task_id in (?, ?, ?)",
                [by_command, by_upload, by_callback],
            ).fetchall()
        )
        assert ended == {
            by_command: ("closed", "not_ready"),
            by_upload: ("done", "accepted"),
            by_callback: ("closed", "competitor"),
        }
        # Every task of those leads from before the outcome ended, follow-ups included.
        assert connection.execute(
            "select count(*) from ops.sales_tasks where lead_id in (?, ?, ?) "
            "and status in ('queued', 'open') and created_at < ?",
            [lead_1, lead_2, lead_3, second_at],
        ).fetchone() == (0,)
        assert connection.execute(
            "select stage, stage_reason, nurture_track from dim_leads where lead_id = ?", [lead_1]
        ).fetchone() == ("recycled", "not_ready", "recycle_timing")
        assert connection.execute(
            "select stage, latest_outcome from dim_leads where lead_id = ?", [lead_2]
        ).fetchone() == ("sql", "accepted")
        assert connection.execute(
            "select nurture_track from dim_leads where lead_id = ?", [lead_3]
        ).fetchone() == ("competitor_winback",)
        # The retried callback is one outcome; the forged one never landed.
        assert connection.execute(
            "select outcome_id, count(*) from raw.outcomes where source = 'sales' group by all "
            "order by all"
        ).fetchall() == [
            (connection.execute(
                "select outcome_id from raw.outcomes where task_id = ? and source = 'sales' "
                "and outcome = 'rejected'", [by_command]).fetchone()[0], 1),
            ("crm-77", 1),
        ]  # fmt: skip
        states = connection.execute(
            "select task_id, status, closed_at from ops.sales_tasks order by task_id"
        ).fetchall()

    # Running again changes no task.
    lead_pipeline(as_of=second_at + timedelta(minutes=5))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert connection.execute(
            "select task_id, status, closed_at from ops.sales_tasks "
            "where created_at < ? order by task_id",
            [second_at + timedelta(minutes=5)],
        ).fetchall() == [state for state in states]
