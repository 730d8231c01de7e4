"""The CLI: every command has help, every documented command exists, user errors are readable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer.main
from typer.testing import CliRunner

from flows.cli import app, demo_clock
from flows.settings import PROJECT_ROOT
from flows.warehouse import ensure_schema

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
    # Rich wraps the message at the console's width, the path anywhere in it.
    assert "deployments.yamldoesnotexist" in "".join(result.output.split())


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


# What typer would print for a value's Python type; the help names values in words.
PYTHON_TYPE_LABELS = re.compile(r"<(bool|str|int|float|path|datetime)\b|list\[|Path\]|NoneType")


@pytest.mark.parametrize("path", [(), *sorted(ALL_COMMANDS)], ids=lambda path: " ".join(path))
def test_help_names_values_in_words_not_python_types(path):
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not PYTHON_TYPE_LABELS.search(result.output), result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"leadflow {metadata.version('leadflow')}"


def test_a_misspelt_variable_is_named_with_the_likely_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIRR", str(tmp_path))
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 2
    assert "LEADFLOW_DATA_DIRR is not a LeadFlow setting: did you mean LEADFLOW_DATA_DIR?" in (
        " ".join(result.output.split())
    )


def test_variables_dbt_reads_are_known(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEADFLOW_PG_HOST", "db.example")  # read by dbt_project/profiles.yml
    assert runner.invoke(app, ["tasks"]).exit_code == 0


def test_a_configured_mappings_folder_that_does_not_exist_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEADFLOW_MAPPINGS_DIR", str(tmp_path / "mapings"))
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 2
    assert f"LEADFLOW_MAPPINGS_DIR: {tmp_path / 'mapings'} is not a folder" in one_line(result)


def one_line(result: Any) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", [["run"], ["tasks"], ["demo", "--leads", "10"]])
def test_a_data_folder_that_is_a_file_fails_at_once_with_its_path(monkeypatch, tmp_path, command):
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(not_a_folder / "leadflow"))
    started = time.monotonic()
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert f"LEADFLOW_DATA_DIR: {not_a_folder} is a file, not a folder" in one_line(result)
    assert time.monotonic() - started < 10  # no Prefect server is started first
    assert "Traceback" not in result.output


def test_an_unwritable_data_folder_fails_with_its_path(monkeypatch, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(locked / "data"))
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)  # root may write
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert f"LEADFLOW_DATA_DIR: {locked} is not writable" in one_line(result)


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


def add_tasks(warehouse: Path, count: int) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        ensure_schema(connection)
        connection.execute(
            """
            insert into ops.sales_tasks (task_id, lead_id, owner_rep_id, owner_email, reason,
                title, why_now, due_at, status, created_at, run_id)
            select 't' || i, 'l' || i, 'rep-1', 'rep@example.com', 'mql', 'Call', 'why',
                   timestamp '2026-12-07' + to_hours(i), 'open', timestamp '2026-12-06', 'r'
            from range(?) as numbers(i)
            """,
            [count],
        )


def test_tasks_say_how_many_there_are_in_all(data_dir):
    add_tasks(data_dir / "warehouse.duckdb", 1234)
    result = runner.invoke(app, ["tasks", "--limit", "50"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Showing 50 of 1,234 open tasks; --limit to see more." in result.output
    result = runner.invoke(app, ["tasks", "--limit", "2000"], terminal_width=200)
    assert "All 1,234 open tasks shown." in result.output


def test_tasks_list_by_priority_and_name_the_reps_over_capacity(data_dir):
    add_tasks(data_dir / "warehouse.duckdb", 3)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        connection.execute("update ops.sales_tasks set priority = 10, title = 'Later'")
        connection.execute(
            "update ops.sales_tasks set priority = 2050, title = 'First' where task_id = 't2'"
        )
        connection.execute("update ops.sales_tasks set status = 'queued' where task_id = 't0'")
    result = runner.invoke(app, ["tasks"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Over capacity, waiting for room: rep-1 1 queued" in result.output
    assert result.output.index("First") < result.output.index("Later")
    assert "All 2 open tasks shown." in result.output


def test_quarantine_says_how_many_rows_there_are_in_all(data_dir):
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        ensure_schema(connection)
        connection.execute(
            """
            insert into ops.quarantine (stage, entity, source_file, source_line, reason_code,
                reason, quarantined_at)
            select 'extract', 'leads', 'leads__crm.csv', i + 2,
                   if(i % 3 = 0, 'malformed_email', 'invalid_timestamp'), 'bad', now()::timestamp
            from range(1500) as numbers(i)
            """
        )
    result = runner.invoke(app, ["quarantine", "--limit", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "1,500 open rows in 2 groups; the examples are each group's latest 2" in result.output


# Another process that has the warehouse: a run holding LeadFlow's lock, or DuckDB itself.
HOLD_RUN_LOCK = """
import sys, time
from datetime import datetime
from pathlib import Path
from flows.runs import announce_run, run_lock
warehouse = Path(sys.argv[1])
with run_lock(warehouse, wait_seconds=0):
    announce_run(warehouse, "20261207T010000-abc123", datetime(2026, 12, 7, 1, 0))
    print("holding", flush=True)
    time.sleep(60)
"""
HOLD_DUCKDB = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("holder", [HOLD_RUN_LOCK, HOLD_DUCKDB], ids=["run", "duckdb"])
@pytest.mark.parametrize(
    "command",
    [["tasks"], ["quarantine"], ["quarantine", "export", "--out", "fixes"], ["report", "sla"]],
)
def test_read_only_commands_during_a_run_say_the_warehouse_is_busy(data_dir, holder, command):
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(data_dir / "warehouse.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "holding"
        result = runner.invoke(app, command)
    finally:
        process.kill()
        process.wait()
    assert result.exit_code == 4, result.output
    assert "the warehouse is busy with " in one_line(result)
    assert "try again when it finishes" in one_line(result)
    if holder is HOLD_RUN_LOCK:
        assert "run 20261207T010000-abc123 (started at 2026-12-07 01:00:00 UTC" in (
            one_line(result)
        )
    assert "Traceback" not in result.output


def test_a_second_demo_reuses_the_first_ones_clock(tmp_path):
    first = demo_clock(tmp_path, leads=300, seed=42, today=datetime(2026, 12, 7))
    again = demo_clock(tmp_path, leads=300, seed=42, today=datetime(2026, 12, 9))
    assert first == again == datetime(2026, 12, 7)
    other_seed = demo_clock(tmp_path, leads=300, seed=7, today=datetime(2026, 12, 9))
    assert other_seed == datetime(2026, 12, 9)


def test_a_run_whose_emails_could_not_all_go_out_exits_5_and_says_why(monkeypatch, tmp_path):
    import flows.pipeline
    from flows.report import RunSummary

    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    failed = RunSummary(
        run_id="r1", as_of="2026-11-22 09:00:00", emails_due=3, emails_failed=2,
        emails_not_rendered=1, email_errors=["400 Bad Request: invalid reply_to"],
    )  # fmt: skip
    monkeypatch.setattr(flows.pipeline, "lead_pipeline", lambda as_of=None: failed)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 5
    assert "2 failed, 1 could not be rendered" in result.output
    assert "400 Bad Request: invalid reply_to" in result.output


def test_scoring_fit_on_an_unbuilt_warehouse_says_what_to_run_and_writes_nothing(data_dir):
    result = runner.invoke(app, ["scoring", "fit"], terminal_width=200)
    assert result.exit_code == 1
    assert "leadflow run" in result.output and "Traceback" not in result.output
    assert not (data_dir / "scoring").exists()
