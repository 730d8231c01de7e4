from __future__ import annotations

import json

from rich.console import Console

from flows.report import GateSummary, RunSummary


def summary(**changes) -> RunSummary:
    values = {
        "run_id": "r1",
        "as_of": "2026-11-22 09:00:00",
        "files_loaded": 5,
        "rows_loaded": 900,
        "leads_loaded": 120,
        "rows_quarantined": 3,
        "quarantine_reasons": {"malformed_email": 2, "duplicate_key": 1},
        "stage_counts": {"mql": 7, "new": 30, "zombie": 1},
        "handed_off": 7,
        "tasks_created": 19,
        "emails_due": 12,
        "emails_sent": 12,
    }
    return RunSummary(**(values | changes))


def test_json_has_the_keys_operators_script_against():
    data = json.loads(json.dumps(summary().to_dict()))
    for key in (
        "leads_loaded",
        "rows_quarantined",
        "stage_counts",
        "gate",
        "handed_off",
        "tasks_created",
        "emails_sent",
    ):
        assert key in data
    assert data["gate"]["passed"] is True


def test_stages_follow_the_lifecycle_then_unknown_ones():
    stages = [stage for stage, _ in summary().ordered_stages()]
    assert stages[:3] == ["new", "engaged", "mql"]
    assert stages[-1] == "zombie"


def test_markdown_and_terminal_say_what_the_gate_blocked():
    blocked = summary(
        gate=GateSummary(
            passed=False, blocked=["handoff_queue"], explanation="3 rows have no owner."
        )
    )
    markdown = blocked.to_markdown()
    assert "BLOCKED (handoff_queue)" in markdown and "3 rows have no owner." in markdown
    console = Console(record=True, width=120)
    console.print(blocked.to_rich())
    text = console.export_text()
    assert "blocked: handoff_queue" in text
    assert "malformed_email 2" in text
    assert "12 of 12 due emails sent" in text


def test_runs_killed_earlier_are_reported_once_marked_crashed():
    assert summary().crashed_note() == ""
    console = Console(record=True, width=120)
    console.print(summary(runs_marked_crashed=2).to_rich())
    assert "2 earlier runs never finished" in console.export_text()
    assert "marked crashed in ops.runs" in summary(runs_marked_crashed=1).to_markdown()


def test_emails_that_could_not_go_out_are_counted_with_their_reasons():
    clean = summary(emails_deferred=4, emails_suppressed=1)
    assert not clean.could_not_send  # held back on purpose: nothing went wrong
    failed = summary(
        emails_failed=2,
        emails_not_rendered=1,
        emails_gave_up=3,
        email_errors=["400 Bad Request: invalid reply_to"],
    )
    assert failed.could_not_send
    assert failed.nurture_problems() == [
        "2 failed",
        "1 could not be rendered",
        "3 given up after repeated failures",
    ]
    markdown = failed.to_markdown()
    assert "2 failed, 1 could not be rendered" in markdown
    assert "- 400 Bad Request: invalid reply_to" in markdown
    console = Console(record=True, width=160)
    console.print(failed.to_rich())
    assert "Email: 400 Bad Request: invalid reply_to" in console.export_text()
