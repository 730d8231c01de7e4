"""The preflight: a run that cannot send says so, naming the setting or file, before any claim."""

from __future__ import annotations

import pytest

from flows.email.preflight import (
    SendingConfigError,
    check_sending,
    from_address_problems,
    require_sending_ready,
    unsubscribe_url_problems,
)
from flows.email.render import TemplateRenderer
from flows.email.templates import load_tracks
from flows.settings import ConfigError, Settings


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "email_from",
    ["LeadFlow <hello@leadflow.example>", "hello@leadflow.example", "Ünï Côrp <a@b.example>"],
)
def test_a_valid_from_address_passes(email_from):
    assert from_address_problems(email_from) == []


@pytest.mark.parametrize(
    "email_from", ["LeadFlow", "LeadFlow <hello>", "a@b.example\nBcc: x@y.example", ""]
)
def test_an_invalid_from_address_names_the_setting_and_the_fix(email_from):
    [problem] = from_address_problems(email_from)
    assert problem.where == "LEADFLOW_EMAIL_FROM"
    assert "Name <address@your-domain>" in problem.message


def test_the_unsubscribe_url_may_use_message_key_only():
    assert unsubscribe_url_problems("https://x.example/u?key={message_key}") == []
    [problem] = unsubscribe_url_problems("https://x.example/u?lead={lead_id}&k={message_key}")
    assert str(problem).startswith("LEADFLOW_UNSUBSCRIBE_URL: ")
    assert "uses {lead_id}: the only placeholder is {message_key}" in problem.message


@pytest.mark.parametrize(
    "url", ["ftp://x.example/{message_key}", "/unsubscribe/{message_key}", "mailto:a@b.example"]
)
def test_the_unsubscribe_url_must_be_http(url):
    [problem] = unsubscribe_url_problems(url)
    assert "is not an http(s) address" in problem.message


def test_an_unbalanced_brace_in_the_unsubscribe_url_is_explained():
    [problem] = unsubscribe_url_problems("https://x.example/u?key={message_key")
    assert "is not a valid pattern" in problem.message


def test_the_shipped_configuration_is_ready(shipped_templates):
    config = settings()
    renderer = TemplateRenderer(shipped_templates)
    assert check_sending(config, load_tracks(shipped_templates), renderer) == []


def test_every_problem_is_listed_at_once(templates_copy, edit):
    tracks = load_tracks(templates_copy)
    edit(
        templates_copy / "tracks/warm_up/02-speed-to-lead.html",
        "<p>Hi {{ lead.first_name }},</p>",
        "<p>Hi {{ lead.nickname }},</p>",
    )
    (templates_copy / "partials/_signature.html").unlink()
    config = settings(
        email_from="nobody",
        unsubscribe_url="https://x.example/{email}",
        sender_address=" ",
    )
    with pytest.raises(SendingConfigError) as raised:
        require_sending_ready(config, tracks, TemplateRenderer(templates_copy))
    wheres = [problem.where for problem in raised.value.problems]
    assert wheres[:3] == [
        "LEADFLOW_EMAIL_FROM",
        "LEADFLOW_UNSUBSCRIBE_URL",
        "LEADFLOW_SENDER_ADDRESS",
    ]
    # Every one of the 15 emails includes the signature; one of them also has a typo.
    assert sum(where.startswith("templates/tracks/") for where in wheres) == 15
    assert "templates/tracks/warm_up/02-speed-to-lead.html:11" in wheres
    assert isinstance(raised.value, ConfigError)
    assert "no email was claimed or sent" in str(raised.value)


def test_a_missing_required_partial_is_named(templates_copy):
    (templates_copy / "partials/_header.html").unlink()
    problems = check_sending(
        settings(), load_tracks(templates_copy), TemplateRenderer(templates_copy)
    )
    assert problems[0].where == "templates/partials/_header.html"


def test_the_nurture_step_fails_with_the_preflight_before_claiming_anything(
    tmp_path, monkeypatch, warehouse_target
):
    from datetime import datetime

    from flows.nurture import send_due_steps
    from flows.settings import PostgresTarget
    from flows.warehouse import ensure_schema, open_warehouse

    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    if isinstance(warehouse_target, PostgresTarget):
        monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", warehouse_target.url)
    monkeypatch.setenv("LEADFLOW_EMAIL_FROM", "LeadFlow <hello at leadflow>")
    with open_warehouse(warehouse_target) as connection:
        ensure_schema(connection)
        connection.execute(
            "insert into ops.email_sends (message_key, lead_id, email, track, step, template, "
            "status, provider, follow_up_title, follow_up_due_days, why_now, created_at, run_id) "
            "values ('earlier', 'lead-1', 'a@b.example', 'warm_up', 1, 't', 'pending', 'outbox', "
            "'Call', 2, '', now()::timestamp, 'run-0')"
        )
    with pytest.raises(SendingConfigError, match="LEADFLOW_EMAIL_FROM"):
        send_due_steps.fn("run-1", datetime(2026, 11, 23, 15))
    with open_warehouse(warehouse_target, read_only=True) as connection:
        # Not even the pending row of an earlier run was touched.
        assert connection.execute("select message_key, status from ops.email_sends").fetchall() == [
            ("earlier", "pending")
        ]
