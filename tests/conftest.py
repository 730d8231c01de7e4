"""Fixtures shared by unit and integration tests.

``warehouse`` runs a test on both warehouses LeadFlow supports: an in-memory DuckDB and a
database of its own on a real PostgreSQL server, which the dev dependency pgserver bundles
(no system install; Unix socket only) and one session shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from flows.settings import PostgresTarget
from flows.warehouse import Connection, WarehouseTarget, connect, ensure_schema
from tests.postgres import create_template, fresh_postgres_database


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server for this session. It must start: without it nothing
    about the PostgreSQL warehouse is proven."""
    try:
        import pgserver
    except ImportError as error:
        pytest.fail(f"pgserver is missing ({error}): run `make .venv/.synced-dev`", pytrace=False)
    pgdata = tmp_path_factory.mktemp("postgres") / "pgdata"
    try:
        # As root, pgserver runs the server as a system user of its own (initdb refuses root).
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
    except Exception as error:
        log = pgdata / "log"
        detail = log.read_text()[-2000:] if log.exists() else "no server log was written"
        pytest.fail(
            f"PostgreSQL (pgserver) did not start in {pgdata}: {error}\n{detail}", pytrace=False
        )
    url = server.get_uri()
    create_template(url)
    yield url
    server.cleanup()


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[PostgresTarget]:
    """A fresh database with LeadFlow's raw and ops tables, dropped after the test."""
    with fresh_postgres_database(postgres_server) as target:
        yield target


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A warehouse with LeadFlow's raw and ops tables: in-memory DuckDB, then PostgreSQL."""
    connection: Connection
    if request.param == "duckdb":
        connection = duckdb.connect()
        ensure_schema(connection)
    else:
        connection = connect(request.getfixturevalue("postgres_database"))
    yield connection
    connection.close()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_target(request: pytest.FixtureRequest, tmp_path: Path) -> WarehouseTarget:
    """Where a warehouse is, for code that opens its own connections (flows, settings): a
    DuckDB file not yet created, then a PostgreSQL database with LeadFlow's tables."""
    if request.param == "duckdb":
        return tmp_path / "warehouse.duckdb"
    target: PostgresTarget = request.getfixturevalue("postgres_database")
    return target
