"""The send ledger and the batches: every due step is sent once, whatever crashes in between."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.email.dispatch import (
    INTERRUPTED,
    DispatchReport,
    Sender,
    SendLimits,
    dispatch_due_steps,
    message_key,
    settle_earlier_sends,
    split_into_batches,
)
from flows.email.message import EmailProviderError, OutgoingBatch, Recipient, SendResult
from flows.email.outbox import OutboxSender
from flows.email.render import TemplateRenderer
from flows.email.sendgrid import SendGridSender
from flows.email.templates import Track, load_tracks
from flows.settings import PROJECT_ROOT
from flows.warehouse import Connection, connect
from tests.sendgrid_double import SendGridDouble

TEMPLATES = PROJECT_ROOT / "templates"
AS_OF = datetime(2026, 11, 22, 9)
SENDER = Sender(
    from_email="LeadFlow <hello@leadflow.example>",
    name="LeadFlow",
    address="1 Example Street",
    unsubscribe_url="https://leadflow.example/u/{message_key}",
)


def add_queue(
    warehouse,
    leads: int,
    *,
    track: str = "warm_up",
    step: int = 1,
    reps: int = 1,
    more: str | None = None,
    due_at: datetime = datetime(2026, 11, 22, 8),
):
    """A due queue of ``leads`` leads, owned round-robin by ``reps`` reps, and their dim_leads;
    with ``more`` (a lead id prefix), that many leads more in the queue as it stands."""
    leads_sql = """
        select
            $prefix || i as lead_id, $mailbox || i || '@example.com' as email,
            'Ann' || i as first_name, 'Lee' as last_name, 'Acme' as company, 'VP' as title,
            'R' || (i % $reps) as owner_rep_id, 'Rep ' || (i % $reps) as owner_name,
            'rep' || (i % $reps) || '@leadflow.example' as owner_email,
            'engaged' as stage, 'not_ready_low_engagement' as stage_reason,
            $track as nurture_track, $step as next_step, 'unused.html' as template,
            $due_at::timestamp as due_at, true as is_due,
            'Call' as follow_up_title, 2 as follow_up_due_days
        from range($leads) as t(i)
        """
    warehouse.execute(
        f"insert into main.fct_nurture_queue {leads_sql}"
        if more
        else f"create or replace table main.fct_nurture_queue as {leads_sql}",
        {
            "prefix": more or "L",
            "mailbox": f"{more or ''}lead".lower(),
            "track": track,
            "step": step,
            "leads": leads,
            "reps": reps,
            "due_at": due_at,
        },
    )
    warehouse.execute(
        """
        create or replace table main.dim_leads as
        select
            lead_id, email, first_name, last_name, company, title, owner_rep_id, owner_name,
            owner_email, stage, stage_reason, nurture_track, false as is_suppressed
        from main.fct_nurture_queue
        """
    )


def dispatch(
    warehouse, sender, run_id: str = "run-1", as_of: datetime = AS_OF, tracks=None, **limits
):
    return dispatch_due_steps(
        warehouse,
        tracks=tracks or load_tracks(TEMPLATES),
        renderer=TemplateRenderer(TEMPLATES),
        email_sender=sender,
        sender=SENDER,
        run_id=run_id,
        as_of=as_of,
        limits=SendLimits(**limits),
    )


def ledger(warehouse) -> dict[str, int]:
    return dict(
        warehouse.execute("select status, count(*) from ops.email_sends group by 1").fetchall()
    )


class RecordingOutbox(OutboxSender):
    """The real outbox, keeping the batches it was given."""

    def __init__(self, outbox_dir: Path) -> None:
        super().__init__(outbox_dir)
        self.batches: list[OutgoingBatch] = []

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        self.batches.append(batch)
        return super().send(batch)


def test_due_steps_are_sent_once_and_recorded(warehouse, tmp_path):
    add_queue(warehouse, 5)
    report = dispatch(warehouse, OutboxSender(tmp_path))
    assert (report.due, report.sent, report.failed, report.not_rendered) == (5, 5, 0, 0)
    assert not report.could_not_send
    assert ledger(warehouse) == {"sent": 5}
    assert len(list(tmp_path.glob("*.eml"))) == 5
    row = warehouse.execute(
        "select message_key, owner_rep_id, follow_up_due_days, why_now, attempts, sent_at "
        "from ops.email_sends where lead_id = 'L0'"
    ).fetchall()[0]
    assert row[0] == message_key("L0", "warm_up", 1)
    first_step = load_tracks(TEMPLATES)["warm_up"].steps[0]
    assert row[1:3] == ("R0", first_step.follow_up_due_days)  # as marketing wrote it
    assert "warm_up" in row[3]
    assert "because" not in row[3]  # no reason code in it
    assert row[4:] == (1, AS_OF)  # one attempt, sent on the run's clock
    # The queue still lists them (dbt has not run again): the ledger refuses a second send.
    again = dispatch(warehouse, OutboxSender(tmp_path), run_id="run-2")
    assert again.sent == 0
    assert len(list(tmp_path.glob("*.eml"))) == 5


def test_a_batch_is_one_step_and_one_rep_rendered_once(warehouse, tmp_path):
    add_queue(warehouse, 6, reps=2)
    outbox = RecordingOutbox(tmp_path)
    dispatch(warehouse, outbox)
    assert sorted(batch.reply_to or "" for batch in outbox.batches) == [
        "rep0@leadflow.example",
        "rep1@leadflow.example",
    ]
    batch = outbox.batches[0]
    assert batch.categories == ("nurture", "track:warm_up", "step:1")
    assert len(batch.recipients) == 3
    assert "-lf_lead_first_name-" in batch.html and "-lf_text_lead_first_name-" in batch.text
    recipient = batch.recipients[0]
    assert recipient.custom_args == {"message_key": recipient.message_key, "lead_id": "L0"}
    assert recipient.unsubscribe_url == f"https://leadflow.example/u/{recipient.message_key}"
    assert recipient.substitutions["-lf_lead_first_name-"] == "Ann0"
    assert recipient.subject.startswith("Welcome, Ann0")


def recipient(key: str, address: str) -> Recipient:
    return Recipient(key, key, address, "", "s", {}, "https://u.example")


def test_batches_hold_at_most_the_size_and_never_one_address_twice():
    recipients = [recipient(f"k{i}", f"a{i % 4}@example.com") for i in range(10)]
    batches = split_into_batches(recipients, size=3)
    assert all(len(batch) <= 3 for batch in batches)
    for batch in batches:
        addresses = [r.to_email for r in batch]
        assert len(addresses) == len(set(addresses))
    assert sorted(r.message_key for batch in batches for r in batch) == sorted(
        r.message_key for r in recipients
    )
    # A second lead with the same address (any case) waits for the next batch.
    same = [recipient("a", "x@example.com"), recipient("b", "X@example.com")]
    assert [[r.message_key for r in b] for b in split_into_batches(same)] == [["a"], ["b"]]
    assert [len(b) for b in split_into_batches(recipients[:4])] == [4]


def test_a_thousand_and_one_leads_make_two_requests(warehouse, tmp_path):
    add_queue(warehouse, 1001)
    outbox = RecordingOutbox(tmp_path)
    assert dispatch(warehouse, outbox).sent == 1001
    assert sorted(len(batch.recipients) for batch in outbox.batches) == [1, 1000]


class CrashingSender(OutboxSender):
    """Delivers the first ``survives`` recipients of a batch, then the process 'dies'."""

    def __init__(self, outbox_dir: Path, survives: int) -> None:
        super().__init__(outbox_dir)
        self.survives = survives

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        super().send(
            OutgoingBatch(**{**batch.__dict__, "recipients": batch.recipients[: self.survives]})
        )
        raise RuntimeError("killed mid-batch")


def test_a_crash_mid_batch_never_sends_a_step_twice(warehouse, tmp_path):
    add_queue(warehouse, 6)
    with pytest.raises(RuntimeError):
        dispatch(warehouse, CrashingSender(tmp_path, survives=2))
    assert ledger(warehouse) == {"pending": 6}

    outbox = OutboxSender(tmp_path)
    assert settle_earlier_sends(warehouse, outbox) == 6
    # Delivered ones are sent, on the clock of the run that claimed them; the rest released.
    assert ledger(warehouse) == {"sent": 2, "failed": 4}
    sent_at = warehouse.execute(
        "select distinct sent_at from ops.email_sends where status = 'sent'"
    ).fetchall()
    assert sent_at == [(AS_OF,)]

    report = dispatch(warehouse, outbox, run_id="run-2", as_of=AS_OF + timedelta(days=1))
    assert report.sent == 4
    assert ledger(warehouse) == {"sent": 6}
    index_lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(index_lines) == len(list(tmp_path.glob("*.eml"))) == 6


def test_an_interrupted_step_the_rebuilt_queue_no_longer_lists_is_sent_in_the_same_run(
    warehouse, tmp_path
):
    add_queue(warehouse, 3)
    with pytest.raises(RuntimeError):
        dispatch(warehouse, CrashingSender(tmp_path, survives=1))
    # The next transform saw the pending rows: it lists step 2, not yet due.
    warehouse.execute("update main.fct_nurture_queue set next_step = 2, is_due = false")
    outbox = OutboxSender(tmp_path)
    settle_earlier_sends(warehouse, outbox)
    report = dispatch(warehouse, outbox, run_id="run-2")
    assert (report.due, report.sent) == (2, 2)
    assert ledger(warehouse) == {"sent": 3}


class LedgerWatchingSender(OutboxSender):
    """Notes, as each request goes out, the ledger a SIGKILL at that moment would leave."""

    def __init__(self, outbox_dir: Path, warehouse) -> None:
        super().__init__(outbox_dir)
        self.warehouse = warehouse
        self.claimed_at_each_request: list[dict[str, int]] = []

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        self.claimed_at_each_request.append(ledger(self.warehouse))
        return super().send(batch)


def test_each_batch_is_claimed_just_before_its_request(warehouse, tmp_path):
    # A kill runs no `finally`: claims made ahead of their request would stay pending for good
    # with a provider that cannot say what it has (SendGrid), and those emails never go out.
    add_queue(warehouse, 6, reps=3)
    watcher = LedgerWatchingSender(tmp_path, warehouse)
    assert dispatch(warehouse, watcher).sent == 6
    assert watcher.claimed_at_each_request == [{"pending": 2}, {"pending": 4}, {"pending": 6}]


class UnsureSender(OutboxSender):
    """A provider that cannot say whether a message went out."""

    def was_delivered(self, message_key: str) -> bool | None:
        return None


def test_a_send_whose_fate_is_unknown_stays_pending(warehouse, tmp_path):
    add_queue(warehouse, 3)
    with pytest.raises(RuntimeError):
        dispatch(warehouse, CrashingSender(tmp_path, survives=0))
    assert settle_earlier_sends(warehouse, UnsureSender(tmp_path)) == 0
    assert ledger(warehouse) == {"pending": 3}
    assert dispatch(warehouse, OutboxSender(tmp_path), run_id="run-2").sent == 0


class RefusingSender(OutboxSender):
    """Refuses the batches of one rep, as SendGrid answers 400 to a bad request."""

    def __init__(self, outbox_dir: Path, reply_to: str | None = None) -> None:
        super().__init__(outbox_dir)
        self.reply_to = reply_to

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        if self.reply_to not in (None, batch.reply_to):
            return super().send(batch)
        return [
            SendResult(r.message_key, "failed", None, "400 Bad Request: invalid reply_to")
            for r in batch.recipients
        ]


def test_a_refused_batch_fails_alone_and_the_run_says_why(warehouse, tmp_path):
    add_queue(warehouse, 4, reps=2)
    report = dispatch(warehouse, RefusingSender(tmp_path, reply_to="rep1@leadflow.example"))
    assert (report.sent, report.failed) == (2, 2)
    assert report.could_not_send
    assert report.errors == ("400 Bad Request: invalid reply_to",)
    assert ledger(warehouse) == {"sent": 2, "failed": 2}


def test_a_refused_send_is_tried_again_until_it_has_failed_max_attempts(warehouse, tmp_path):
    add_queue(warehouse, 2)
    assert dispatch(warehouse, RefusingSender(tmp_path), max_attempts=2).failed == 2
    again = dispatch(warehouse, RefusingSender(tmp_path), run_id="run-2", max_attempts=2)
    assert (again.failed, again.gave_up) == (2, 0)
    attempts = warehouse.execute("select distinct attempts from ops.email_sends").fetchall()
    assert attempts == [(2,)]
    # Failed twice: no longer claimed, and reported as given up with the provider's reason.
    third = dispatch(warehouse, OutboxSender(tmp_path), run_id="run-3", max_attempts=2)
    assert (third.sent, third.failed, third.gave_up) == (0, 0, 2)
    assert third.errors == ("400 Bad Request: invalid reply_to",)
    # Raising the limit lets them go out.
    assert dispatch(warehouse, OutboxSender(tmp_path), run_id="run-4", max_attempts=3).sent == 2


class MisconfiguredSender(OutboxSender):
    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        raise EmailProviderError("SENDGRID_API_KEY was refused (401): create a new key")


def test_a_provider_that_refuses_everything_releases_its_claims(warehouse, tmp_path):
    add_queue(warehouse, 3)
    with pytest.raises(EmailProviderError, match="SENDGRID_API_KEY"):
        dispatch(warehouse, MisconfiguredSender(tmp_path))
    # Nothing was sent: the claims are given back at once and are not counted as attempts.
    rows = warehouse.execute("select distinct status, error, attempts from ops.email_sends")
    assert rows.fetchall() == [("failed", INTERRUPTED, 0)]
    assert dispatch(warehouse, OutboxSender(tmp_path), run_id="run-2").sent == 3


@pytest.mark.parametrize("source", ["event", "provider", "dim_leads"])
def test_a_lead_suppressed_since_the_queue_was_built_is_not_claimed(warehouse, tmp_path, source):
    add_queue(warehouse, 3)
    if source == "event":
        warehouse.execute(
            """
            insert into raw.events (event_id, email, event_type, occurred_at, load_id, source,
                                    source_file, source_line, loaded_at)
            values ('e1', ' LEAD1@example.com', 'Unsubscribe', ?, 'l', 'sendgrid', 'f', 1, ?)
            """,
            [AS_OF, AS_OF],
        )
    elif source == "provider":
        warehouse.execute(
            "insert into ops.email_suppressions values ('lead1@example.com', 'bounce', "
            "'sendgrid', ?, null), ('lead2@example.com', 'bounce', 'sendgrid', ?, ?)",
            [AS_OF, AS_OF, AS_OF],  # lead2's was lifted
        )
    else:
        warehouse.execute("update main.dim_leads set is_suppressed = true where lead_id = 'L1'")
    report = dispatch(warehouse, OutboxSender(tmp_path))
    assert (report.due, report.suppressed, report.sent) == (3, 1, 2)
    sent = warehouse.execute("select lead_id from ops.email_sends order by 1").fetchall()
    assert sent == [("L0",), ("L2",)]


def test_the_daily_limit_defers_the_rest_to_the_next_day(warehouse, tmp_path):
    add_queue(warehouse, 5)
    first = dispatch(warehouse, OutboxSender(tmp_path), daily_limit=3)
    assert (first.sent, first.deferred) == (3, 2)
    # Later the same UTC day: the limit is spent.
    later = dispatch(
        warehouse,
        OutboxSender(tmp_path),
        run_id="run-2",
        as_of=AS_OF + timedelta(hours=5),
        daily_limit=3,
    )
    assert (later.sent, later.deferred) == (0, 2)
    next_day = dispatch(
        warehouse,
        OutboxSender(tmp_path),
        run_id="run-3",
        as_of=AS_OF + timedelta(days=1),
        daily_limit=3,
    )
    assert (next_day.sent, next_day.deferred) == (2, 0)


def test_a_step_missing_from_the_templates_is_quarantined_not_sent(warehouse, tmp_path):
    add_queue(warehouse, 2, step=99)
    report = dispatch(warehouse, OutboxSender(tmp_path))
    assert (report.sent, report.not_rendered) == (0, 2)
    assert report.could_not_send and "has no step 99" in report.errors[0]
    reasons = warehouse.execute("select distinct stage, reason_code from ops.quarantine").fetchall()
    assert reasons == [("nurture", "render_failed")]


def test_a_ledger_from_before_attempts_were_counted_gains_them_as_one_each():
    import duckdb

    from flows.warehouse import OPS_TABLES, ensure_schema

    old_columns = OPS_TABLES["email_sends"].replace(
        ",\n        attempts integer not null default 1", ""
    )
    assert "attempts" not in old_columns
    connection = duckdb.connect()
    connection.execute("create schema ops")
    connection.execute(f"create table ops.email_sends ({old_columns})")
    connection.execute(
        "insert into ops.email_sends (message_key, lead_id, email, track, step, template, "
        "status, provider, follow_up_title, follow_up_due_days, why_now, created_at, run_id) "
        "values ('k', 'L', 'a@example.com', 'warm_up', 1, 't', 'failed', 'outbox', 'f', 1, "
        "'w', ?, 'r')",
        [AS_OF],
    )
    ensure_schema(connection)
    assert connection.execute("select attempts from ops.email_sends").fetchall() == [(1,)]


def test_the_report_lists_a_screenful_of_distinct_reasons():
    from flows.email.dispatch import MAX_LISTED_ERRORS, _listed

    few = {"b", "a"}
    assert _listed(few) == ("a", "b")
    many = {f"the To address 'x{i}' is not a valid email address" for i in range(50)}
    listed = _listed(many)
    assert len(listed) == MAX_LISTED_ERRORS
    assert (
        listed[-1]
        == f"... and {50 - MAX_LISTED_ERRORS + 1} more in ops.email_sends and ops.quarantine"
    )


# -- Overlapping runs on a PostgreSQL warehouse ------------------------------------------------
# There runs are not one writer: two workers may dispatch the same due steps at the same moment.

SENDGRID_KEY = "SG." + "A1b2-C3d_E4f5G6h7I8j9K" + "." + "x" * 40 + "Y-_"


def sendgrid_tracks() -> dict[str, Track]:
    """The shipped tracks with the unsubscribe group SendGrid requires."""
    return {
        name: replace(track, unsubscribe_group=7) for name, track in load_tracks(TEMPLATES).items()
    }


def dispatch_at_once(target, run: Callable[[Connection, str], DispatchReport], workers: int = 2):
    """``run`` on ``workers`` connections of their own, started together; their reports."""
    start = threading.Barrier(workers)

    def worker(number: int) -> DispatchReport:
        connection = connect(target)
        try:
            start.wait()
            return run(connection, f"run-{number}")
        finally:
            connection.close()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(worker, range(workers)))


def dispatching_to(double: SendGridDouble) -> Callable[[Connection, str], DispatchReport]:
    """A worker's dispatch through the real SendGrid client to ``double``."""
    return lambda connection, run_id: dispatch(
        connection,
        SendGridSender(SecretStr(SENDGRID_KEY), host=double.url),
        run_id=run_id,
        tracks=sendgrid_tracks(),
    )


