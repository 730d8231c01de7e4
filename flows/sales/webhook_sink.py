"""Post sales tasks to a webhook: a signed JSON POST per task event, logged until delivered.

Events: ``task.opened`` when a task is on its rep's list (status ``open``), and ``task.done``,
``task.closed`` or ``task.superseded`` when a task the receiver got ends. A ``queued`` task is
posted once it opens; a task that ended before its ``task.opened`` was delivered is never
posted (its log row is ``skipped``). Each event has an idempotency key, ``<task_id>:<status>``:
the same on every attempt and every run, so the receiver keeps the first and ignores repeats.

``ops.task_deliveries`` is the outbox: each run first adds the events due (set-based, one row
per idempotency key), then posts the pending ones and settles each row from the answer. A row
stays ``pending`` until the receiver answers 2xx, so a run that crashed or found the receiver
down loses nothing: the next run posts what is left, with the same keys. On PostgreSQL, where
runs may overlap, each event is claimed before its post (its row locked, ``skip locked``, until
the answer is recorded): an event another run is posting, or has delivered, is left to it.

Each request carries ``Idempotency-Key`` and ``X-LeadFlow-Signature: t=<unix time>,v1=<hex>``,
the HMAC-SHA256 of ``<t>.<raw body>`` under ``LEADFLOW_TASK_WEBHOOK_SECRET`` (docs/sales.md
shows how a receiver verifies it). Faults are handled here, at the network boundary: a lost
connection, a timeout, 408 and 5xx are retried with exponential backoff and jitter; 429 and 503
wait as ``Retry-After`` says, up to a cap. After the last attempt the receiver is taken to be
down and the rest wait for the next run; another 4xx refuses that one event, which is logged
with the answer and tried again on the next run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import duckdb
import httpx
from pydantic import SecretStr

from flows.sales.sinks import SinkResult
from flows.warehouse import Connection

SINK_NAME = "webhook"
SIGNATURE_HEADER = "X-LeadFlow-Signature"
ENDED_STATUSES = ("done", "closed", "superseded")
# The task as the receiver gets it: what a rep needs to work it, and how it ended.
PAYLOAD_COLUMNS = (
    "task_id",
    "status",
    "lead_id",
    "owner_rep_id",
    "owner_email",
    "assignment_rule",
    "reason",
    "title",
    "why_now",
    "priority",
    "due_at",
    "email",
    "phone",
    "track",
    "step",
    "created_at",
    "closed_at",
    "close_reason",
)
RESPONSE_EXCERPT_CHARS = 200

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookPolicy:
    """How hard one run tries (``LEADFLOW_TASK_WEBHOOK_*`` settings)."""

    max_attempts: int = 5
    max_wait_seconds: float = 60.0  # the longest Retry-After honoured
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class PostOutcome:
    delivered: bool
    attempts: int
    http_status: int | None
    error: str | None
    receiver_down: bool  # transient failures to the end: stop posting for this run


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "t.body">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def event_body(idempotency_key: str, event: str, task: dict[str, Any]) -> bytes:
    """The JSON posted for one event; times are ISO 8601 in UTC."""
    fields = {
        column: f"{value.isoformat()}Z" if isinstance(value, datetime) else value
        for column, value in task.items()
    }
    document = {"event": event, "idempotency_key": idempotency_key, "task": fields}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (it is a number of seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def backoff_seconds(attempt: int, policy: WebhookPolicy, rng: random.Random) -> float:
    """Between half and all of first * 2^attempt (capped): failed posts do not retry in step."""
    ceiling = min(policy.max_backoff_seconds, policy.first_backoff_seconds * 2**attempt)
    return rng.uniform(ceiling / 2, ceiling)


def post_signed(
    client: httpx.Client,
    url: str,
    secret: str,
    idempotency_key: str,
    body: bytes,
    policy: WebhookPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> PostOutcome:
    """POST one event until the receiver takes it or the policy's attempts are used up.

    Error texts name the problem, never the URL (it may carry a token).
    """
    rng = rng or random.Random()
    status: int | None = None
    error = ""
    for attempt in range(1, policy.max_attempts + 1):
        timestamp = int(now())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TransportError as failure:
            status = None
            error = f"no answer ({type(failure).__name__})"
            wait = backoff_seconds(attempt - 1, policy, rng)
        else:
            status = response.status_code
            if 200 <= status < 300:
                return PostOutcome(True, attempt, status, None, receiver_down=False)
            answer = " ".join(response.text.split())[:RESPONSE_EXCERPT_CHARS]
            error = f"HTTP {status}" + (f": {answer}" if answer else "")
            if status in (429, 503):
                asked = retry_after_seconds(response.headers.get("Retry-After"), now())
                if asked is not None and asked > policy.max_wait_seconds:
                    error += (
                        f" (asked to wait {asked:.0f} s, more than "
                        f"LEADFLOW_TASK_WEBHOOK_MAX_WAIT_SECONDS={policy.max_wait_seconds:g})"
                    )
                    return PostOutcome(False, attempt, status, error, receiver_down=True)
                wait = asked if asked else backoff_seconds(attempt - 1, policy, rng)
            elif status == 408 or status >= 500:
                wait = backoff_seconds(attempt - 1, policy, rng)
            else:  # the receiver refused this event: retrying now will not change its mind
                return PostOutcome(False, attempt, status, error, receiver_down=False)
        if attempt < policy.max_attempts:
            logger.warning("Task webhook: %s; retrying in %.1f s", error, wait)
            sleep(wait)
    return PostOutcome(False, policy.max_attempts, status, error, receiver_down=True)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def enqueue_events(connection: Connection, sink: str, as_of: datetime) -> None:
    """Add the events due to the log, once per idempotency key; skip those overtaken.

    ``task.opened`` for every open task; an ended status for a task whose ``task.opened`` was
    delivered. A pending ``task.opened`` whose task is no longer open is ``skipped``.
    """
    ended = ", ".join(f"'{status}'" for status in ENDED_STATUSES)
    connection.execute(
        f"""
        insert into ops.task_deliveries
            (sink, idempotency_key, task_id, event, status, attempts, created_at)
        select
            ?,
            tasks.task_id || ':' || tasks.status,
            tasks.task_id,
            'task.' || case tasks.status when 'open' then 'opened' else tasks.status end,
            'pending',
            0,
            ?
        from ops.sales_tasks as tasks
        where tasks.status = 'open'
            or (tasks.status in ({ended}) and exists (
                select 1 from ops.task_deliveries as opened
                where opened.sink = ? and opened.task_id = tasks.task_id
                    and opened.event = 'task.opened' and opened.status = 'delivered'))
        on conflict do nothing
        """,
        [sink, as_of, sink],
    )
    connection.execute(
        """
        update ops.task_deliveries as deliveries set status = 'skipped'
        from ops.sales_tasks as tasks
        where deliveries.sink = ? and deliveries.status = 'pending'
            and deliveries.event = 'task.opened'
            and deliveries.task_id = tasks.task_id and tasks.status <> 'open'
        """,
        [sink],
    )


def pending_events(connection: Connection, sink: str) -> list[dict[str, Any]]:
    """The events still to post, the most important tasks first."""
    columns = ", ".join(f"tasks.{column}" for column in PAYLOAD_COLUMNS)
    cursor = connection.execute(
        f"""
        select deliveries.idempotency_key, deliveries.event, {columns}
        from ops.task_deliveries as deliveries
        inner join ops.sales_tasks as tasks on deliveries.task_id = tasks.task_id
        where deliveries.sink = ? and deliveries.status = 'pending'
        order by tasks.priority desc nulls last, tasks.due_at, deliveries.created_at,
            deliveries.idempotency_key
        """,
        [sink],
    )
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def record_outcome(
    connection: Connection,
    sink: str,
    idempotency_key: str,
    outcome: PostOutcome,
    attempted_at: datetime,
) -> None:
    connection.execute(
        """
        update ops.task_deliveries set
            status = case when ? then 'delivered' else status end,
            attempts = attempts + ?,
            last_error = ?,
            http_status = ?,
            first_attempt_at = coalesce(first_attempt_at, ?),
            delivered_at = case when ? then ? end
        where sink = ? and idempotency_key = ?
        """,
        [
            outcome.delivered,
            outcome.attempts,
            outcome.error,
            outcome.http_status,
            attempted_at,
            outcome.delivered,
            utc_now(),
            sink,
            idempotency_key,
        ],
    )


@contextmanager
def claimed(connection: Connection, sink: str, idempotency_key: str) -> Iterator[bool]:
    """Whether this run posts the event now, held until its outcome is recorded.

    DuckDB has one writer: always. On PostgreSQL the event's row is locked in a transaction
    that commits with the recorded outcome, and only while it is still pending: a run that
    finds it locked (another is posting it) or settled leaves it.
    """
    if isinstance(connection, duckdb.DuckDBPyConnection):
        yield True
        return
    connection.begin()
    try:
        row = connection.execute(
            "select 1 from ops.task_deliveries where sink = ? and idempotency_key = ? "
            "and status = 'pending' for update skip locked",
            [sink, idempotency_key],
        ).fetchone()
        yield row is not None
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


class WebhookSink:
    """Posts task events to ``url``; ``deliver`` is safe to call any number of times."""

    name = SINK_NAME

    def __init__(
        self,
        url: SecretStr,
        secret: SecretStr,
        policy: WebhookPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self.policy = policy or WebhookPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def deliver(self, connection: Connection, as_of: datetime) -> SinkResult:
        enqueue_events(connection, self.name, as_of)
        events = pending_events(connection, self.name)
        delivered = 0
        left_to_others = 0  # events another run posted meanwhile (PostgreSQL)
        problem = None
        with httpx.Client(timeout=self.policy.timeout_seconds) as client:
            for event in events:
                key = event.pop("idempotency_key")
                with claimed(connection, self.name, key) as ours:
                    if not ours:
                        left_to_others += 1
                        continue
                    body = event_body(key, event.pop("event"), event)
                    attempted_at = utc_now()
                    outcome = post_signed(
                        client,
                        self._url.get_secret_value(),
                        self._secret.get_secret_value(),
                        key,
                        body,
                        self.policy,
                        sleep=self._sleep,
                        rng=self._rng,
                    )
                    # Settled one by one: a crash later in the run re-posts nothing delivered.
                    record_outcome(connection, self.name, key, outcome, attempted_at)
                if outcome.delivered:
                    delivered += 1
                    continue
                problem = outcome.error
                if outcome.receiver_down:
                    break
        pending = len(events) - delivered - left_to_others
        return SinkResult(self.name, delivered, pending, problem)
