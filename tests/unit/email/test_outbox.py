"""The local outbox: readable .eml files, an index, idempotent and atomic writes."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

import flows.files as files_module
from flows.email.message import EmailProviderError, OutgoingBatch, Recipient
from flows.email.outbox import OutboxSender

KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


HTML = (
    "<html><body><p>Hi -lf_lead_first_name-, a line long enough to need a soft break in "
    "quoted-printable encoding, which wraps at 76 characters = fine.</p>"
    '<a href="https://x.example">x</a></body></html>'
)
TEXT = (
    "Hi -lf_text_lead_first_name-, a line long enough to need a soft break in quoted-printable "
    "encoding, which wraps at 76 characters = fine.\n\nx (https://x.example)\n"
)


def message(key: str = KEY, **changes) -> Recipient:
    base = Recipient(
        message_key=key,
        lead_id="L1",
        to_email="zoe.oelund@example.com",
        to_name="Zoë Ölund",
        subject="Olá Zoë: one idea for Acme",
        substitutions={
            "-lf_lead_first_name-": "Zoë &amp; Co",
            "-lf_text_lead_first_name-": "Zoë & Co",
        },
        unsubscribe_url=f"https://leadflow.example/unsubscribe?key={key}",
        custom_args={"message_key": key, "lead_id": "L1"},
    )
    return replace(base, **changes)


def batch(*recipients: Recipient, **changes) -> OutgoingBatch:
    base = OutgoingBatch(
        track="warm_up",
        step=2,
        from_email="LeadFlow Demo <hello@leadflow.example>",
        reply_to="Rita Rep <rita@leadflow.example>",
        html=HTML,
        text=TEXT,
        unsubscribe_group=None,
        categories=("nurture", "track:warm_up", "step:2"),
        recipients=recipients,
    )
    return replace(base, **changes)


def read_eml(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def index_lines(outbox: Path) -> list[dict]:
    return [json.loads(line) for line in (outbox / "index.jsonl").read_text().splitlines()]


def test_a_message_becomes_an_eml_any_mail_client_reads(tmp_path):
    sent = message()
    [result] = OutboxSender(tmp_path).send(batch(sent))
    assert result.status == "sent" and result.error is None
    assert result.provider_message_id == f"<{KEY}@leadflow.example>"

    parsed = read_eml(tmp_path / f"{KEY}.eml")
    assert parsed["From"] == "LeadFlow Demo <hello@leadflow.example>"
    assert parsed["To"].addresses[0].display_name == "Zoë Ölund"
    assert parsed["To"].addresses[0].addr_spec == "zoe.oelund@example.com"
    assert parsed["Subject"] == "Olá Zoë: one idea for Acme"
    assert parsed["Message-ID"] == result.provider_message_id
    assert parsed["Date"].datetime is not None
    assert parsed["X-LeadFlow-Message-Key"] == KEY
    assert parsed["List-Unsubscribe"] == f"<https://leadflow.example/unsubscribe?key={KEY}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
    assert parsed["Reply-To"] == "Rita Rep <rita@leadflow.example>"
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    # The recipient's values replace the tags, as SendGrid substitutes them; quoted-printable
    # round-trips the content exactly, non-ASCII and '=' included.
    assert text.get_content() == TEXT.replace("-lf_text_lead_first_name-", "Zoë & Co")
    assert html.get_content() == HTML.replace("-lf_lead_first_name-", "Zoë &amp; Co")


def test_the_index_lists_each_message(tmp_path):
    OutboxSender(tmp_path).send(batch(message(), message("k2", to_email="b@example.com")))
    first, second = index_lines(tmp_path)
    assert set(first) == {"message_key", "to", "subject", "track", "step", "file", "written_at"}
    assert first["message_key"] == KEY and first["file"] == f"{KEY}.eml"
    assert (first["to"], first["subject"]) == (
        "zoe.oelund@example.com",
        "Olá Zoë: one idea for Acme",
    )
    assert (first["track"], first["step"]) == ("warm_up", 2)
    assert second["message_key"] == "k2" and second["to"] == "b@example.com"


def test_a_test_send_is_marked_and_needs_no_reply_to(tmp_path):
    OutboxSender(tmp_path).send(batch(message(), reply_to=None, is_test=True))
    parsed = read_eml(tmp_path / f"{KEY}.eml")
    assert parsed["X-LeadFlow-Test"] == "yes" and parsed["Reply-To"] is None
    assert index_lines(tmp_path)[0]["test"] is True


def test_check_names_the_setting_when_the_outbox_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EmailProviderError, match="LEADFLOW_DATA_DIR"):
        OutboxSender(tmp_path / "file" / "outbox").check()
    OutboxSender(tmp_path / "outbox").check()
    assert (tmp_path / "outbox").is_dir()


def test_sending_a_key_again_writes_nothing(tmp_path):
    sender = OutboxSender(tmp_path)
    [first] = sender.send(batch(message()))
    written = (tmp_path / f"{KEY}.eml").read_bytes()
    # Again, in the same batch twice, and from a new sender (a re-run) with changed content.
    results = sender.send(batch(message(), message()))
    results += OutboxSender(tmp_path).send(batch(message(subject="Changed")))
    assert all(result == first for result in results)
    assert (tmp_path / f"{KEY}.eml").read_bytes() == written
    assert len(index_lines(tmp_path)) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{KEY}.eml", "index.jsonl"]


def test_was_delivered_says_whether_the_file_exists(tmp_path):
    sender = OutboxSender(tmp_path)
    assert not sender.was_delivered(KEY)
    sender.send(batch(message()))
    assert sender.was_delivered(KEY)
    assert OutboxSender(tmp_path).was_delivered(KEY)


def test_a_crash_before_the_rename_leaves_no_message(tmp_path, monkeypatch):
    def crash(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr(files_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        OutboxSender(tmp_path).send(batch(message()))
    monkeypatch.undo()

    sender = OutboxSender(tmp_path)
    assert not sender.was_delivered(KEY)
    assert not (tmp_path / f"{KEY}.eml").exists()
    [result] = sender.send(batch(message()))
    assert result.status == "sent"
    read_eml(tmp_path / f"{KEY}.eml")
    assert [line["message_key"] for line in index_lines(tmp_path)] == [KEY]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_a_half_written_temporary_file_does_not_count(tmp_path):
    (tmp_path / f".{KEY}.eml.4242.tmp").write_bytes(b"From: LeadFlow\nSubj")
    sender = OutboxSender(tmp_path)
    assert not sender.was_delivered(KEY)
    sender.send(batch(message()))
    read_eml(tmp_path / f"{KEY}.eml")


def test_a_delivered_file_missing_from_the_index_is_indexed_on_resend(tmp_path):
    sender = OutboxSender(tmp_path)
    sender.send(batch(message()))
    (tmp_path / "index.jsonl").write_text("")  # a crash between the file and its index line
    OutboxSender(tmp_path).send(batch(message()))
    assert [line["message_key"] for line in index_lines(tmp_path)] == [KEY]


def test_an_index_line_cut_short_by_a_crash_is_left_behind(tmp_path):
    OutboxSender(tmp_path).send(batch(message()))
    with (tmp_path / "index.jsonl").open("a") as index:
        index.write('{"message_key": "k2", "to": "b@ex')
    OutboxSender(tmp_path).send(batch(message(), message("k3")))
    lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["message_key"] == KEY
    assert lines[1] == '{"message_key": "k2", "to": "b@ex'
    assert json.loads(lines[2])["message_key"] == "k3"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"message_key": "../../etc/passwd"}, "cannot name an outbox file"),
        ({"message_key": ".hidden"}, "cannot name an outbox file"),
        ({"subject": "Hi\r\nBcc: everyone@example.com"}, "Subject header contains a line break"),
        ({"to_email": "not-an-address"}, "is not a valid email address"),
        ({"to_email": "a@example.com>, everyone@example.com"}, "is not a valid email address"),
        ({"unsubscribe_url": "https://x.example/\nBcc: x@y.z"}, "contains a line break"),
    ],
    ids=["traversal", "hidden", "subject-injection", "bad-address", "extra-recipient", "url"],
)
def test_a_message_that_cannot_be_written_safely_fails_alone(tmp_path, changes, error):
    bad = message(**changes)
    results = OutboxSender(tmp_path / "outbox").send(batch(bad, message("good")))
    assert results[0].message_key == bad.message_key
    assert results[0].status == "failed" and error in (results[0].error or "")
    assert results[1].status == "sent"
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [
        "good.eml",
        "index.jsonl",
    ]


def test_the_outbox_folder_is_created(tmp_path):
    outbox = tmp_path / "data" / "outbox"
    OutboxSender(outbox).send(batch(message()))
    assert (outbox / f"{KEY}.eml").is_file()
