"""The DuckDB warehouse: connections and the tables LeadFlow writes itself.

``raw.*`` holds loaded source rows (append-only, every row with its load and source file);
``ops.*`` holds LeadFlow's operational state: the load ledger, quarantine, gate results,
sales tasks, the email send ledger and the nurture steps published from ``templates/``.
dbt reads both schemas as sources and writes its models to ``main``.

DuckDB allows one writer process, so the pipeline opens the file from one process, one
stage at a time, and closes it before dbt (which opens its own connection) runs.

With ``LEADFLOW_WAREHOUSE_URL`` set, the same tables live in a PostgreSQL database and the
same modules write them through ``flows.postgres.PostgresConnection``; the DDL below uses only
types both share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import duckdb

from flows.settings import PostgresTarget

if TYPE_CHECKING:
    from flows.postgres import PostgresConnection

# A warehouse connection: the DuckDB file's own, or the PostgreSQL one that speaks its dialect.
Connection: TypeAlias = "duckdb.DuckDBPyConnection | PostgresConnection"
# Where the warehouse is (Settings.warehouse): the DuckDB file, or a PostgreSQL database.
WarehouseTarget: TypeAlias = Path | PostgresTarget

RAW_TABLES: dict[str, str] = {
    "leads": """
        source_lead_id varchar not null,
        email varchar,
        first_name varchar,
        last_name varchar,
        company varchar,
        title varchar,
        industry varchar,
        employee_count integer,
        country varchar,
        phone varchar,
        lead_source varchar,
        first_campaign varchar,
        is_do_not_email boolean not null,
        created_at timestamp not null,
        updated_at timestamp not null,
        attributes json""",
    "events": """
        event_id varchar not null,
        email varchar,
        event_type varchar not null,
        occurred_at timestamp not null,
        campaign varchar,
        url varchar,
        message_key varchar,
        source_lead_id varchar""",
    "outcomes": """
        outcome_id varchar not null,
        email varchar,
        outcome varchar not null,
        reason varchar,
        rep_id varchar,
        task_id varchar,
        amount decimal(14, 2),
        occurred_at timestamp not null,
        source_lead_id varchar,
        lead_id varchar,
        note varchar""",
    "reps": """
        rep_id varchar not null,
        name varchar not null,
        email varchar not null,
        region varchar not null,
        segment varchar,
        is_active boolean not null""",
    # SendGrid Event Webhook events as landed by the receiver (flows/email/webhook.py), one row
    # per distinct event: duplicates are dropped at load (flows/email/events.py).
    "email_provider_events": """
        sg_event_id varchar,
        sg_message_id varchar,
        event varchar not null,
        email varchar not null,
        occurred_at timestamp not null,
        url varchar,
        message_key varchar,
        lead_id varchar,
        asm_group_id bigint,
        reason varchar,
        payload json not null""",
}

# Lineage columns on every raw row: which load, which source system, which file and line.
RAW_LINEAGE_COLUMNS = """
        load_id varchar not null,
        source varchar not null,
        source_file varchar not null,
        source_line bigint not null,
        loaded_at timestamp not null"""

OPS_TABLES: dict[str, str] = {
    "loads": """
        load_id varchar primary key,
        run_id varchar,
        entity varchar not null,
        source varchar not null,
        file_path varchar not null,
        file_sha256 varchar not null,
        rows_read bigint not null,
        rows_loaded bigint not null,
        rows_quarantined bigint not null,
        loaded_at timestamp not null,
        mapping varchar,
        unique (file_sha256, mapping)""",
    "load_errors": """
        run_id varchar not null,
        file_path varchar not null,
        file_sha256 varchar not null,
        line bigint,
        problem varchar not null,
        failed_at timestamp not null""",
    "quarantine": """
        load_id varchar,
        run_id varchar,
        stage varchar not null,
        entity varchar not null,
        source_file varchar,
        source_line bigint,
        record_key varchar,
        reason_code varchar not null,
        reason varchar not null,
        record json,
        quarantined_at timestamp not null,
        resolved_at timestamp,
        resolved_by_load_id varchar""",
    "runs": """
        run_id varchar primary key,
        started_at timestamp not null,
        finished_at timestamp,
        status varchar not null,
        summary json""",
    "gate_results": """
        run_id varchar not null,
        asset varchar not null,
        suite varchar not null,
        severity varchar not null,
        success boolean not null,
        evaluated_rows bigint not null,
        failed_expectations json,
        checked_at timestamp not null""",
    "sales_tasks": """
        task_id varchar primary key,
        lead_id varchar not null,
        email varchar,
        owner_rep_id varchar not null,
        owner_email varchar not null,
        reason varchar not null,
        track varchar,
        step integer,
        title varchar not null,
        why_now varchar not null,
        due_at timestamp not null,
        status varchar not null,
        created_at timestamp not null,
        run_id varchar not null,
        phone varchar,
        priority integer,
        closed_at timestamp,
        close_reason varchar,
        assignment_rule varchar,
        opened_at timestamp""",
    "email_sends": """
        message_key varchar primary key,
        lead_id varchar not null,
        email varchar not null,
        track varchar not null,
        step integer not null,
        template varchar not null,
        subject varchar,
        status varchar not null,
        provider varchar not null,
        provider_message_id varchar,
        error varchar,
        owner_rep_id varchar,
        owner_email varchar,
        follow_up_title varchar not null,
        follow_up_due_days integer not null,
        why_now varchar not null,
        created_at timestamp not null,
        sent_at timestamp,
        run_id varchar not null,
        attempts integer not null default 1,
        claimed_at timestamp""",
    # Addresses the email provider will not deliver to (its bounce, spam and unsubscribe
    # lists, as its events report them); checked when a send is claimed.
    "email_suppressions": """
        email varchar not null,
        reason varchar,
        source varchar,
        suppressed_at timestamp,
        lifted_at timestamp""",
    "api_watermarks": """
        source varchar primary key,
        watermark timestamp not null,
        fetched_at timestamp not null""",
    "nurture_steps": """
        track varchar not null,
        step integer not null,
        template varchar not null,
        delay_days integer not null,
        subject varchar not null,
        follow_up_title varchar not null,
        follow_up_due_days integer not null,
        primary key (track, step)""",
    # The task webhook's delivery log (flows/sales/webhook_sink.py): one row per event to
    # post, `pending` until the receiver answered 2xx, then `delivered`; `skipped` when the
    # task ended before its `task.opened` reached the receiver.
    "task_deliveries": """
        sink varchar not null,
        idempotency_key varchar not null,
        task_id varchar not null,
        event varchar not null,
        status varchar not null,
        attempts integer not null,
        last_error varchar,
        http_status integer,
        first_attempt_at timestamp,
        delivered_at timestamp,
        created_at timestamp not null,
        primary key (sink, idempotency_key)""",
    # The reps' daily digest ledger (flows/sales/digest.py): a row per rep and day, written
    # `pending` before the provider call and settled after it, so no rep gets a day twice.
    "digest_sends": """
        digest_key varchar primary key,
        rep_id varchar not null,
        digest_date date not null,
        email varchar not null,
        task_count integer not null,
        status varchar not null,
        provider varchar not null,
        provider_message_id varchar,
        error varchar,
        attempts integer not null,
        created_at timestamp not null,
        sent_at timestamp,
        unique (rep_id, digest_date)""",
}


# Columns added after a table was first released, with the release that added them: existing
# warehouses gain them on the next run (new ones get them from the DDL above).
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "ops.quarantine": ("resolved_at timestamp", "resolved_by_load_id varchar"),  # 0.1.0
    # claimed_at: the wall clock of the claim, which orders claims (created_at is the run's).
    "ops.email_sends": ("attempts integer default 1", "claimed_at timestamp"),  # unreleased
    # phone: 0.1.0; the task lifecycle (unreleased), status one of TASK_STATUSES in
    # flows/sales/tasks.py.
    "ops.sales_tasks": (
        "phone varchar",
        "priority integer",
        "closed_at timestamp",
        "close_reason varchar",
        "assignment_rule varchar",
        "opened_at timestamp",
    ),
    # Events and outcomes that name their lead by its source record id (unreleased).
    "raw.events": ("source_lead_id varchar",),
    # Outcomes also by LeadFlow's lead id, with the rep's note (unreleased).
    "raw.outcomes": ("source_lead_id varchar", "lead_id varchar", "note varchar"),
    # Export columns without a canonical target, kept for fit rules (flows/sources/mapping.py).
    "raw.leads": ("attributes json",),  # unreleased
}

# Columns that became optional: a lead known only by phone has no email (0.1.0); an event or
# outcome may name its lead by source record id instead (unreleased).
RELAXED_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw.leads": ("email",),
    "ops.sales_tasks": ("email",),
    "raw.events": ("email",),
    "raw.outcomes": ("email",),
}


class WarehouseLockedError(Exception):
    """Another process has the warehouse file open (DuckDB allows one)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is open in another process ({holder})")
        self.path = path


