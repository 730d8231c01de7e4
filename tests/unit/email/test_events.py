"""Landed SendGrid events: loaded once, mapped to lead events, settling sends, suppressing."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.email.events import (
    LandedEventsLoad,
    LandingWriter,
    complete_lines,
    load_landed_events,
    release_never_sent,
    settle_from_events,
    stale_pending,
)
from flows.warehouse import Connection, connect

AS_OF = datetime(2026, 11, 2, 9, 0)
NOON = datetime(2026, 11, 1, 12, 0)
T0 = int(NOON.replace(tzinfo=UTC).timestamp())  # SendGrid's unix time of NOON (UTC)


def at(offset_seconds: int) -> datetime:
    """The warehouse's naive UTC time of T0 + offset."""
    return NOON + timedelta(seconds=offset_seconds)


def event(kind: str, offset: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "email": "Ana.Silva@example.com",
        "timestamp": T0 + offset,
        "event": kind,
        "sg_event_id": f"{kind}-{offset}",
        "sg_message_id": "msgA.filter0001.1.0",
        **fields,
    }


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing" / "sendgrid"


def land(landing: Path, *events: dict[str, Any] | str, name: str = "events-a.jsonl") -> Path:
    """Append events (or raw text lines) to a landing file, as the receiver does."""
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / name
    with path.open("a") as handle:
        for item in events:
            handle.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    return path


def add_send(
    warehouse: duckdb.DuckDBPyConnection,
    key: str,
    *,
    status: str = "pending",
    created_at: datetime = AS_OF - timedelta(hours=1),
    provider_message_id: str | None = None,
    email: str = "ana.silva@example.com",
    claimed_at: datetime | None = None,
    provider: str = "sendgrid",
) -> None:
    warehouse.execute(
        """
        insert into ops.email_sends (message_key, lead_id, email, track, step, template, status,
            provider, provider_message_id, follow_up_title, follow_up_due_days, why_now,
            created_at, run_id, claimed_at)
        values (?, ?, ?, 'warm_up', 1, 'tracks/warm_up/01-welcome.html', ?, ?, ?,
                'Call', 3, 'why', ?, 'run-1', ?)
        """,
        [key, f"lead-{key}", email, status, provider, provider_message_id, created_at, claimed_at],
    )


