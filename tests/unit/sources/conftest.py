from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from flows.sources.inbox import parsing_connection
from flows.warehouse import Connection


@pytest.fixture
def parser(warehouse: Connection) -> Iterator[duckdb.DuckDBPyConnection]:
    """The DuckDB connection files are staged on for ``warehouse`` (itself, on DuckDB)."""
    with parsing_connection(warehouse) as connection:
        yield connection


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_setting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test of the extract flow, which reads its settings, on both warehouses: the
    DuckDB file in the data folder, then a fresh PostgreSQL database named by
    LEADFLOW_WAREHOUSE_URL."""
    if request.param == "postgres":
        target = request.getfixturevalue("postgres_database")
        monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", target.url)
    return str(request.param)
