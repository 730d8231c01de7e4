"""``leadflow templates send-test``: one rendered step, marked as a test, outside the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from flows.email.message import OutgoingBatch, SendResult
from flows.email.proof import build_test_batch, lead_row, send_test
from flows.email.templates import load_tracks
from flows.settings import ConfigError


@dataclass
class RecordingSender:
    """An EmailSender that keeps what it was given (the providers have their own tests)."""

    provider: str = "recording"
    status: str = "sent"
    batches: list[OutgoingBatch] = field(default_factory=list)

    def check(self) -> None:
        pass

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        self.batches.append(batch)
        return [
            SendResult(
                recipient.message_key,
                "sent" if self.status == "sent" else "failed",
                "id-1" if self.status == "sent" else None,
                None if self.status == "sent" else "mailbox on fire",
            )
            for recipient in batch.recipients
        ]

    def was_delivered(self, message_key: str) -> bool | None:
        return None


def proof_batch(templates, context, **options) -> OutgoingBatch:
    values = {
        "lead_id": "sample",
        "to_address": "tester@leadflow.example",
        "from_email": "LeadFlow <hello@leadflow.example>",
        "message_key": "test-1",
    } | options
    return build_test_batch(
        templates, "tracks/warm_up/02-speed-to-lead.html", load_tracks(templates), context, **values
    )


def test_the_batch_is_one_final_email_marked_as_a_test(shipped_templates, sample_context):
    batch = proof_batch(shipped_templates, sample_context)
    [recipient] = batch.recipients
    assert batch.is_test and batch.categories == ("test",)
    assert (batch.track, batch.step) == ("warm_up", 2)
    assert recipient.subject == (
        "[TEST] The one change that speeds up follow-up at Northwind Logistics"
    )
    assert recipient.to_email == "tester@leadflow.example"
    assert recipient.substitutions == {}
    assert "Hi Priya," in batch.html and "Hi Priya," in batch.text
    assert recipient.unsubscribe_url == sample_context["unsubscribe_url"]
    assert batch.reply_to == sample_context["rep"]["email"]


def test_a_bad_address_or_template_is_a_user_error(shipped_templates, sample_context):
    with pytest.raises(ConfigError, match="--to 'me' is not an email address"):
        proof_batch(shipped_templates, sample_context, to_address="me")
    with pytest.raises(Exception, match="no such email under"):
        build_test_batch(
            shipped_templates,
            "tracks/warm_up/09-nothing.html",
            load_tracks(shipped_templates),
            sample_context,
            lead_id="sample",
            to_address="a@b.example",
            from_email="a@b.example",
            message_key="test-1",
        )


def test_send_test_goes_through_the_sender_and_reports_a_failure(shipped_templates, sample_context):
    batch = proof_batch(shipped_templates, sample_context)
    sender = RecordingSender()
    assert send_test(sender, batch).provider_message_id == "id-1"
    assert sender.batches == [batch]
    with pytest.raises(ConfigError, match="did not send the test email: mailbox on fire"):
        send_test(RecordingSender(status="failed"), batch)


def test_a_lead_is_read_from_the_queue_else_from_dim_leads(warehouse):
    with pytest.raises(ConfigError, match="no such lead"):
        lead_row(warehouse, "q1")  # the models were never built
    warehouse.execute(
        "create table main.fct_nurture_queue as select 'q1' as lead_id, 'Ann' as first_name"
    )
    warehouse.execute(
        "create table main.dim_leads as select * from (values ('q1', 'Old'), ('d1', 'Dee')) "
        "as t(lead_id, first_name)"
    )
    assert lead_row(warehouse, "q1") == {"lead_id": "q1", "first_name": "Ann"}
    assert lead_row(warehouse, "d1") == {"lead_id": "d1", "first_name": "Dee"}
    with pytest.raises(ConfigError, match="--lead nobody: no such lead in the warehouse"):
        lead_row(warehouse, "nobody")