def provider_events(warehouse: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return warehouse.execute(
        "select sg_event_id, event, message_key, lead_id from raw.email_provider_events "
        "order by occurred_at, event"
    ).fetchall()


def suppressions(warehouse: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return warehouse.execute(
        "select email, reason, source, suppressed_at, lifted_at from ops.email_suppressions "
        "order by suppressed_at, reason"
    ).fetchall()


def test_the_writer_lands_concurrent_batches_without_interleaving_lines(tmp_path):
    writer = LandingWriter(tmp_path)
    batch = [event("open", offset, padding="x" * 500) for offset in range(20)]

    def post_25_batches() -> None:
        for _ in range(25):
            writer.append(batch)

    threads = [threading.Thread(target=post_25_batches) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()

    (path,) = tmp_path.glob("events-*.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 8 * 25 * 20
    assert all(json.loads(line)["padding"] == "x" * 500 for line in lines)


def test_the_writer_starts_a_file_per_day(tmp_path):
    days = iter([datetime(2026, 11, 1, 23, 59), datetime(2026, 11, 2, 0, 1)])
    writer = LandingWriter(tmp_path, clock=lambda: next(days))

    first, second = writer.append([event("open")]), writer.append([event("click")])
    writer.close()

    assert first.name.startswith("events-20261101-")
    assert second.name.startswith("events-20261102-")


def test_a_restarted_writer_ends_the_line_a_crash_cut_off(tmp_path, warehouse):
    day = datetime(2026, 11, 1, 12, 0)
    first = LandingWriter(tmp_path, clock=lambda: day)
    path = first.append([event("open", 0)])
    first.close()
    with path.open("a") as handle:
        handle.write('{"email": "cut@exam')  # the crash, mid-write, before any answer

    restarted = LandingWriter(tmp_path, clock=lambda: day)  # same day, same pid
    assert restarted.append([event("click", 60)]) == path
    restarted.close()
    load = load_landed_events(warehouse, tmp_path, "run-1")

    assert (load.lines_read, load.events_loaded, load.reasons) == (3, 2, {"not_json": 1})


def test_engagement_becomes_lead_events_and_everything_is_kept(warehouse, landing):
    add_send(warehouse, "key-1")
    land(
        landing,
        event("processed", 0, message_key="key-1"),
        event("open", 60, message_key="key-1"),
        event("click", 120, message_key="key-1", url="https://leadflow.example/pricing"),
        event("deferred", 30, message_key="key-1", response="try later"),
        event("open", 90, message_key="not-ours", email="bob@example.com"),
    )

    load = load_landed_events(warehouse, landing, "run-2")

    assert (load.files, load.lines_read, load.events_loaded, load.duplicates) == (1, 5, 5, 0)
    lead_events = warehouse.execute(
        "select event_id, email, event_type, occurred_at, url, message_key, source "
        "from raw.events order by occurred_at"
    ).fetchall()
    assert lead_events == [
        ("sendgrid:open-60", "Ana.Silva@example.com", "email_open", at(60), None, "key-1",
         "sendgrid"),
        ("sendgrid:open-90", "bob@example.com", "email_open", at(90), None, "not-ours",
         "sendgrid"),
        ("sendgrid:click-120", "Ana.Silva@example.com", "email_click", at(120),
         "https://leadflow.example/pricing", "key-1", "sendgrid"),
    ]  # fmt: skip
    # processed and deferred are recorded; the event of an unknown key is kept.
    assert {row[1] for row in provider_events(warehouse)} == {
        "processed", "open", "click", "deferred"
    }  # fmt: skip
    assert ("open-90", "open", "not-ours", None) in provider_events(warehouse)
    assert ("open-60", "open", "key-1", "lead-key-1") in provider_events(warehouse)
    assert warehouse.execute(
        "select entity, source, rows_read, rows_loaded, rows_quarantined from ops.loads"
    ).fetchall() == [("email_provider_events", "sendgrid", 5, 5, 0)]


def test_duplicates_are_dropped_on_the_event_id_and_on_what_the_event_says(warehouse, landing):
    click = event("click", 60, url="https://leadflow.example/a")
    land(
        landing,
        event("open", 0),
        event("open", 0),  # a retry, same sg_event_id
        {**click, "sg_event_id": "retried-under-a-new-id"},
        click,  # same message, event, time and url: the same click
        event("click", 60, url="https://leadflow.example/b", sg_event_id="other-url"),
    )
    first = load_landed_events(warehouse, landing, "run-1")
    land(landing, event("open", 0), {**event("open", 0), "sg_event_id": "new-id-again"})
    second = load_landed_events(warehouse, landing, "run-2")

    assert (first.lines_read, first.events_loaded, first.duplicates) == (5, 3, 2)
    assert (second.lines_read, second.events_loaded, second.duplicates) == (2, 0, 2)
    assert warehouse.execute("select count(*) from raw.events").fetchall() == [(3,)]
    assert warehouse.execute("select count(*) from raw.email_provider_events").fetchall() == [(3,)]


def test_a_file_loads_once_and_only_its_new_complete_lines_later(warehouse, landing):
    path = land(landing, event("open", 0))
    with path.open("a") as handle:
        handle.write('{"email": "half-written')  # the receiver is mid-write

    first = load_landed_events(warehouse, landing, "run-1")
    again = load_landed_events(warehouse, landing, "run-2")
    with path.open("a") as handle:
        handle.write(f'@example.com", "timestamp": {T0}, "event": "open"}}\n')
    third = load_landed_events(warehouse, landing, "run-3")

    assert (first.files, first.lines_read) == (1, 1)
    assert (again.files, again.lines_read) == (0, 0)
    assert (third.files, third.lines_read, third.events_loaded) == (1, 1, 1)
    assert warehouse.execute(
        "select email from raw.email_provider_events order by email"
    ).fetchall() == [("Ana.Silva@example.com",), ("half-written@example.com",)]


def test_complete_lines_stop_at_the_last_newline(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"one\ntwo\nthr")
    assert complete_lines(path, 0) == ["one", "two"]
    assert complete_lines(path, 1) == ["two"]


def test_a_line_that_is_not_an_event_is_quarantined_with_a_reason(warehouse, landing):
    land(
        landing,
        "{not json",
        "[1, 2]",
        json.dumps({"email": "a@example.com", "timestamp": T0}),
        json.dumps({"event": "open", "timestamp": T0}),
        json.dumps({"event": "open", "email": "a@example.com", "timestamp": "noon"}),
        event("open"),
    )

    load = load_landed_events(warehouse, landing, "run-1")

    assert load.reasons == {
        "not_json": 1, "not_an_event": 1, "missing_event": 1, "missing_email": 1,
        "bad_timestamp": 1,
    }  # fmt: skip
    assert load.events_loaded == 1
    quarantined = warehouse.execute(
        "select source_line, reason_code, reason, record from ops.quarantine order by 1"
    ).fetchall()
    assert [(line, code) for line, code, _, _ in quarantined] == [
        (1, "not_json"), (2, "not_an_event"), (3, "missing_event"), (4, "missing_email"),
        (5, "bad_timestamp"),
    ]  # fmt: skip
    assert json.loads(quarantined[0][3]) == "{not json"  # the line as landed
    assert "timestamp" in quarantined[4][2]


def test_an_event_whose_text_holds_a_nul_character_loads_and_keeps_it_in_its_payload(
    warehouse, landing
):
    land(landing, event("bounce", 0, reason="550\u0000 unknown"))

    assert load_landed_events(warehouse, landing, "run-1").events_loaded == 1
    ((reason, payload),) = warehouse.execute(
        "select reason, payload from raw.email_provider_events"
    ).fetchall()
    # PostgreSQL's text cannot hold NUL: dropped from the field there, kept in the payload.
    assert reason.replace("\x00", "") == "550 unknown"
    assert json.loads(payload)["reason"] == "550\x00 unknown"


def test_delivered_events_settle_pending_sends_at_their_claim_time(warehouse, landing):
    claimed_at = AS_OF - timedelta(hours=2)
    add_send(warehouse, "delivered", created_at=claimed_at)
    add_send(warehouse, "processed", created_at=claimed_at)
    add_send(warehouse, "opened-only", created_at=claimed_at)
    add_send(warehouse, "no-event", created_at=claimed_at)
    add_send(warehouse, "failed", status="failed")
    land(
        landing,
        event("delivered", 0, message_key="delivered"),
        event("processed", 0, message_key="processed", sg_event_id="p"),
        event("open", 0, message_key="opened-only", sg_event_id="o"),
        event("delivered", 0, message_key="failed", sg_event_id="f"),
    )
    load_landed_events(warehouse, landing, "run-2")

    assert settle_from_events(warehouse) == 2
    assert settle_from_events(warehouse) == 0
    assert warehouse.execute(
        "select message_key, status, sent_at from ops.email_sends order by message_key"
    ).fetchall() == [
        ("delivered", "sent", claimed_at),
        ("failed", "failed", None),  # a refused send is retried by dispatch, not settled here
        ("no-event", "pending", None),
        ("opened-only", "pending", None),
        ("processed", "sent", claimed_at),
    ]


def test_sends_pending_too_long_without_an_event_are_reported(warehouse, landing):
    add_send(warehouse, "old", created_at=AS_OF - timedelta(hours=25))
    add_send(warehouse, "old-but-delivered", created_at=AS_OF - timedelta(hours=30))
    add_send(warehouse, "recent", created_at=AS_OF - timedelta(hours=23))
    add_send(warehouse, "old-sent", status="sent", created_at=AS_OF - timedelta(hours=40))
    land(landing, event("delivered", 0, message_key="old-but-delivered"))
    load_landed_events(warehouse, landing, "run-2")

    stale = stale_pending(warehouse, AS_OF)

    assert [(row.message_key, row.created_at) for row in stale] == [
        ("old", AS_OF - timedelta(hours=25))
    ]
    assert [row.message_key for row in stale_pending(warehouse, AS_OF, timedelta(hours=1))] == [
        "old",
        "recent",
    ]


def test_a_bounce_without_custom_args_finds_its_send_by_the_provider_message_id(warehouse, landing):
    add_send(warehouse, "key-ana", status="sent", provider_message_id="msgA")
    add_send(
        warehouse,
        "key-bob",
        status="sent",
        provider_message_id="msgA",  # one provider id per request: the address tells them apart
        email="bob@example.com",
    )
    land(landing, event("bounce", 0, reason="550 5.1.1 mailbox unknown"))

    load_landed_events(warehouse, landing, "run-2")

    assert provider_events(warehouse) == [("bounce-0", "bounce", "key-ana", "lead-key-ana")]
    assert warehouse.execute("select event_type, message_key from raw.events").fetchall() == [
        ("bounce", "key-ana")
    ]
    assert suppressions(warehouse) == [("ana.silva@example.com", "bounce", "sendgrid", at(0), None)]


def test_opt_outs_suppress_once_and_map_to_the_event_types_dbt_suppresses(warehouse, landing):
    land(
        landing,
        event("spamreport", 0),
        event("spamreport", 10, sg_event_id="second-report"),
        event("dropped", 20, reason="Bounced Address"),
        event("unsubscribe", 30),
    )

    load_landed_events(warehouse, landing, "run-2")

    assert [row[1:4] for row in suppressions(warehouse)] == [
        ("spamreport", "sendgrid", at(0)),
        ("dropped", "sendgrid", at(20)),
        ("unsubscribe", "sendgrid", at(30)),
    ]
    assert warehouse.execute(
        "select event_type, count(*) from raw.events group by 1 order by 1"
    ).fetchall() == [("bounce", 1), ("spam_report", 2), ("unsubscribe", 1)]


def test_a_group_resubscribe_lifts_that_group_only(warehouse, landing):
    land(
        landing,
        event("group_unsubscribe", 0, asm_group_id=7),
        event("group_unsubscribe", 5, asm_group_id=8),
    )
    load_landed_events(warehouse, landing, "run-1")
    land(landing, event("group_resubscribe", 100, asm_group_id=7))
    load_landed_events(warehouse, landing, "run-2")

    assert suppressions(warehouse) == [
        ("ana.silva@example.com", "group_unsubscribe", "sendgrid:asm_group=7", at(0), at(100)),
        ("ana.silva@example.com", "group_unsubscribe", "sendgrid:asm_group=8", at(5), None),
    ]
    # dbt suppresses the lead until a later group resubscribe (int_leads_engagement_accrued).
    assert warehouse.execute(
        "select event_type from raw.events order by occurred_at"
    ).fetchall() == [("group_unsubscribe",), ("group_unsubscribe",), ("group_resubscribe",)]


def test_the_latest_group_choice_holds_whatever_order_the_events_arrive_in(warehouse, landing):
    # In one load: unsubscribed, resubscribed, unsubscribed again -> suppressed.
    land(
        landing,
        event("group_unsubscribe", 0, asm_group_id=7),
        event("group_resubscribe", 100, asm_group_id=7),
        event("group_unsubscribe", 200, asm_group_id=7),
    )
    load_landed_events(warehouse, landing, "run-1")
    assert [(row[3], row[4]) for row in suppressions(warehouse)] == [(at(200), None)]

    # Resubscribed later; then a retry of an older unsubscribe arrives: it stays lifted.
    land(landing, event("group_resubscribe", 300, asm_group_id=7))
    load_landed_events(warehouse, landing, "run-2")
    land(landing, event("group_unsubscribe", 250, asm_group_id=7))
    load_landed_events(warehouse, landing, "run-3")

    assert [(row[3], row[4]) for row in suppressions(warehouse)] == [(at(200), at(300))]


def test_a_pending_send_is_released_only_on_evidence_that_it_never_reached_the_provider(
    warehouse, landing
):
    old = AS_OF - timedelta(hours=30)
    # The wall clock of each claim orders them; the run clock (created_at) is the same.
    add_send(warehouse, "stranded", created_at=old, claimed_at=at(10))
    add_send(warehouse, "claimed-before", created_at=old, claimed_at=at(5))
    add_send(warehouse, "deferred-only", created_at=old, claimed_at=at(11))
    add_send(warehouse, "too-recent", created_at=AS_OF - timedelta(hours=2), claimed_at=at(12))
    add_send(warehouse, "other-provider", created_at=old, claimed_at=at(13), provider="outbox")
    add_send(warehouse, "later", status="sent", created_at=old, claimed_at=at(20))
    land(
        landing,
        event("processed", 21, message_key="later", sg_event_id="p-later"),
        event("deferred", 12, message_key="deferred-only", sg_event_id="d"),
    )
    load_landed_events(warehouse, landing, "run-2")

    assert release_never_sent(warehouse, AS_OF, timedelta(hours=24)) == 2
    assert release_never_sent(warehouse, AS_OF, timedelta(hours=24)) == 0
    rows = warehouse.execute(
        "select message_key, status, attempts, error from ops.email_sends order by message_key"
    ).fetchall()
    assert {key: (status, attempts) for key, status, attempts, _ in rows} == {
        "claimed-before": ("failed", 0),  # no event, and a send claimed after it was processed
        "deferred-only": ("pending", 1),  # the provider has it: it may still go out
        "later": ("sent", 1),
        "other-provider": ("pending", 1),  # no later send of the outbox says anything
        "stranded": ("failed", 0),  # released: the next claim sends it, as its first attempt
        "too-recent": ("pending", 1),  # its events may still be on their way
    }
    assert "never reached sendgrid" in dict((k, e) for k, _, _, e in rows)["stranded"]


def test_without_a_later_processed_send_nothing_is_released(warehouse, landing):
    add_send(warehouse, "last", created_at=AS_OF - timedelta(hours=30), claimed_at=at(10))
    add_send(warehouse, "earlier", status="sent", created_at=AS_OF - timedelta(hours=30),
             claimed_at=at(1))  # fmt: skip
    land(landing, event("processed", 2, message_key="earlier"))
    load_landed_events(warehouse, landing, "run-2")

    assert release_never_sent(warehouse, AS_OF, timedelta(hours=24)) == 0
    assert [row.message_key for row in stale_pending(warehouse, AS_OF)] == ["last"]


# -- two workers on one PostgreSQL warehouse -----------------------------------------------------
def test_two_workers_loading_the_same_landed_events_at_once_keep_each_event_once(
    postgres_database, landing
):
    # Four receiver processes' files; SendGrid's retries reached other processes too, so each
    # event is in two files, and every send has its processed event.
    events = [
        event("processed", second, message_key=f"key-{second}", sg_event_id=f"p-{second}")
        for second in range(400)
    ] + [event("unsubscribe", 1000, sg_event_id="u")]
    for number in range(4):
        land(landing, *events[number::4], *events[(number + 1) % 4 :: 4], name=f"e-{number}.jsonl")
    workers = [connect(postgres_database) for _ in range(2)]
    for second in range(400):
        add_send(workers[0], f"key-{second}")
    start = threading.Barrier(2)

    def load_and_settle(connection: Connection) -> tuple[LandedEventsLoad, int]:
        start.wait()
        load = load_landed_events(connection, landing, "run")
        return load, settle_from_events(connection)

    with ThreadPoolExecutor(2) as pool:
        (load_a, settled_a), (load_b, settled_b) = pool.map(load_and_settle, workers)

    warehouse = workers[0]
    assert load_a.lines_read + load_b.lines_read == 2 * len(events)  # each line read once
    assert load_a.events_loaded + load_b.events_loaded == len(events)
    assert settled_a + settled_b == 400
    assert warehouse.execute(
        "select count(*), count(distinct sg_event_id) from raw.email_provider_events"
    ).fetchall() == [(len(events), len(events))]
    assert warehouse.execute("select count(*) from raw.events").fetchall() == [(1,)]
    assert warehouse.execute("select count(*) from ops.email_suppressions").fetchall() == [(1,)]
    assert warehouse.execute(
        "select status, count(*) from ops.email_sends group by 1"
    ).fetchall() == [("sent", 400)]
    for connection in workers:
        connection.close()