def test_two_workers_dispatching_the_same_steps_send_each_once(postgres_database):
    warehouse = connect(postgres_database)
    add_queue(warehouse, 2500, reps=5)  # five batches of 500
    # Each request takes a while, so that the workers' requests overlap.
    with SendGridDouble(latency_s=0.1) as double:
        reports = dispatch_at_once(
            postgres_database,
            dispatching_to(double),
        )
        keys = [key for key, _ in double.accepted_messages()]
    assert len(keys) == len(set(keys)) == 2500
    assert sum(report.sent for report in reports) == 2500
    assert all(report.sent for report in reports)  # both took part
    assert ledger(warehouse) == {"sent": 2500}
    warehouse.close()


def test_two_workers_retrying_the_same_refused_steps_send_each_once(postgres_database, tmp_path):
    # Steps tried before are claimed by the upsert: only one worker revives each.
    warehouse = connect(postgres_database)
    add_queue(warehouse, 1500, reps=3)
    assert dispatch(warehouse, RefusingSender(tmp_path)).failed == 1500
    with SendGridDouble(latency_s=0.1) as double:
        dispatch_at_once(
            postgres_database,
            dispatching_to(double),
        )
        keys = [key for key, _ in double.accepted_messages()]
    assert len(keys) == len(set(keys)) == 1500
    assert ledger(warehouse) == {"sent": 1500}
    attempts = warehouse.execute("select distinct attempts from ops.email_sends").fetchall()
    assert attempts == [(2,)]
    warehouse.close()


