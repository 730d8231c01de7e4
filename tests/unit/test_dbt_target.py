"""dbt builds where the settings put the warehouse: the DuckDB file, or the PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from flows.dbt_runner import dbt_target_environment
from flows.settings import PostgresTarget


def test_the_duckdb_file_builds_on_the_local_target():
    assert dbt_target_environment(Path("data/warehouse.duckdb")) == {"DBT_TARGET": "local"}


def test_a_postgresql_url_is_taken_apart_for_the_profile_and_models_stay_in_main():
    url = "postgresql://leadflow:s%40cret@db.internal:6543/revenue?sslmode=require"
    assert dbt_target_environment(PostgresTarget(url)) == {
        "DBT_TARGET": "postgres",
        "LEADFLOW_PG_HOST": "db.internal",
        "LEADFLOW_PG_PORT": "6543",
        "LEADFLOW_PG_USER": "leadflow",
        "LEADFLOW_PG_PASSWORD": "s@cret",
        "LEADFLOW_PG_DATABASE": "revenue",
        "LEADFLOW_PG_SSLMODE": "require",
        "LEADFLOW_PG_SCHEMA": "main",
    }


def test_a_socket_url_gives_the_socket_folder_as_the_host():
    url = "postgresql://postgres@/leadflow?host=/tmp/pg-socket"
    environment = dbt_target_environment(PostgresTarget(url))
    assert (environment["LEADFLOW_PG_HOST"], environment["LEADFLOW_PG_PORT"]) == (
        "/tmp/pg-socket",
        "5432",
    )
    assert (environment["LEADFLOW_PG_DATABASE"], environment["LEADFLOW_PG_SSLMODE"]) == (
        "leadflow",
        "prefer",
    )
