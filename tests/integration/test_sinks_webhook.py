"""The task webhook against a real receiver on 127.0.0.1 that fails, rate-limits and drops
connections: every task arrives exactly once by idempotency key, signed, and nothing is lost."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from functools import partial

from pydantic import SecretStr

from flows.sales.webhook_sink import WebhookPolicy, WebhookSink
from flows.warehouse import connect
from tests.concurrency import at_once
from tests.task_receiver import Fault, task_receiver

SECRET = "s3cr3t-" + "x" * 32
AS_OF = datetime(2026, 12, 7, 7)
FAST = WebhookPolicy(max_attempts=6, first_backoff_seconds=0.01, max_backoff_seconds=0.05)


def add_tasks(warehouse, count: int, status: str = "open") -> list[str]:
    ids = [f"task-{index:03d}" for index in range(count)]
    for index, task_id in enumerate(ids):
        warehouse.execute(
            """
            insert into ops.sales_tasks (task_id, lead_id, email, owner_rep_id, owner_email,
                reason, title, why_now, due_at, status, created_at, run_id, priority)
            values (?, ?, 'ann@acme.com', 'rep_01', 'rep01@x.com', 'mql_handoff',
                'Follow up with Ann «Acme»', 'Asked for a demo', ?, ?, ?, 'run-1', ?)
            """,
            [task_id, f"L{index}", AS_OF + timedelta(hours=index), status, AS_OF, index % 3],
        )
    return ids


def sink(url: str, policy: WebhookPolicy = FAST) -> WebhookSink:
    return WebhookSink(SecretStr(url), SecretStr(SECRET), policy)


def log(warehouse) -> dict[str, tuple[str, int]]:
    return dict(
        (key, (status, attempts))
        for key, status, attempts in warehouse.execute(
            "select idempotency_key, status, attempts from ops.task_deliveries"
        ).fetchall()
    )


def test_every_task_arrives_once_by_key_signed_through_errors_429_and_dropped_connections(
    warehouse,
):
    ids = add_tasks(warehouse, 12)
    faults = [
        Fault(500),
        Fault(429, {"Retry-After": "1"}),
        Fault(None),
        Fault(503),
        Fault(None),
    ]
    with task_receiver(SECRET, faults) as receiver:
        result = sink(receiver.url).deliver(warehouse, AS_OF)
        assert (result.delivered, result.pending) == (12, 0)
        assert set(receiver.accepted) == {f"{task_id}:open" for task_id in ids}
        assert receiver.bad_signatures == 0
        assert receiver.requests == 12 + len(faults)
        assert sum(attempts for _, attempts in log(warehouse).values()) == 12 + len(faults)
        body = receiver.accepted["task-000:open"]
        assert body["event"] == "task.opened"
        assert body["task"]["title"] == "Follow up with Ann «Acme»"
        assert body["task"]["due_at"] == "2026-12-07T07:00:00Z"

        # A crash after the receiver took some posts but before the log said so: the next
        # run posts them again with the same keys, and the receiver keeps one of each.
        warehouse.execute(
            "update ops.task_deliveries set status = 'pending' where task_id in ('task-001', "
            "'task-002')"
        )
        assert sink(receiver.url).deliver(warehouse, AS_OF).delivered == 2
        assert sorted(receiver.repeats) == ["task-001:open", "task-002:open"]
        assert len(receiver.accepted) == 12

        # Nothing new: nothing posted.
        before = receiver.requests
        assert sink(receiver.url).deliver(warehouse, AS_OF).delivered == 0
        assert receiver.requests == before


def test_a_task_that_ends_is_posted_once_more_with_its_own_key(warehouse):
    add_tasks(warehouse, 2)
    with task_receiver(SECRET) as receiver:
        sink(receiver.url).deliver(warehouse, AS_OF)
        warehouse.execute(
            "update ops.sales_tasks set status = 'closed', close_reason = 'not_ready', "
            "closed_at = ? where task_id = 'task-000'",
            [AS_OF],
        )
        sink(receiver.url).deliver(warehouse, AS_OF)
        sink(receiver.url).deliver(warehouse, AS_OF)
        assert sorted(receiver.accepted) == ["task-000:closed", "task-000:open", "task-001:open"]
        closed = receiver.accepted["task-000:closed"]
        assert (closed["event"], closed["task"]["close_reason"]) == ("task.closed", "not_ready")
        assert receiver.repeats == []


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_receiver_loses_nothing_and_the_next_run_delivers(warehouse):
    ids = add_tasks(warehouse, 5)
    down = sink(f"http://127.0.0.1:{unused_port()}/hook", WebhookPolicy(max_attempts=2,
                first_backoff_seconds=0.01))  # fmt: skip
    result = down.deliver(warehouse, AS_OF)
    # The receiver is taken to be down after one task's attempts: the rest are not tried.
    assert (result.delivered, result.pending) == (0, 5)
    assert "no answer (ConnectError)" in (result.problem or "")
    assert sorted(status for status, _ in log(warehouse).values()) == ["pending"] * 5
    with task_receiver(SECRET) as receiver:
        assert sink(receiver.url).deliver(warehouse, AS_OF).delivered == 5
        assert set(receiver.accepted) == {f"{task_id}:open" for task_id in ids}


def test_a_refused_event_is_logged_and_tried_again_while_the_rest_go(warehouse):
    add_tasks(warehouse, 3)
    with task_receiver(SECRET, [Fault(422)]) as receiver:
        result = sink(receiver.url).deliver(warehouse, AS_OF)
        assert (result.delivered, result.pending) == (2, 1)
        assert result.problem == "HTTP 422"
        [(key, http_status)] = warehouse.execute(
            "select idempotency_key, http_status from ops.task_deliveries where status = 'pending'"
        ).fetchall()
        assert http_status == 422
        assert sink(receiver.url).deliver(warehouse, AS_OF).delivered == 1
        assert key in receiver.accepted


def test_a_retry_after_longer_than_the_cap_stops_the_run_and_the_url_is_never_told(warehouse):
    add_tasks(warehouse, 3)
    policy = WebhookPolicy(max_attempts=3, max_wait_seconds=5)
    with task_receiver(SECRET, [Fault(429, {"Retry-After": "3600"})]) as receiver:
        result = sink(receiver.url, policy).deliver(warehouse, AS_OF)
        assert (result.delivered, result.pending) == (0, 3)
        assert receiver.requests == 1
        assert "3600 s" in (result.problem or "")
        assert "t0k3n" not in (result.problem or "")


def test_two_runs_posting_at_once_post_each_event_once(postgres_database):
    """On PostgreSQL runs may overlap: each event is claimed by one of them."""
    first, second = connect(postgres_database), connect(postgres_database)
    ids = add_tasks(first, 40)
    with task_receiver(SECRET) as receiver:
        results = at_once(
            partial(sink(receiver.url).deliver, first, AS_OF),
            partial(sink(receiver.url).deliver, second, AS_OF),
        )
        assert receiver.repeats == []
        assert set(receiver.accepted) == {f"{task_id}:open" for task_id in ids}
    assert sum(result.delivered for result in results) == 40
    assert [result.pending for result in results] == [0, 0]
    assert sorted(status for status, _ in log(first).values()) == ["delivered"] * 40
    first.close()
    second.close()
