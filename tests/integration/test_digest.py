"""The reps' daily digest rendered and sent through the outbox and through the real sendgrid
client to the SendGrid double: once per rep per day, most urgent first, escaped, linked (to
the CRM of the lead's source when its profile names one)."""

from __future__ import annotations

import email
import json
from datetime import datetime, timedelta
from email.message import Message
from functools import partial
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.email.outbox import OutboxSender
from flows.email.sendgrid import SendGridSender
from flows.sales.delivery import digest_sink
from flows.settings import ConfigError, Settings
from flows.sources.mapping import SHIPPED_PROFILES
from flows.warehouse import connect
from tests.concurrency import at_once
from tests.sendgrid_double import SendGridDouble

KEY = SecretStr("SG." + "a" * 22 + "." + "b" * 43)
MONDAY_7AM = datetime(2026, 12, 7, 7)


def build_marts(warehouse) -> None:
    warehouse.execute(
        """
        create table main.dim_reps as select * from (values
            ('rep_01', 'Rita Ames', 'rita@leadflow.example', true),
            ('rep_02', 'Sam Bell', 'sam@leadflow.example', true),
            ('rep_07', 'Old Rep', 'old@leadflow.example', false)
        ) as reps (rep_id, rep_name, rep_email, is_active)
        """
    )
    warehouse.execute(
        "create table main.dim_leads as select * from (values ('L1', 'crm', 'A/1'), "
        "('L2', 'hubspot', 'B2'), ('L3', 'crm', 'C3'), ('L4', 'crm', 'D4'), ('L5', 'crm', 'E5')) "
        "as leads (lead_id, source, source_lead_id)"
    )
    tasks = [
        # task, lead, rep, title, due, status, priority
        ("t1", "L1", "rep_01", "Follow up with Ann <b>Lee</b>", MONDAY_7AM + timedelta(days=1),
         "open", 90),
        ("t2", "L2", "rep_01", "Call Bo", MONDAY_7AM - timedelta(days=2), "open", 10),
        ("t3", "L3", "rep_01", "Email Cy", MONDAY_7AM + timedelta(days=2), "open", 50),
        ("t4", "L4", "rep_01", "Waiting one", MONDAY_7AM, "queued", 5),
        ("t5", "L5", "rep_02", "Closed one", MONDAY_7AM, "closed", 5),
        ("t6", "L5", "rep_07", "Inactive rep", MONDAY_7AM, "open", 5),
    ]  # fmt: skip
    for task_id, lead_id, rep, title, due_at, status, priority in tasks:
        warehouse.execute(
            """
            insert into ops.sales_tasks (task_id, lead_id, email, phone, owner_rep_id,
                owner_email, reason, title, why_now, due_at, status, created_at, run_id,
                priority)
            values (?, ?, 'lead@acme.com', '+1 555 0100', ?, ?, 'mql_handoff', ?,
                'Asked for a demo', ?, ?, ?, 'run-1', ?)
            """,
            [task_id, lead_id, rep, f"{rep}@x.com", title, due_at, status, MONDAY_7AM,
             priority],
        )  # fmt: skip


HUBSPOT_LINK = "https://app.hubspot.com/contacts/123/record/0-1/{source_lead_id}"


def settings_for(tmp_path: Path, **values: object) -> Settings:
    """Leads link to https://crm.example, HubSpot's to HubSpot (its profile says so)."""
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "hubspot_contacts.yml").write_text(
        (SHIPPED_PROFILES / "hubspot_contacts.yml").read_text(encoding="utf-8")
        + f'crm_url_template: "{HUBSPOT_LINK}"\n',
        encoding="utf-8",
    )
    return Settings(
        data_dir=tmp_path / "data",
        mappings_dir=profiles,
        crm_url_template="https://crm.example/leads/{source_lead_id}",
        schedule_timezone="Europe/Berlin",
        **values,
    )


def digest_sends(warehouse) -> list[tuple[str, str, str]]:
    return warehouse.execute(
        "select rep_id, cast(digest_date as varchar), status from ops.digest_sends order by all"
    ).fetchall()


