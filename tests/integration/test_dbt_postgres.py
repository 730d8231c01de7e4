"""The dbt project on PostgreSQL: `dbt build --target postgres` passes, and builds every model,
seed and snapshot row for row as DuckDB does from the same sources.

The sources are the raw and ops tables of a real pipeline run on generated data, copied into an
empty database on the session's PostgreSQL server (tests/conftest.py: the one the dev
dependency pgserver ships inside its wheel; no system install, Unix socket only). The project
is built twice on each warehouse, the second time after a later load re-delivers some events,
so the incremental event model and the snapshot take both paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
import yaml
from dbt.cli.main import dbtRunnerResult
from psycopg2.extensions import parse_dsn

from flows.demo.generate import generate_dataset
from flows.pipeline import lead_pipeline
from flows.warehouse import OPS_TABLES, RAW_LINEAGE_COLUMNS, RAW_TABLES, ensure_schema
from tests.integration.dbt_invocation import DBT_PROJECT, build_failures, invoke_dbt_build
from tests.postgres import fresh_postgres_database

pytestmark = pytest.mark.slow

GENERATED_AT = datetime(2026, 11, 1)
RUN_AT = datetime(2026, 11, 1, 8, 30)
NEXT_RUN_AT = datetime(2026, 11, 1, 9, 30)
REDELIVERY_LOAD = "load_redelivery"


def source_tables() -> dict[str, str]:
    """The dbt sources (qualified name -> column DDL). flows/warehouse.py's DDL uses only
    types Postgres shares (varchar, integer, bigint, boolean, timestamp, decimal, json)."""
    declared = yaml.safe_load((DBT_PROJECT / "models" / "staging" / "_sources.yml").read_text())
    ddl = {
        f"raw.{name}": f"{columns},{RAW_LINEAGE_COLUMNS}" for name, columns in RAW_TABLES.items()
    }
    ddl |= {f"ops.{name}": columns for name, columns in OPS_TABLES.items()}
    return {
        f"{source['schema']}.{table['name']}": ddl[f"{source['schema']}.{table['name']}"]
        for source in declared["sources"]
        for table in source["tables"]
    }


@dataclass(frozen=True)
class Postgres:
    socket_dir: Path
    port: int
    user: str
    database: str
    uri: str


@pytest.fixture(scope="module")
def postgres(postgres_server: str) -> Iterator[Postgres]:
    """An empty database on the session's PostgreSQL server (tests/conftest.py)."""
    with fresh_postgres_database(postgres_server, template="template0") as database:
        parts = parse_dsn(database.url)
        yield Postgres(
            socket_dir=Path(parts["host"]),
            port=int(parts.get("port", 5432)),
            user=parts["user"],
            database=parts["dbname"],
            uri=database.url,
        )


