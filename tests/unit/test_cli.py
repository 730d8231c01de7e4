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


def test_serve_without_a_server_explains_what_to_start(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "prefect server start" in result.output


def test_a_run_whose_emails_could_not_all_go_out_exits_4_and_says_why(monkeypatch, tmp_path):
    import flows.pipeline
    from flows.report import RunSummary

    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    failed = RunSummary(
        run_id="r1", as_of="2026-11-22 09:00:00", emails_due=3, emails_failed=2,
        emails_not_rendered=1, email_errors=["400 Bad Request: invalid reply_to"],
    )  # fmt: skip
    monkeypatch.setattr(flows.pipeline, "lead_pipeline", lambda as_of=None: failed)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 4
    assert "2 failed, 1 could not be rendered" in result.output
    assert "400 Bad Request: invalid reply_to" in result.output
