"""The task sinks as plain functions: the rep queue order, the CSV files, which webhook events
are due, the signature, Retry-After, the digest day and key, and the settings they need."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import random
from datetime import datetime, timedelta

import httpx
import pytest

from flows.email.tracks import TemplateError
from flows.sales.delivery import task_sinks
from flows.sales.digest import (
    digest_context,
    digest_day,
    digest_key,
    load_digest_template,
    render_digest,
)
from flows.sales.sinks import RepCsvSink, WarehouseSink, deliver_tasks, rep_file_name
from flows.sales.webhook_sink import (
    WebhookPolicy,
    WebhookSink,
    enqueue_events,
    event_body,
    post_signed,
    retry_after_seconds,
    sign,
)
from flows.settings import PROJECT_ROOT, ConfigError, Settings, load_settings

AS_OF = datetime(2026, 12, 7, 9)


def add_task(warehouse, task_id, *, rep="R1", status="open", due=AS_OF, priority=None):
    warehouse.execute(
        """
        insert into ops.sales_tasks (task_id, lead_id, owner_rep_id, owner_email, reason, title,
            why_now, due_at, status, created_at, run_id, priority)
        values (?, 'L', ?, 'r@x.com', 'mql_handoff', ?, 'why', ?, ?, ?, 'run-1', ?)
        """,
        [task_id, rep, f"title {task_id}", due, status, AS_OF, priority],
    )


def test_a_reps_file_lists_overdue_first_then_by_priority_then_soonest(warehouse, tmp_path):
    add_task(warehouse, "late-low", due=AS_OF - timedelta(days=1), priority=1)
    add_task(warehouse, "soon-high", due=AS_OF + timedelta(hours=1), priority=90)
    add_task(warehouse, "soon-none", due=AS_OF + timedelta(minutes=5))
    add_task(warehouse, "later-high", due=AS_OF + timedelta(days=1), priority=90)
    add_task(warehouse, "queued", status="queued", priority=99)
    result = RepCsvSink(tmp_path).deliver(warehouse, AS_OF)
    assert (result.sink, result.delivered) == ("rep_csv", 4)
    with (tmp_path / "R1.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["task_id"] for row in rows] == ["late-low", "soon-high", "later-high", "soon-none"]


def test_a_rep_whose_tasks_all_ended_keeps_a_file_with_only_the_header(warehouse, tmp_path):
    add_task(warehouse, "t1")
    RepCsvSink(tmp_path).deliver(warehouse, AS_OF)
    warehouse.execute("update ops.sales_tasks set status = 'done'")
    assert RepCsvSink(tmp_path).deliver(warehouse, AS_OF).delivered == 0
    lines = (tmp_path / rep_file_name("R1")).read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("task_id,")


def test_the_warehouse_sink_counts_every_pending_task(warehouse, tmp_path):
    for task_id, status in (("a", "open"), ("b", "queued"), ("c", "done"), ("d", "superseded")):
        add_task(warehouse, task_id, status=status)
    results = deliver_tasks(warehouse, [WarehouseSink(), RepCsvSink(tmp_path)], AS_OF)
    assert [(r.sink, r.delivered) for r in results] == [("warehouse", 2), ("rep_csv", 1)]


def due_events(warehouse) -> dict[str, str]:
    enqueue_events(warehouse, "webhook", AS_OF)
    return dict(
        warehouse.execute("select idempotency_key, status from ops.task_deliveries").fetchall()
    )


def test_open_tasks_are_posted_queued_ones_once_they_open(warehouse):
    add_task(warehouse, "a")
    add_task(warehouse, "b", status="queued")
    assert due_events(warehouse) == {"a:open": "pending"}
    warehouse.execute("update ops.sales_tasks set status = 'open' where task_id = 'b'")
    assert due_events(warehouse) == {"a:open": "pending", "b:open": "pending"}


def test_an_ended_task_is_posted_only_if_the_receiver_had_it_open(warehouse):
    add_task(warehouse, "a")
    add_task(warehouse, "b")
    enqueue_events(warehouse, "webhook", AS_OF)
    warehouse.execute("update ops.task_deliveries set status = 'delivered' where task_id = 'a'")
    warehouse.execute("update ops.sales_tasks set status = 'superseded'")
    # a reached the receiver: its end is posted; b never did: it is skipped, not posted late.
    assert due_events(warehouse) == {
        "a:open": "delivered",
        "a:superseded": "pending",
        "b:open": "skipped",
    }


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"event":"task.opened"}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("secret", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_the_body_carries_the_event_the_key_and_utc_times():
    body = json.loads(event_body("k:open", "task.opened", {"due_at": AS_OF, "title": "é"}))
    assert body == {
        "event": "task.opened",
        "idempotency_key": "k:open",
        "task": {"due_at": "2026-12-07T09:00:00Z", "title": "é"},
    }


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 90.0),  # 100 s after epoch, asked at 10 s
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value, seconds):
    assert retry_after_seconds(value, now=10.0) == seconds


def answering(*responses: httpx.Response | Exception) -> httpx.Client:
    """A client whose requests get these answers in turn (httpx's mock transport)."""
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_post_waits_as_retry_after_says_and_backs_off_on_errors():
    waits: list[float] = []
    client = answering(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.ConnectError("refused"),
        httpx.Response(502),
        httpx.Response(204),
    )
    outcome = post_signed(
        client, "http://r/hook", "s", "k", b"{}", WebhookPolicy(), sleep=waits.append,
        rng=random.Random(1),
    )  # fmt: skip
    assert (outcome.delivered, outcome.attempts, outcome.http_status) == (True, 4, 204)
    assert waits[0] == 3.0
    assert 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0  # backoff doubles, with jitter


def test_a_refusal_is_not_retried_and_a_receiver_down_stops_the_run():
    refused = post_signed(
        answering(httpx.Response(400, text="bad  payload\n")), "http://r", "s", "k", b"{}",
        WebhookPolicy(), sleep=lambda _: None,
    )  # fmt: skip
    assert (refused.attempts, refused.error, refused.receiver_down) == (
        1,
        "HTTP 400: bad payload",
        False,
    )
    down = post_signed(
        answering(*[httpx.Response(500)] * 3), "http://r", "s", "k", b"{}",
        WebhookPolicy(max_attempts=3), sleep=lambda _: None,
    )  # fmt: skip
    assert (down.delivered, down.attempts, down.receiver_down) == (False, 3, True)


def test_the_digest_day_is_the_schedules_day_and_its_key_is_per_rep_and_day():
    late_sunday_utc = datetime(2026, 12, 6, 23, 30)
    assert digest_day(late_sunday_utc, "UTC").isoformat() == "2026-12-06"
    assert digest_day(late_sunday_utc, "Europe/Berlin").isoformat() == "2026-12-07"
    day = digest_day(AS_OF, "UTC")
    assert digest_key("R1", day) == digest_key("R1", day) != digest_key("R2", day)
    assert digest_key("R1", day).startswith("digest-")


def test_the_webhook_sink_is_on_only_with_a_url(tmp_path):
    assert [sink.name for sink in task_sinks(Settings(data_dir=tmp_path))] == [
        "warehouse",
        "rep_csv",
    ]
    configured = Settings(
        data_dir=tmp_path,
        task_webhook_url="https://crm.example/hook",
        task_webhook_secret="x" * 32,
        task_webhook_max_attempts=2,
    )
    assert "crm.example" not in repr(configured) and "x" * 32 not in repr(configured)
    sinks = task_sinks(configured)
    assert [sink.name for sink in sinks] == ["warehouse", "rep_csv", "webhook"]
    assert isinstance(sinks[2], WebhookSink) and sinks[2].policy.max_attempts == 2


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"LEADFLOW_TASK_WEBHOOK_URL": "https://crm.example/hook?token=abc"},
            "LEADFLOW_TASK_WEBHOOK_SECRET: Value error, a task webhook signs every request",
        ),
        (
            {
                "LEADFLOW_TASK_WEBHOOK_URL": "https://crm.example/hook?token=abc",
                "LEADFLOW_TASK_WEBHOOK_SECRET": "short",
            },
            "at least 32 characters",
        ),
        (
            {"LEADFLOW_TASK_WEBHOOK_URL": "crm.example/hook?token=abc"},
            "LEADFLOW_TASK_WEBHOOK_URL: Value error, not an http(s) address",
        ),
    ],
)
def test_a_webhook_without_a_proper_secret_or_address_is_a_config_error_naming_it(
    monkeypatch, tmp_path, environment, message
):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_settings()
    assert "abc" not in str(error.value)  # the URL's token is never echoed


