"""The send ledger: every due step is sent once, whatever crashes in between."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from flows.email.dispatch import Sender, dispatch_due_steps, message_key, settle_earlier_sends
from flows.email.message import OutgoingEmail, SendResult
from flows.email.outbox import OutboxSender
from flows.email.render import TemplateRenderer
from flows.email.templates import load_tracks
from flows.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"
AS_OF = datetime(2026, 11, 22, 9)
SENDER = Sender(
    from_email="LeadFlow <hello@leadflow.example>",
    name="LeadFlow",
    address="1 Example Street",
    unsubscribe_url="https://leadflow.example/u/{message_key}",
)


def add_queue(warehouse, leads: int, *, track: str = "warm_up", step: int = 1) -> None:
    warehouse.execute(
        """
        create or replace table main.fct_nurture_queue as
        select
            'L' || i as lead_id, 'lead' || i || '@example.com' as email,
            'Ann' || i as first_name, 'Lee' as last_name, 'Acme' as company, 'VP' as title,
            'R1' as owner_rep_id, 'Rita Rep' as owner_name, 'rita@leadflow.example' as owner_email,
            'engaged' as stage, 'not_ready_low_engagement' as stage_reason,
            ? as nurture_track, ? as next_step, 'unused.html' as template,
            timestamp '2026-11-22 08:00' as due_at, true as is_due,
            'Call' as follow_up_title, 2 as follow_up_due_days
        from range(?) as t(i)
        """,
        [track, step, leads],
    )


def dispatch(warehouse, sender, run_id: str = "run-1"):
    return dispatch_due_steps(
        warehouse,
        tracks=load_tracks(TEMPLATES),
        renderer=TemplateRenderer(TEMPLATES),
        email_sender=sender,
        sender=SENDER,
        run_id=run_id,
        as_of=AS_OF,
    )


def ledger(warehouse) -> dict[str, int]:
    return dict(
        warehouse.execute("select status, count(*) from ops.email_sends group by 1").fetchall()
    )


def test_due_steps_are_sent_once_and_recorded(warehouse, tmp_path):
    add_queue(warehouse, 5)
    report = dispatch(warehouse, OutboxSender(tmp_path))
    assert (report.due, report.sent, report.failed) == (5, 5, 0)
    assert ledger(warehouse) == {"sent": 5}
    assert len(list(tmp_path.glob("*.eml"))) == 5
    row = warehouse.execute(
        "select message_key, owner_rep_id, follow_up_due_days, why_now from ops.email_sends "
        "where lead_id = 'L0'"
    ).fetchall()[0]
    assert row[0] == message_key("L0", "warm_up", 1)
    first_step = load_tracks(TEMPLATES)["warm_up"].steps[0]
    assert row[1:3] == ("R1", first_step.follow_up_due_days)  # as marketing wrote it
    assert "warm_up" in row[3]
    # The queue still lists them (dbt has not run again): the ledger refuses a second send.
    again = dispatch(warehouse, OutboxSender(tmp_path), run_id="run-2")
    assert again.sent == 0
    assert len(list(tmp_path.glob("*.eml"))) == 5


class CrashingSender(OutboxSender):
    """Delivers the first ``survives`` messages of a batch, then the process 'dies'."""

    def __init__(self, outbox_dir: Path, survives: int) -> None:
        super().__init__(outbox_dir)
        self.survives = survives

    def send(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        super().send(messages[: self.survives])
        raise RuntimeError("killed mid-batch")


def test_a_crash_mid_batch_never_sends_a_step_twice(warehouse, tmp_path):
    add_queue(warehouse, 6)
    with pytest.raises(RuntimeError):
        dispatch(warehouse, CrashingSender(tmp_path, survives=2))
    assert ledger(warehouse) == {"pending": 6}

    outbox = OutboxSender(tmp_path)
    settle_earlier_sends(warehouse, outbox)
    assert ledger(warehouse) == {"sent": 2}  # delivered ones settled, the rest released

    report = dispatch(warehouse, outbox, run_id="run-2")
    assert report.sent == 4
    assert ledger(warehouse) == {"sent": 6}
    index_lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(index_lines) == len(list(tmp_path.glob("*.eml"))) == 6


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
    def send(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        return [
            SendResult(m.message_key, "failed", None, "429 too many requests") for m in messages
        ]


def test_a_refused_send_is_tried_again_on_the_next_run(warehouse, tmp_path):
    add_queue(warehouse, 2)
    assert dispatch(warehouse, RefusingSender(tmp_path)).failed == 2
    assert ledger(warehouse) == {"failed": 2}
    assert dispatch(warehouse, OutboxSender(tmp_path), run_id="run-2").sent == 2
    assert ledger(warehouse) == {"sent": 2}


def test_a_step_missing_from_the_templates_is_quarantined_not_sent(warehouse, tmp_path):
    add_queue(warehouse, 2, step=99)
    report = dispatch(warehouse, OutboxSender(tmp_path))
    assert (report.sent, report.not_rendered) == (0, 2)
    reasons = warehouse.execute("select distinct stage, reason_code from ops.quarantine").fetchall()
    assert reasons == [("nurture", "render_failed")]
