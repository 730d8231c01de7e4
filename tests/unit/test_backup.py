"""Backup and restore of the DuckDB warehouse: a restore never forgets what was done since."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.backup import BackupError, backup_warehouse, read_manifest, restore_warehouse
from flows.cli import app
from flows.settings import Settings
from flows.warehouse import ensure_schema

AT = datetime(2026, 12, 7, 8, 0)
runner = CliRunner()


def add_send(warehouse: Path, key: str) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            """
            insert into ops.email_sends (message_key, lead_id, email, track, step, template,
                status, provider, follow_up_title, follow_up_due_days, why_now, created_at,
                run_id)
            values (?, 'lead-' || ?, ? || '@example.com', 'reengage', 1, 'reengage/1.html',
                'sent', 'outbox', 'Call', 2, 'Nurture email went out', ?, 'run-1')
            """,
            [key, key, key, AT],
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    settings.warehouse_path.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse_path)) as connection:
        ensure_schema(connection)
        connection.execute(
            "insert into ops.runs values ('run-1', ?, ?, 'completed', null)", [AT, AT]
        )
    add_send(settings.warehouse_path, "before")
    return settings


def test_a_backup_is_a_whole_folder_with_what_it_holds(settings, tmp_path):
    folder = backup_warehouse(settings, tmp_path / "backups")
    assert folder.parent == tmp_path / "backups"
    assert sorted(path.name for path in folder.iterdir()) == ["backup.json", "warehouse.duckdb"]
    manifest = read_manifest(folder)
    assert (manifest.last_run_id, manifest.last_run_status) == ("run-1", "completed")
    assert manifest.rows["ops.email_sends"] == 1
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as copy:
        assert copy.execute("select message_key from ops.email_sends").fetchall() == [("before",)]


def test_a_restore_keeps_the_sends_tasks_and_opt_outs_made_since_the_backup(settings, tmp_path):
    folder = backup_warehouse(settings, tmp_path / "backups")
    add_send(settings.warehouse_path, "after")
    with duckdb.connect(str(settings.warehouse_path)) as connection:
        connection.execute(
            "insert into ops.email_suppressions values ('gone@example.com', 'unsubscribe', "
            "'sendgrid', ?, null)",
            [AT],
        )
        connection.execute("insert into raw.reps values ('rep_9', 'Late Rep', 'r@x.com', "
                           "'EMEA', null, true, 'load-9', 'crm', 'reps.csv', 2, ?)", [AT])  # fmt: skip
    settings.dbt_state_dir.mkdir(parents=True)
    (settings.dbt_state_dir / "manifest.json").write_text("{}")

    report = restore_warehouse(settings, folder)

    assert report.carried_forward == {
        "ops.email_sends": 1,
        "ops.digest_sends": 0,
        "ops.sales_tasks": 0,
        "ops.task_deliveries": 0,
        "ops.email_suppressions": 1,
    }
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        assert connection.execute(
            "select message_key from ops.email_sends order by 1"
        ).fetchall() == [("after",), ("before",)]
        assert connection.execute("select email from ops.email_suppressions").fetchall() == [
            ("gone@example.com",)
        ]
        # Source rows come back from the inbox on the next run, not from the replaced file.
        assert connection.execute("select count(*) from raw.reps").fetchone() == (0,)
    assert report.replaced_kept_at is not None and report.replaced_kept_at.is_file()
    assert not settings.dbt_state_dir.exists(), "the next run builds every model again"


def test_a_restore_over_a_damaged_warehouse_says_nothing_could_be_carried(settings, tmp_path):
    folder = backup_warehouse(settings, tmp_path / "backups")
    settings.warehouse_path.write_bytes(b"not a DuckDB file")
    report = restore_warehouse(settings, folder)
    assert report.carried_forward is None
    assert report.replaced_kept_at is not None
    assert report.replaced_kept_at.read_bytes() == b"not a DuckDB file"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        assert connection.execute("select count(*) from ops.email_sends").fetchone() == (1,)


def test_a_folder_that_is_not_a_backup_is_refused_and_nothing_changes(settings, tmp_path):
    before = settings.warehouse_path.read_bytes()
    with pytest.raises(BackupError, match=r"not a LeadFlow backup .*`leadflow backup`"):
        restore_warehouse(settings, tmp_path)
    assert settings.warehouse_path.read_bytes() == before


def test_a_postgresql_warehouse_is_backed_up_by_the_servers_tools(tmp_path):
    settings = Settings(
        data_dir=tmp_path, warehouse_url="postgresql://leadflow:secret@db.internal/leadflow"
    )
    with pytest.raises(BackupError, match="pg_dump") as raised:
        backup_warehouse(settings, tmp_path)
    assert "secret" not in str(raised.value)


def test_the_commands_back_up_and_restore(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(settings.data_root))
    backed_up = runner.invoke(app, ["backup", "--to", str(tmp_path / "b")], terminal_width=200)
    assert backed_up.exit_code == 0, backed_up.output
    (folder,) = (tmp_path / "b").iterdir()
    assert f"Backed up to {folder}" in backed_up.output
    assert json.loads((folder / "backup.json").read_text())["last_run_id"] == "run-1"
    add_send(settings.warehouse_path, "after")
    restored = runner.invoke(app, ["restore", str(folder)], terminal_width=200)
    assert restored.exit_code == 0, restored.output
    assert "1 ops.email_sends" in restored.output
    refused = runner.invoke(app, ["restore", str(tmp_path)])
    assert refused.exit_code == 1
    assert "Traceback" not in refused.output