def connect(target: WarehouseTarget, *, read_only: bool = False) -> Connection:
    """A connection to the warehouse. On PostgreSQL, read-only is the caller's promise: the
    server takes any number of readers and writers."""
    if isinstance(target, PostgresTarget):
        from flows.postgres import PostgresConnection

        return PostgresConnection(target)
    path = target
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        # DuckDB's words for a file another process holds; anything else is not ours to reword.
        if "Could not set lock" not in str(error):
            raise
        holder = re.search(r"Conflicting lock is held in (.*?)(?:\. See|$)", str(error))
        raise WarehouseLockedError(path, holder[1] if holder else "unknown") from None


@contextmanager
def open_warehouse(target: WarehouseTarget, *, read_only: bool = False) -> Iterator[Connection]:
    """A connection that is always closed, so the next stage (or dbt) can open the file."""
    connection = connect(target, read_only=read_only)
    try:
        yield connection
    finally:
        connection.close()


def _loads_per_mapping(connection: Connection) -> None:
    """ops.loads from before 0.2.0 allowed one load per file content (a unique file_sha256):
    rebuild it unique per (file_sha256, mapping), its rows kept with mapping null. DuckDB
    cannot drop a constraint in place, so the table is copied, in one transaction. (No
    PostgreSQL warehouse predates 0.2.0.)"""
    if not isinstance(connection, duckdb.DuckDBPyConnection):
        return
    old_unique = connection.execute(
        """
        select count(*) from duckdb_constraints()
        where schema_name = 'ops' and table_name = 'loads' and constraint_type = 'UNIQUE'
          and constraint_column_names = ['file_sha256']
        """
    ).fetchall()[0][0]
    if not old_unique:
        return
    connection.begin()
    try:
        connection.execute(f"create table ops.loads_per_mapping ({OPS_TABLES['loads']})")
        connection.execute("insert into ops.loads_per_mapping select *, null from ops.loads")
        connection.execute("drop table ops.loads")
        connection.execute("alter table ops.loads_per_mapping rename to loads")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


