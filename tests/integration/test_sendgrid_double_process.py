"""The SendGrid double as a process of its own, recording what it accepted to a file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.email.sendgrid import SendGridSender
from flows.settings import PROJECT_ROOT
from tests.integration.test_sendgrid_send import KEY, make_batch
from tests.sendgrid_double import accepted_messages, read_record


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "accepted.jsonl"


@pytest.fixture
def double_process(record: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.sendgrid_double", "--port", "0"),
            *("--record", str(record), "--fault", "500", "--times", "1"),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    yield process, line.split()[-1]
    process.kill()
    process.wait(timeout=10)


def test_what_reached_the_double_survives_its_kill(
    double_process: tuple[subprocess.Popen[str], str], record: Path
) -> None:
    process, url = double_process
    sender = SendGridSender(SecretStr(KEY), host=url, sleep=lambda _: None)
    sender.check()
    first = sender.send(make_batch("welcome", 1, 2))  # after one scripted 500
    second = sender.send(make_batch("recycled", 3, 1))
    process.kill()
    process.wait(timeout=10)
    accepted = read_record(record)
    assert [a.message_id for a in accepted] == [
        first[0].provider_message_id,
        second[0].provider_message_id,
    ]
    assert accepted_messages(a.body for a in accepted) == [
        ("welcome-1", "lead1@example.com"),
        ("welcome-2", "lead2@example.com"),
        ("recycled-3", "lead3@example.com"),
    ]
