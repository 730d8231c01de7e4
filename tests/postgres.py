"""PostgreSQL databases for tests: a template with LeadFlow's tables, copied per test (fast:
a file copy on the server), on the session's server (tests/conftest.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import closing, contextmanager
from urllib.parse import urlsplit

import psycopg2

from flows.settings import PostgresTarget
from flows.warehouse import connect, ensure_schema

# A database with LeadFlow's tables already created, copied for each test (fast: a file copy).
TEMPLATE_DATABASE = "leadflow_template"
_database_numbers = itertools.count()


def create_template(server_url: str) -> None:
    """The database every test database is copied from, with LeadFlow's tables."""
    _run_admin(server_url, f"create database {TEMPLATE_DATABASE}")
    with closing(connect(PostgresTarget(_database_url(server_url, TEMPLATE_DATABASE)))) as template:
        ensure_schema(template)


def _database_url(server_url: str, database: str) -> str:
    """The server's URL (postgresql://user:@/postgres?host=...) for another database."""
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


def _run_admin(server_url: str, statement: str) -> None:
    with closing(psycopg2.connect(server_url)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(statement)


@contextmanager
def fresh_postgres_database(
    server_url: str, *, template: str = TEMPLATE_DATABASE
) -> Iterator[PostgresTarget]:
    """A new database with LeadFlow's raw and ops tables (``template0``: an empty one),
    dropped after."""
    name = f"leadflow_test_{next(_database_numbers)}"
    _run_admin(server_url, f"create database {name} template {template}")
    try:
        yield PostgresTarget(_database_url(server_url, name))
    finally:
        _run_admin(server_url, f"drop database {name} with (force)")