class OverlappedOutbox(RecordingOutbox):
    """The outbox of a run that another run overlaps: ``meanwhile`` runs while this run's first
    request is in flight (its claim written, its emails not yet in the outbox)."""

    def __init__(self, outbox_dir: Path, meanwhile: Callable[[], None]) -> None:
        super().__init__(outbox_dir)
        self.meanwhile: Callable[[], None] | None = meanwhile

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().send(batch)


def emailed(*outboxes: RecordingOutbox) -> list[str]:
    return [r.message_key for outbox in outboxes for b in outbox.batches for r in b.recipients]


def test_a_run_does_not_settle_the_claims_another_run_has_in_flight(postgres_database, tmp_path):
    warehouse = connect(postgres_database)
    add_queue(warehouse, 6, reps=3)  # three batches of two
    other_outbox = RecordingOutbox(tmp_path)
    settled_by_the_other: list[int] = []

    def other_run() -> None:
        # A whole nurture send: settle what earlier runs left pending, then dispatch. The
        # outbox cannot yet say it delivered what is in flight: settled as never sent, those
        # steps would go out twice.
        other = connect(postgres_database)
        settled_by_the_other.append(settle_earlier_sends(other, other_outbox))
        dispatch(other, other_outbox, run_id="run-other")
        other.close()

    outbox = OverlappedOutbox(tmp_path, other_run)
    report = dispatch(warehouse, outbox)
    assert settled_by_the_other == [0]
    assert report.sent == 2  # the other run sent the two batches not yet claimed
    keys = emailed(outbox, other_outbox)
    assert len(keys) == len(set(keys)) == 6
    assert ledger(warehouse) == {"sent": 6}
    warehouse.close()


