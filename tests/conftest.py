"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from flows.warehouse import ensure_schema


@pytest.fixture
def warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory warehouse with LeadFlow's raw and ops tables."""
    connection = duckdb.connect()
    ensure_schema(connection)
    yield connection
    connection.close()
