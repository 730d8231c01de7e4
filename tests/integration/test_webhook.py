"""The signed Event Webhook end to end: `leadflow webhook serve` in a real uvicorn on 127.0.0.1,
signed batches posted to it, the next extract (a real Prefect flow) loading what landed, and an
unsubscribe stamped after the run's clock stopping the next email of a real pipeline run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from bench.webhook import EventSigner, free_port, start_receiver
from flows.demo.generate import generate_dataset
from flows.extract import extract
from flows.pipeline import lead_pipeline

pytestmark = pytest.mark.slow

RUN_AT = datetime(2026, 11, 1, 8, 30)
NEXT_RUN_AT = RUN_AT + timedelta(days=30)


@pytest.fixture
def receiver(data_dir: Path) -> Iterator[tuple[str, EventSigner]]:
    """`leadflow webhook serve` on a free port of 127.0.0.1, with a key pair of the test's."""
    signer = EventSigner()
    port = free_port()
    server = start_receiver(data_dir, signer.public_key, port)
    try:
        yield f"http://127.0.0.1:{port}/sendgrid/events", signer
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def unix(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def post(url: str, signer: EventSigner, events: list[dict[str, Any]]) -> httpx.Response:
    body = json.dumps(events).encode()
    return httpx.post(url, content=body, headers=signer.headers(body))


def test_a_batch_posted_twice_lands_in_the_warehouse_once(receiver, data_dir):
    url, signer = receiver
    batch = [
        {
            "email": "ana.silva@example.com",
            "timestamp": unix(RUN_AT) + offset,
            "event": kind,
            "sg_event_id": f"evt-{offset}",
            "sg_message_id": "msg-1.filter0001",
            "message_key": "key-1",
        }
        for offset, kind in enumerate(("processed", "delivered", "open", "click", "unsubscribe"))
    ]
    forged = json.dumps(batch).replace("ana.silva", "eve.forger").encode()

    assert post(url, signer, batch).status_code == 200
    assert post(url, signer, batch).status_code == 200  # SendGrid's retry
    refused = httpx.post(url, content=forged, headers=signer.headers(json.dumps(batch).encode()))
    assert refused.status_code == 403
    landed = list((data_dir / "landing" / "sendgrid").glob("*.jsonl"))
    assert sum(len(path.read_text().splitlines()) for path in landed) == 2 * len(batch)

    first = extract("run-1", RUN_AT + timedelta(hours=1))
    second = extract("run-2", RUN_AT + timedelta(hours=2))

    assert first.rows_loaded == {"email_provider_events": len(batch)}
    assert first.rows_quarantined == 0
    assert second.rows_loaded == {}
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as warehouse:
        assert warehouse.execute(
            "select count(*), count(distinct sg_event_id) from raw.email_provider_events"
        ).fetchall() == [(len(batch), len(batch))]
        assert warehouse.execute(
            "select event_type from raw.events order by occurred_at"
        ).fetchall() == [("email_open",), ("email_click",), ("unsubscribe",)]
        assert warehouse.execute("select email, reason from ops.email_suppressions").fetchall() == [
            ("ana.silva@example.com", "unsubscribe")
        ]
        assert "eve.forger" not in json.dumps(
            warehouse.execute("select payload from raw.email_provider_events").fetchall()
        )


def test_an_unsubscribe_stamped_after_the_clock_stops_the_next_email(
    receiver, data_dir, monkeypatch
):
    url, signer = receiver
    generate_dataset(data_dir / "inbox", leads=400, seed=11, as_of=RUN_AT)
    first = lead_pipeline(as_of=RUN_AT)
    assert first.emails_sent > 0
    warehouse_path = data_dir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse_path), read_only=True) as warehouse:
        # People emailed now whose next step falls due before the next run.
        due_again = warehouse.execute(
            """
            select queue.lead_id, queue.email
            from main.fct_nurture_queue as queue
            inner join ops.email_sends as sends on queue.lead_id = sends.lead_id
            where queue.due_at <= ? and not queue.is_suppressed
            order by queue.lead_id
            """,
            [NEXT_RUN_AT],
        ).fetchall()
    assert len(due_again) >= 4, "the data set must have people due for a second email"
    opted_out, control = due_again[::2], due_again[1::2]

    # Their unsubscribes come stamped 3 h after the next run's clock (SendGrid's clock).
    response = post(
        url,
        signer,
        [
            {
                "email": email,
                "timestamp": unix(NEXT_RUN_AT + timedelta(hours=3)),
                "event": "unsubscribe",
                "sg_event_id": f"unsubscribe-{lead_id}",
                "sg_message_id": f"msg-{lead_id}.filter0001",
            }
            for lead_id, email in opted_out
        ],
    )
    assert response.status_code == 200

    second = lead_pipeline(as_of=NEXT_RUN_AT)

    with duckdb.connect(str(warehouse_path), read_only=True) as warehouse:
        emailed_now = {
            row[0]
            for row in warehouse.execute(
                "select lead_id from ops.email_sends where created_at = ?", [NEXT_RUN_AT]
            ).fetchall()
        }
        suppressed = dict(
            warehouse.execute(
                "select lead_id, suppression_reason from main.dim_leads where is_suppressed"
            ).fetchall()
        )
    assert second.emails_sent == len(emailed_now) > 0
    assert not emailed_now & {lead_id for lead_id, _ in opted_out}
    assert emailed_now & {lead_id for lead_id, _ in control}
    assert all(suppressed.get(lead_id) == "unsubscribed" for lead_id, _ in opted_out)
