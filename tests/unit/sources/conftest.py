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