@pytest.fixture(scope="module")
def pipeline_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw and ops tables as a real run leaves them: loaded leads, events, outcomes and reps,
    quarantined rows, hand-off tasks, sent emails and the published nurture steps."""
    data = tmp_path_factory.mktemp("pipeline") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADFLOW_DATA_DIR", str(data))
        generate_dataset(data / "inbox", leads=500, seed=11, as_of=GENERATED_AT)
        lead_pipeline(as_of=RUN_AT)
    return data / "warehouse.duckdb"


def copy_to_postgres(
    warehouse: Path, postgres: Postgres, work_dir: Path, selections: dict[str, str]
) -> None:
    """Copy rows (table -> where clause) from DuckDB into Postgres: DuckDB writes CSV
    (null unquoted, '' quoted, as Postgres reads it) and Postgres reads it with COPY."""
    with (
        duckdb.connect(str(warehouse), read_only=True) as source,
        closing(psycopg2.connect(postgres.uri)) as target,
        target.cursor() as cursor,
    ):
        for table, where in selections.items():
            columns = ", ".join(
                column[0] for column in source.execute(f"select * from {table} limit 0").description
            )
            csv_path = work_dir / f"{table}.csv"
            source.execute(
                f"copy (select {columns} from {table} where {where}) to '{csv_path}' (header)"
            )
            with csv_path.open() as rows:
                cursor.copy_expert(
                    f"copy {table} ({columns}) from stdin with (format csv, header true)", rows
                )
        target.commit()


def create_sources_in_postgres(postgres: Postgres) -> None:
    with closing(psycopg2.connect(postgres.uri)) as connection, connection.cursor() as cursor:
        for table, columns in source_tables().items():
            cursor.execute(f"create schema if not exists {table.split('.')[0]}")
            cursor.execute(f"create table {table} ({columns})")
        connection.commit()


def redeliver_events(warehouse: Path) -> None:
    """A later load sends some events again, changed: the incremental model must replace them."""
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            f"""insert into raw.events by name
                select * replace (
                    '{REDELIVERY_LOAD}' as load_id,
                    'redelivered' as campaign,
                    loaded_at + interval 1 hour as loaded_at
                )
                from raw.events
                where source_line % 10 = 0"""
        )


def dbt_build(target: str, work_dir: Path, as_of: datetime) -> dbtRunnerResult:
    return invoke_dbt_build(work_dir, as_of, "--target", target)


@dataclass(frozen=True)
class Builds:
    postgres: list[dbtRunnerResult]
    duckdb: list[dbtRunnerResult]
    duckdb_warehouse: Path


@pytest.fixture(scope="module")
def builds(
    pipeline_warehouse: Path, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Builds:
    """Both warehouses start from the pipeline's sources alone (no models yet), are built at
    RUN_AT, receive the same re-delivered events, and are built again at NEXT_RUN_AT."""
    work_dir = tmp_path_factory.mktemp("dbt-postgres")
    warehouse = work_dir / "sources.duckdb"
    with duckdb.connect(str(warehouse)) as connection:
        ensure_schema(connection)
        connection.execute(f"attach '{pipeline_warehouse}' as pipeline (read_only)")
        for table in source_tables():
            connection.execute(f"insert into {table} by name select * from pipeline.{table}")
    create_sources_in_postgres(postgres)
    copy_to_postgres(warehouse, postgres, work_dir, dict.fromkeys(source_tables(), "true"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        patch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
        patch.setenv("LEADFLOW_PG_HOST", str(postgres.socket_dir))
        patch.setenv("LEADFLOW_PG_PORT", str(postgres.port))
        patch.setenv("LEADFLOW_PG_USER", postgres.user)
        patch.setenv("LEADFLOW_PG_DATABASE", postgres.database)
        on_postgres = [dbt_build("postgres", work_dir / "postgres-1", RUN_AT)]
        on_duckdb = [dbt_build("local", work_dir / "duckdb-1", RUN_AT)]
        redeliver_events(warehouse)
        copy_to_postgres(
            warehouse, postgres, work_dir, {"raw.events": f"load_id = '{REDELIVERY_LOAD}'"}
        )
        on_postgres.append(dbt_build("postgres", work_dir / "postgres-2", NEXT_RUN_AT))
        on_duckdb.append(dbt_build("local", work_dir / "duckdb-2", NEXT_RUN_AT))
    return Builds(on_postgres, on_duckdb, warehouse)


def test_dbt_build_passes_on_postgres(builds):
    for number, result in enumerate(builds.postgres, start=1):
        assert not build_failures(result), f"dbt build #{number} on Postgres failed:\n" + "\n".join(
            build_failures(result)
        )
    resource_types = {
        str(node.node.resource_type) for result in builds.postgres for node in result.result
    }
    assert {"seed", "model", "snapshot", "test", "unit_test"} <= resource_types


# When the dbt invocation that wrote a row started: bookkeeping that differs between any two
# builds, whatever the database.
INVOCATION_TIME_COLUMNS = {"scored_at", "accrued_at", "built_at"}


def comparable(value: Any) -> Any:
    """Numbers as the same float (to 9 places: power() may differ in the last bits)."""
    if isinstance(value, float | Decimal):
        number = float(value)
        return number if math.isnan(number) else round(number, 9)
    return value


def rows_of(cursor: Any, sql: str) -> list[tuple[Any, ...]]:
    cursor.execute(sql)
    return sorted(
        (tuple(comparable(value) for value in row) for row in cursor.fetchall()), key=repr
    )


def test_postgres_builds_the_same_rows_as_duckdb(builds, postgres):
    for number, result in enumerate(builds.duckdb, start=1):
        assert not build_failures(result), f"dbt build #{number} on DuckDB failed:\n" + "\n".join(
            build_failures(result)
        )
    differences = {}
    with (
        duckdb.connect(str(builds.duckdb_warehouse), read_only=True) as duck,
        closing(psycopg2.connect(postgres.uri)) as pg,
        pg.cursor() as pg_cursor,
    ):
        relations = [
            name for (name,) in duck.execute(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        ]  # fmt: skip
        assert len(relations) > 30
        for relation in relations:
            columns = [
                column[0]
                for column in duck.execute(f"select * from main.{relation} limit 0").description
                if column[0] not in INVOCATION_TIME_COLUMNS
            ]
            sql = f"select {', '.join(columns)} from main.{relation}"
            on_duckdb, on_postgres = rows_of(duck.cursor(), sql), rows_of(pg_cursor, sql)
            if on_duckdb != on_postgres:
                only_duckdb = sorted(set(on_duckdb) - set(on_postgres), key=repr)[:3]
                only_postgres = sorted(set(on_postgres) - set(on_duckdb), key=repr)[:3]
                differences[relation] = {"duckdb": only_duckdb, "postgres": only_postgres}
        redelivered = duck.execute(
            "select count(*) from main.int_lead_events_deduplicated where campaign = 'redelivered'"
        ).fetchone()
    assert differences == {}
    assert redelivered is not None and redelivered[0] > 0