@contextmanager
def one_writer_at_a_time(connection: Connection, name: str) -> Iterator[None]:
    """Hold LeadFlow's lock ``name`` for a read-then-write sequence that overlapping runs must
    take in turns: on PostgreSQL an advisory lock across every worker; DuckDB has one writer."""
    if isinstance(connection, duckdb.DuckDBPyConnection):
        yield
        return
    with connection.advisory_lock(name):
        yield


def ensure_schema(connection: Connection) -> None:
    """Create the raw and ops tables if they are missing (safe to call on every run, and on
    PostgreSQL from several workers at once: they take turns)."""
    with one_writer_at_a_time(connection, "schema"):
        _ensure_schema(connection)


def _ensure_schema(connection: Connection) -> None:
    # main: where dbt builds the models (DuckDB's default schema; made here on PostgreSQL so a
    # fresh warehouse resolves names as DuckDB does, flows/postgres.py).
    connection.execute("create schema if not exists main")
    connection.execute("create schema if not exists raw")
    connection.execute("create schema if not exists ops")
    for name, columns in RAW_TABLES.items():
        connection.execute(
            f"create table if not exists raw.{name} ({columns},{RAW_LINEAGE_COLUMNS})"
        )
    for name, columns in OPS_TABLES.items():
        connection.execute(f"create table if not exists ops.{name} ({columns})")
    for table, added in ADDED_COLUMNS.items():
        for column in added:
            connection.execute(f"alter table {table} add column if not exists {column}")
    for table, relaxed in RELAXED_COLUMNS.items():
        for column in relaxed:
            connection.execute(f"alter table {table} alter column {column} drop not null")
    _loads_per_mapping(connection)