def test_overlapping_runs_together_keep_the_daily_limit(postgres_database, tmp_path):
    warehouse = connect(postgres_database)
    add_queue(warehouse, 2000, reps=4)
    other_outbox = RecordingOutbox(tmp_path)

    def other_run() -> None:
        # A rebuilt queue lists older due steps: the other run picks those first, and would
        # send as many as the limit leaves while this run goes on with its own pick.
        other = connect(postgres_database)
        add_queue(other, 600, reps=4, more="M", due_at=datetime(2026, 11, 21, 8))
        dispatch(other, other_outbox, run_id="run-other", daily_limit=1200)
        other.close()

    outbox = OverlappedOutbox(tmp_path, other_run)
    report = dispatch(warehouse, outbox, daily_limit=1200)
    keys = emailed(outbox, other_outbox)
    assert len(keys) == len(set(keys)) == 1200
    assert ledger(warehouse) == {"sent": 1200}
    assert report.deferred > 0  # what the other run's sends left no room for
    warehouse.close()


def test_a_killed_runs_claims_are_settled_by_the_next_run(postgres_database, tmp_path):
    # Its session ended, so its lock is gone: its pending claims are no longer in flight.
    warehouse = connect(postgres_database)
    add_queue(warehouse, 3)
    with pytest.raises(RuntimeError):
        dispatch(warehouse, CrashingSender(tmp_path, survives=1))
    warehouse.close()
    warehouse = connect(postgres_database)
    assert settle_earlier_sends(warehouse, OutboxSender(tmp_path)) == 3
    assert ledger(warehouse) == {"sent": 1, "failed": 2}
    warehouse.close()