def test_the_outbox_gets_each_active_rep_one_digest_a_day_most_urgent_first(warehouse, tmp_path):
    build_marts(warehouse)
    settings = settings_for(tmp_path)
    sender = OutboxSender(settings.outbox_dir)
    sink = digest_sink(settings, sender)
    assert sink is not None

    result = sink.deliver(warehouse, MONDAY_7AM)
    assert (result.delivered, result.pending) == (1, 0)  # rep_02 has no open task, rep_07 left
    assert sink.deliver(warehouse, MONDAY_7AM + timedelta(hours=3)).delivered == 0
    assert digest_sends(warehouse) == [("rep_01", "2026-12-07", "sent")]

    [eml] = sorted(settings.outbox_dir.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes())
    assert message["To"] == "Rita Ames <rita@leadflow.example>"
    assert message["Subject"] == "3 open tasks for Monday 7 December 2026, 1 overdue"
    html, text = parts(message)
    # Overdue first, then by priority: Bo (overdue), Ann (90), Cy (50); nothing queued or closed.
    assert text.index("Call Bo") < text.index("Ann") < text.index("Email Cy")
    assert "Closed one" not in text and "Waiting one" not in text
    assert "1 more task waits for room" in text
    assert "Follow up with Ann &lt;b&gt;Lee&lt;/b&gt;" in html
    assert 'href="https://crm.example/leads/A%2F1"' in html
    assert 'href="https://app.hubspot.com/contacts/123/record/0-1/B2"' in html
    assert "crm.example/leads/B2" not in html
    assert "Asked for a demo" in text

    # The next day (in Berlin) is a new digest.
    assert sink.deliver(warehouse, MONDAY_7AM + timedelta(days=1)).delivered == 1
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 2


def parts(message: Message) -> tuple[str, str]:
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_type()] = payload.decode()
    return found["text/html"], found["text/plain"]


def test_sendgrid_gets_each_rep_one_digest_a_day_through_the_real_client(warehouse, tmp_path):
    build_marts(warehouse)
    warehouse.execute("update ops.sales_tasks set status = 'open' where task_id = 't5'")
    settings = settings_for(tmp_path, digest_unsubscribe_group=42)
    with SendGridDouble() as double:
        sender = SendGridSender(KEY, host=double.url)
        sink = digest_sink(settings, sender)
        assert sink is not None
        assert sink.deliver(warehouse, MONDAY_7AM).delivered == 2
        assert sink.deliver(warehouse, MONDAY_7AM).delivered == 0
        requests = [request.body for request in double.accepted]
    assert len(requests) == 2
    recipients = sorted(body["personalizations"][0]["to"][0]["email"] for body in requests)
    assert recipients == ["rita@leadflow.example", "sam@leadflow.example"]
    assert all(body["asm"] == {"group_id": 42} for body in requests)
    assert all(body["categories"] == ["leadflow-digest"] for body in requests)
    keys = {body["personalizations"][0]["custom_args"]["message_key"] for body in requests}
    assert keys == {key for key, in warehouse.execute(
        "select digest_key from ops.digest_sends where status = 'sent'").fetchall()}  # fmt: skip
    assert json.dumps(requests).count("Call Bo") == 2  # the HTML and the text part


def test_a_failed_digest_is_sent_again_the_same_day_and_only_once(warehouse, tmp_path):
    build_marts(warehouse)
    settings = settings_for(tmp_path, digest_unsubscribe_group=42)
    from tests.sendgrid_double import Fault

    with SendGridDouble() as double:
        double.fail_next(Fault.bad_request("Invalid request"), times=1)
        sink = digest_sink(settings, SendGridSender(KEY, host=double.url))
        assert sink is not None
        result = sink.deliver(warehouse, MONDAY_7AM)
        assert (result.delivered, result.pending) == (0, 1)
        assert "Invalid request" in (result.problem or "")
        assert sink.deliver(warehouse, MONDAY_7AM).delivered == 1
        assert sink.deliver(warehouse, MONDAY_7AM).delivered == 0
        assert len(double.accepted) == 1


def test_sendgrid_without_an_unsubscribe_group_names_the_setting(tmp_path):
    settings = settings_for(tmp_path)
    with pytest.raises(ConfigError, match="LEADFLOW_DIGEST_UNSUBSCRIBE_GROUP"):
        digest_sink(settings, SendGridSender(KEY, host="http://127.0.0.1:9"))


def test_the_digest_turned_off_sends_nothing(tmp_path):
    settings = settings_for(tmp_path, digest_enabled=False)
    assert digest_sink(settings, OutboxSender(settings.outbox_dir)) is None


def test_two_digest_runs_at_once_send_each_rep_one_digest(postgres_database, tmp_path):
    """On PostgreSQL runs may overlap: a rep's day is claimed by one of them."""
    first, second = connect(postgres_database), connect(postgres_database)
    build_marts(first)
    first.execute("update ops.sales_tasks set status = 'open' where task_id = 't5'")
    settings = settings_for(tmp_path, digest_unsubscribe_group=42)
    with SendGridDouble() as double:
        sinks = [digest_sink(settings, SendGridSender(KEY, host=double.url)) for _ in range(2)]
        assert sinks[0] is not None and sinks[1] is not None
        results = at_once(
            partial(sinks[0].deliver, first, MONDAY_7AM),
            partial(sinks[1].deliver, second, MONDAY_7AM),
        )
        assert len(double.accepted) == 2
    assert sorted(result.delivered for result in results) == [0, 2]
    assert digest_sends(first) == [
        ("rep_01", "2026-12-07", "sent"),
        ("rep_02", "2026-12-07", "sent"),
    ]
    first.close()
    second.close()
