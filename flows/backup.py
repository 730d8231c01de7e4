"""Backup and restore of the DuckDB warehouse (`leadflow backup`, `leadflow restore`).

A backup is a folder ``leadflow-backup-<UTC time>`` holding a checkpointed copy of the
warehouse file and ``backup.json`` (when, which LeadFlow, the last run, what the ledgers hold).
Both commands hold the run lock, so no run writes the file meanwhile.

Restoring an older warehouse must not email anyone twice: the send ledger is the only guard
against a second email (SendGrid has no idempotency key). So a restore carries forward every
ledger row the backup lacks from the warehouse it replaces (emails, digests, task deliveries),
and the replaced file is kept beside it. dbt's record of its last build is forgotten, so the
next run builds every model again from the restored sources.

PostgreSQL warehouses are backed up with the server's own tools (pg_dump, or point-in-time
recovery): docs/operations.md.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from flows import __version__
from flows.dbt_selection import forget_build
from flows.runs import run_lock, utc_now
from flows.settings import ConfigError, Settings
from flows.warehouse import ensure_schema, open_warehouse

MANIFEST = "backup.json"
WAREHOUSE_FILE = "warehouse.duckdb"
# Rows that stand for something done or promised outside the warehouse (an email, a digest,
# a task a rep has, a delivery, an address that must not be emailed), by their key: a restore
# keeps every one the backup lacks.
LEDGERS: dict[str, tuple[str, ...]] = {
    "ops.email_sends": ("message_key",),
    "ops.digest_sends": ("digest_key",),
    "ops.sales_tasks": ("task_id",),
    "ops.task_deliveries": ("sink", "idempotency_key"),
    "ops.email_suppressions": ("email", "reason", "source", "suppressed_at"),
}


class BackupError(ConfigError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class BackupManifest:
    taken_at: str
    leadflow_version: str
    last_run_id: str | None
    last_run_status: str | None
    rows: dict[str, int]


@dataclass(frozen=True)
class RestoreReport:
    restored_from: Path
    replaced_kept_at: Path | None
    # Rows per ledger carried from the replaced warehouse; None: it could not be read.
    carried_forward: dict[str, int] | None


def _duckdb_warehouse(settings: Settings) -> Path:
    if settings.warehouse_url is not None:
        raise BackupError(
            "the warehouse is PostgreSQL (LEADFLOW_WAREHOUSE_URL): back it up with pg_dump or "
            "the server's point-in-time recovery (docs/operations.md)"
        )
    return settings.warehouse_path


def describe(warehouse: Path) -> BackupManifest:
    with open_warehouse(warehouse, read_only=True) as connection:
        last_run = connection.execute(
            "select run_id, status from ops.runs order by started_at desc limit 1"
        ).fetchone()
        rows = {
            table: int(connection.execute(f"select count(*) from {table}").fetchall()[0][0])
            for table in ("raw.leads", "raw.events", *LEDGERS)
        }
    return BackupManifest(
        taken_at=f"{utc_now():%Y-%m-%d %H:%M:%S}",
        leadflow_version=__version__,
        last_run_id=last_run[0] if last_run else None,
        last_run_status=last_run[1] if last_run else None,
        rows=rows,
    )


def backup_warehouse(settings: Settings, destination: Path) -> Path:
    """Copy the warehouse into a new folder under ``destination``; returns the folder."""
    warehouse = _duckdb_warehouse(settings)
    if not warehouse.is_file():
        raise BackupError(f"there is no warehouse at {warehouse} yet; run `leadflow run` first")
    with run_lock(warehouse, wait_seconds=settings.run_wait_seconds):
        with open_warehouse(warehouse) as connection:
            ensure_schema(connection)  # an older file gains today's columns first
            connection.execute("checkpoint")  # everything in the file, nothing in a WAL
        manifest = describe(warehouse)
        folder = destination / f"leadflow-backup-{utc_now():%Y%m%dT%H%M%S}"
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True)
        shutil.copy2(warehouse, partial / WAREHOUSE_FILE)
        (partial / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
        partial.rename(folder)  # a backup folder is whole or absent
    return folder


def read_manifest(backup: Path) -> BackupManifest:
    try:
        values = json.loads((backup / MANIFEST).read_text())
        return BackupManifest(**values)
    except (OSError, ValueError, TypeError) as error:
        raise BackupError(
            f"{backup} is not a LeadFlow backup ({MANIFEST}: {error}); give a folder that "
            "`leadflow backup` wrote"
        ) from None


def restore_warehouse(settings: Settings, backup: Path) -> RestoreReport:
    """Put the backup's warehouse in place, carrying forward the ledger rows it lacks."""
    warehouse = _duckdb_warehouse(settings)
    read_manifest(backup)
    source = backup / WAREHOUSE_FILE
    try:
        with open_warehouse(source, read_only=True) as connection:
            connection.execute("select count(*) from ops.runs").fetchone()
    except (duckdb.Error, OSError) as error:
        raise BackupError(f"{source} cannot be read as a LeadFlow warehouse: {error}") from None
    with run_lock(warehouse, wait_seconds=settings.run_wait_seconds):
        incoming = warehouse.with_name(warehouse.name + ".restoring")
        shutil.copy2(source, incoming)
        carried: dict[str, int] | None = {}
        kept: Path | None = None
        if warehouse.exists():
            carried = _carry_ledgers_forward(warehouse, incoming)
            kept = warehouse.with_name(f"{warehouse.name}.before-restore-{utc_now():%Y%m%dT%H%M%S}")
            warehouse.rename(kept)
        incoming.rename(warehouse)
        forget_build(settings.dbt_state_dir)
    return RestoreReport(restored_from=backup, replaced_kept_at=kept, carried_forward=carried)


def _carry_ledgers_forward(current: Path, restored: Path) -> dict[str, int] | None:
    """Insert into ``restored`` the ledger rows of ``current`` it does not have; per ledger,
    how many. None when ``current`` cannot be read (a damaged file)."""
    carried: dict[str, int] = {}
    with open_warehouse(restored) as connection:
        ensure_schema(connection)
        try:
            connection.execute("attach ? as replaced (read_only)", [str(current)])
        except duckdb.Error:
            return None
        for ledger, key in LEDGERS.items():
            schema, table = ledger.split(".")
            columns = [
                row[0]
                for row in connection.execute(
                    "select column_name from information_schema.columns "
                    "where table_catalog = 'replaced' and table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [schema, table],
                ).fetchall()
            ]
            if not columns:
                continue
            listed = ", ".join(columns)
            matched = " and ".join(
                f"kept.{column} is not distinct from old.{column}" for column in key
            )
            (inserted,) = connection.execute(
                f"""
                insert into {ledger} ({listed})
                select {listed} from replaced.{ledger} as old
                where not exists (select 1 from {ledger} as kept where {matched})
                """
            ).fetchall()[0]
            carried[ledger] = int(inserted)
        connection.execute("detach replaced")
    return carried
