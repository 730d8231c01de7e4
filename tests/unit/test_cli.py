"""The CLI: every command has help, every documented command exists, user errors are readable."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from flows.cli import app
from flows.settings import PROJECT_ROOT

runner = CliRunner()
ROOT = typer.main.get_command(app)
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def commands(group: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for name, command in group.commands.items():
        found[(*prefix, name)] = command
        if hasattr(command, "commands"):  # a command group (typer vendors its own click)
            found |= commands(command, (*prefix, name))
    return found


ALL_COMMANDS = commands(ROOT)


@pytest.mark.parametrize("path", sorted(ALL_COMMANDS), ids=" ".join)
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert ALL_COMMANDS[path].help, f"leadflow {' '.join(path)} has no help text"


def documented_commands() -> set[tuple[str, ...]]:
    mentioned = set()
    for document in DOCUMENTS:
        for match in re.finditer(r"leadflow((?: [a-z][a-z-]*)+)", document.read_text()):
            words = tuple(match[1].split())
            mentioned.add(words[:2] if words[:1] == ("templates",) else words[:1])
    return mentioned


def test_every_documented_command_exists():
    documented = documented_commands()
    assert {("run",), ("tasks",), ("quarantine",)} <= documented
    missing = documented - set(ALL_COMMANDS)
    assert not missing, f"documented but not implemented: {missing}"


def test_a_configuration_mistake_names_the_setting_without_a_trace(monkeypatch):
    monkeypatch.setenv("LEADFLOW_DBT_THREADS", "lots")
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 2
    assert "LEADFLOW_DBT_THREADS" in result.output
    assert "Traceback" not in result.output


def test_serve_names_a_configured_server_that_does_not_answer(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "no Prefect server answers at PREFECT_API_URL=http://127.0.0.1:9/api" in result.output
    assert "Traceback" not in result.output


def test_serve_names_a_missing_deployments_file(tmp_path):
    result = runner.invoke(app, ["serve", "--file", str(tmp_path / "deployments.yaml")])
    assert result.exit_code == 2
    assert "deployments.yaml does not exist" in " ".join(result.output.split())


def test_templates_preview_all_writes_a_gallery(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["templates", "preview", "--all", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert f"60 emails: open {tmp_path / 'g' / 'index.html'}" in " ".join(result.output.split())
    assert (tmp_path / "g/long-company-name/reengage-03.html").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--all"], "--all needs --out DIR"),
        (["--all", "tracks/warm_up/01-welcome.html", "--out", "x"], "leave out TEMPLATE"),
        ([], "give a TEMPLATE"),
    ],
)
def test_templates_preview_explains_a_wrong_call(monkeypatch, tmp_path, arguments, message):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["templates", "preview", *arguments])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_templates_lint_asks_for_unsubscribe_groups_only_with_sendgrid(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    assert runner.invoke(app, ["templates", "lint"]).exit_code == 0
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.not-a-real-key")
    result = runner.invoke(app, ["templates", "lint"])
    assert result.exit_code == 1
    assert result.output.count("no `unsubscribe_group`") == 5
    assert "SG.not-a-real-key" not in result.output


@pytest.fixture
def recording_sender(monkeypatch, tmp_path):
    from tests.unit.email.test_proof import RecordingSender

    sender = RecordingSender()
    monkeypatch.setattr("flows.email.providers.email_sender", lambda settings: sender)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    return sender


def test_templates_send_test_sends_one_marked_email_outside_the_ledger(recording_sender, tmp_path):
    result = runner.invoke(
        app,
        ["templates", "send-test", "tracks/education/01-cost-of-slow-follow-up.html",
         "--to", "qa@leadflow.example"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [batch] = recording_sender.batches
    assert batch.is_test and batch.categories == ("test",)
    assert batch.recipients[0].subject.startswith("[TEST] ")
    assert batch.recipients[0].to_email == "qa@leadflow.example"
    assert "Hi Priya" in batch.html  # the sample lead
    assert "not recorded in the send ledger" in " ".join(result.output.split())
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_templates_send_test_with_a_lead_uses_its_values_read_only(recording_sender, tmp_path):
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        connection.execute(
            "create table dim_leads as select 'lead-7' as lead_id, 'ana@x.example' as email, "
            "'Ana' as first_name, null as company, 'Sam Lee' as owner_name"
        )
    result = runner.invoke(
        app,
        ["templates", "send-test", "tracks/warm_up/01-welcome.html", "--to", "qa@x.example",
         "--lead", "lead-7"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [batch] = recording_sender.batches
    assert batch.recipients[0].lead_id == "lead-7"
    assert "Hi Ana," in batch.html and "your team" in batch.html and "Sam Lee" in batch.html
    missing = runner.invoke(
        app,
        ["templates", "send-test", "tracks/warm_up/01-welcome.html", "--to", "qa@x.example",
         "--lead", "lead-8"],
    )  # fmt: skip
    assert missing.exit_code == 1
    assert "--lead lead-8: no such lead" in " ".join(missing.output.split())


def test_templates_send_test_without_a_warehouse_explains(recording_sender):
    result = runner.invoke(
        app,
        ["templates", "send-test", "tracks/warm_up/01-welcome.html", "--to", "qa@x.example",
         "--lead", "lead-7"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no warehouse" in result.output and "leadflow run" in result.output
    assert recording_sender.batches == []
