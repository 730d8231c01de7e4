"""The PostgreSQL connection: LeadFlow's DuckDB-dialect SQL translated and run on a real server."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa
import pytest

from flows.postgres import translate
from flows.settings import PostgresTarget
from flows.warehouse import connect


def test_parameters_are_psycopg2s_and_literal_percent_signs_survive():
    assert translate("select 'a%' where x like '%b' and y = ? and z = $name") == (
        "SELECT 'a%%' WHERE x LIKE '%%b' AND y = %s AND z = %(name)s",
    )


def test_create_or_replace_is_drop_then_create():
    assert translate("create or replace temp table t as select 1 as a") == (
        "DROP TABLE IF EXISTS t",
        "CREATE TEMPORARY TABLE t AS SELECT 1 AS a",
    )


def test_a_password_never_shows_in_the_targets_repr():
    target = PostgresTarget("postgresql://leadflow:s3cret@db.internal:5432/leadflow")
    assert "s3cret" not in repr(target)
    assert target.display == "postgresql://leadflow:***@db.internal:5432/leadflow"


def test_statements_results_and_errors_read_as_on_duckdb(postgres_database):
    connection = connect(postgres_database)
    connection.execute("create table ops.t (a varchar primary key, b json, c timestamp)")
    at = datetime(2026, 1, 1, 8)
    connection.execute("insert into ops.t values (?, ?, ?)", ["x", '{"k": 1}', at])
    # json comes back as text, as DuckDB returns it; lists bind as arrays.
    assert connection.execute(
        "select * from ops.t where list_contains($keys, a)", {"keys": ["x", "y"]}
    ).fetchall() == [("x", '{"k": 1}', at)]
    with pytest.raises(duckdb.ConstraintException, match="duplicate key"):
        connection.execute("insert into ops.t values ('x', null, null)")
    with pytest.raises(duckdb.CatalogException, match=r"main\.nope"):
        connection.execute("select * from main.nope")
    connection.close()


def test_a_registered_table_keeps_nulls_and_empty_strings_apart(postgres_database):
    connection = connect(postgres_database)
    connection.register("r", pa.table({"a": ["x", "", None], "n": [1, 2, None]}))
    assert connection.execute("select a, n from r order by n nulls last").fetchall() == [
        ("x", 1),
        ("", 2),
        (None, None),
    ]
    connection.unregister("r")
    with pytest.raises(duckdb.CatalogException):
        connection.execute("select * from r")
    connection.close()


def test_a_frame_has_the_column_types_duckdbs_has(postgres_database, tmp_path):
    query = """
        select * from (values
            (1, 'a', 1.5::decimal(10, 2), true, '2026-01-01 08:00'::timestamp),
            (2, null, null, null, null)
        ) as t(n, s, d, b, ts)
    """
    on_postgres = connect(postgres_database).execute(query).df()
    on_duckdb = duckdb.connect().execute(query).df()
    # Integers may differ in width (a literal is int32 on DuckDB, int4 read as int64 here).
    assert [dtype.kind for dtype in on_postgres.dtypes] == [
        dtype.kind for dtype in on_duckdb.dtypes
    ]
    assert str(on_postgres.dtypes["b"]) == str(on_duckdb.dtypes["b"]) == "boolean"


def test_duckdb_functions_postgresql_has_under_another_form(postgres_database):
    connection = connect(postgres_database)
    at = datetime(2026, 1, 1, 8)
    assert connection.execute(
        "select cast($at as timestamp) + to_days($days)", {"at": at, "days": 3}
    ).fetchone() == (datetime(2026, 1, 4, 8),)
    (same, different) = connection.execute(
        "select hash('lead-1') = hash('lead-1'), hash('lead-1') = hash('lead-2')"
    ).fetchone()
    assert same and not different
    connection.close()


def test_group_by_all_and_unqualified_names_resolve_as_on_duckdb(postgres_database):
    connection = connect(postgres_database)
    connection.execute("create table main.dim_things (kind varchar, size integer)")
    connection.execute("insert into dim_things values ('a', 1), ('a', 2), ('b', 5)")
    assert connection.execute(
        "select kind, count(*), sum(size) from dim_things group by all order by all"
    ).fetchall() == [("a", 2, 3), ("b", 1, 5)]
    connection.close()


# -- registering DuckDB's lossless Arrow (the extract's staged rows) --------------------------
def test_duckdbs_lossless_json_and_booleans_register_as_json_and_boolean(postgres_database):
    scratch = duckdb.connect()
    scratch.execute("set arrow_lossless_conversion = true")
    staged = scratch.sql(
        """select json_object('name', 'Ann, "A"') as record, true as is_active,
                  null::json as attributes"""
    ).to_arrow_table()
    connection = connect(postgres_database)
    connection.register("staged", staged)
    assert connection.execute(
        "select record->>'$.name', is_active, attributes is null from staged"
    ).fetchall() == [('Ann, "A"', True, True)]
    assert connection.execute(
        "select data_type from information_schema.columns where table_name = 'staged' "
        "order by ordinal_position"
    ).fetchall() == [("json",), ("boolean",), ("json",)]


# -- the changed-row count (pg-feedback) -------------------------------------------------------
def test_an_insert_update_or_delete_answers_how_many_rows_it_changed_as_on_duckdb(
    postgres_database,
):
    connection = connect(postgres_database)
    assert connection.execute("create table ops.counted (a integer)").fetchall() == []
    assert connection.execute("insert into ops.counted values (1), (2), (3)").fetchall() == [(3,)]
    assert connection.execute("update ops.counted set a = a + 1 where a > 1").fetchone() == (2,)
    assert connection.execute("delete from ops.counted where a > 9").fetchall() == [(0,)]
    assert sorted(connection.execute("delete from ops.counted returning a").fetchall()) == [
        (1,), (3,), (4,)
    ]  # fmt: skip
    connection.close()


def test_a_registered_table_drops_the_nul_character_postgresql_text_cannot_hold(
    postgres_database,
):
    connection = connect(postgres_database)
    connection.register("r", pa.table({"a": ["550\x00 mailbox", "plain", None]}))
    assert connection.execute("select a from r order by a nulls last").fetchall() == [
        ("550 mailbox",), ("plain",), (None,)
    ]  # fmt: skip
    connection.close()


# -- url_encode and copy to a file (the sales tasks' links and the reps' CSV files) ----------
URL_TEXTS = ["7f3c9a2e-1b4d/x", "a b&c=d?e#f", "Zoë's ~_.-", "€ 100%", "", None]


def test_url_encode_percent_encodes_as_duckdb_does(postgres_database):
    expected = duckdb.execute(
        "select text, url_encode(text) from unnest(?::varchar[]) as texts(text)", [URL_TEXTS]
    ).fetchall()
    assert expected[0][1] == "7f3c9a2e-1b4d%2Fx" and expected[-1][1] is None
    connection = connect(postgres_database)
    # Each value through a positional parameter: the argument is named once in the rewrite.
    encoded = [
        connection.execute("select ?, url_encode(?)", [text, text]).fetchone() for text in URL_TEXTS
    ]
    assert encoded == expected
    connection.close()


def test_copy_to_a_file_writes_it_where_leadflow_runs_as_duckdb_does(postgres_database, tmp_path):
    written = {}
    for engine, connection in (
        ("duckdb", duckdb.connect()),
        ("postgres", connect(postgres_database)),
    ):
        connection.execute("create schema if not exists ops")
        connection.execute("create table ops.t (a varchar, n integer, due_at timestamp)")
        connection.execute(
            "insert into ops.t values ('x, \"y\"', 1, timestamp '2026-12-07 09:00'), "
            "('', 2, null), (null, 3, null)"
        )
        target = tmp_path / f"{engine}.csv"
        connection.execute(
            f"copy (select a, n, due_at from ops.t where n < ? order by n) to '{target}' "
            "(format csv, header)",
            [3],
        )
        connection.close()
        written[engine] = target.read_text()
    assert (
        written["postgres"]
        == written["duckdb"]
        == 'a,n,due_at\n"x, ""y""",1,2026-12-07 09:00:00\n"",2,\n'
    )


def test_a_slice_of_an_aggregate_reads_as_on_duckdb(postgres_database):
    query = "select list(x order by x desc)[1:2] from (values (1), (3), (2)) as t(x)"
    connection = connect(postgres_database)
    assert connection.execute(query).fetchall() == duckdb.connect().execute(query).fetchall()
    connection.close()