def digest_template_with(tmp_path, body: str):
    (tmp_path / "digest").mkdir()
    (tmp_path / "digest" / "daily.html").write_text(f"---\nsubject: 'Tasks'\n---\n{body}\n")
    return load_digest_template(tmp_path)


SAMPLE_CONTEXT = {"rep": {"name": "Rita"}, "tasks": [], "digest": {}, "sender": {"name": "LF"}}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Hello {{ rep.nmae }}", "unknown variable"),
        ("{{ rep.__class__.__mro__ }}", "not allowed in a template"),
    ],
)
def test_a_digest_template_mistake_names_the_file_and_the_context_doc(tmp_path, body, problem):
    template = digest_template_with(tmp_path, body)
    with pytest.raises(TemplateError, match=problem) as error:
        render_digest(template, SAMPLE_CONTEXT)
    assert "digest/daily.html" in str(error.value)
    assert "templates/digest/CONTEXT.md" in str(error.value)


def test_a_missing_digest_template_says_so(tmp_path):
    with pytest.raises(TemplateError, match=r"digest/daily\.html: missing"):
        load_digest_template(tmp_path)


def test_the_shipped_digest_renders_escaped_with_the_documented_context():
    template = load_digest_template(PROJECT_ROOT / "templates")
    context = digest_context(
        {"rep_id": "R1", "rep_name": "Rita <Ames>", "rep_email": "r@x.com"},
        [
            {"title": "Call <Bo>", "why_now": "Asked & waited", "reason": "mql_handoff",
             "priority": 1, "due_at": AS_OF, "is_overdue": True, "email": None,
             "phone": "+1 555", "crm_url": None},
        ],
        day=AS_OF.date(),
        queued=0,
        sender_name="LeadFlow",
    )  # fmt: skip
    rendered = render_digest(template, context)
    assert rendered.subject == "1 open task for Monday 7 December 2026, 1 overdue"
    assert "Call &lt;Bo&gt;" in rendered.html and "Rita &lt;Ames&gt;" in rendered.html
    assert "Asked & waited" in rendered.text and "Call +1 555" in rendered.text
    assert "CRM" not in rendered.text and "wait for room" not in rendered.text
