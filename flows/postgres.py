"""The warehouse on PostgreSQL: a connection that runs LeadFlow's DuckDB-dialect SQL there.

LeadFlow's own SQL (extract, hand-off, sends, runs) is written once, in DuckDB's dialect, for
the embedded default. With ``LEADFLOW_WAREHOUSE_URL`` set, the same modules get this connection
instead: each statement is translated by sqlglot (once per distinct text: the same few hundred
statements run on every run) and run through psycopg2, and the part of DuckDB's Python API the
modules use is offered on top: ``execute``/``executemany`` with ``?`` or ``$name`` parameters,
``fetchall``/``fetchone``/``description``/``df``/``fetchnumpy``, ``begin``/``commit``/``rollback``,
and ``register``, which copies a pyarrow table or pandas frame into a temporary table. DuckDB's
constructs PostgreSQL has under another form are rewritten (``hash``, ``to_days``, ``group by
all``, ``url_encode`` as the same percent-encoding in SQL), and ``copy (...) to 'file'`` writes
the file where LeadFlow runs (as DuckDB does), not on the database server.

SQL that sqlglot cannot translate is written in the subset both engines share (``insert ... on
conflict do nothing`` rather than ``insert or ignore``, explicit column lists rather than ``by
name``). PostgreSQL's errors are raised as DuckDB's exception classes, the warehouse's error
vocabulary in the modules (``duckdb.CatalogException`` for a relation that does not exist,
``duckdb.ConstraintException`` for a key already taken), so one ``except`` serves both.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Self, cast

import duckdb
import numpy as np
import pandas as pd
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlglot
from sqlglot import exp

from flows.settings import PostgresTarget, WarehouseUnreachableError

# A parameter marker that survives the escaping of literal percent signs (psycopg2 reads
# `%` as the start of a parameter); put back as `%s` / `%(name)s` after.
_MARKER = re.compile(r"__leadflow_param_(\w*?)__")
ADVISORY_NAMESPACE = 0x1EADF10  # pg_advisory_lock(namespace, key): LeadFlow's own locks


def _portable(node: exp.Expression) -> exp.Expression:
    """DuckDB's functions PostgreSQL has under another form, and parameter markers."""
    if isinstance(node, exp.Anonymous) and node.name.lower() == "hash":
        # A 64-bit hash of the text, as DuckDB's hash() is (used as a join key only).
        # (A replaced node's arguments are not visited again: translate them here.)
        (value,) = node.expressions
        return exp.Anonymous(
            this="hashtextextended",
            expressions=[exp.cast(value.transform(_portable), "text"), exp.Literal.number(0)],
        )
    if isinstance(node, exp.ToDays):
        return exp.Mul(
            this=exp.paren(node.this.transform(_portable)),
            expression=exp.Interval(this=exp.Literal.string("1 day")),
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "url_encode":
        (value,) = node.expressions
        return _url_encode(value.transform(_portable))
    if isinstance(node, exp.Bracket) and isinstance(node.this, exp.Func):
        # PostgreSQL subscripts a function's result only in parentheses: (array_agg(x))[1:2].
        node.set("this", exp.paren(node.this))
    if isinstance(node, exp.Select):
        _group_by_all(node)
    if isinstance(node, exp.Placeholder):
        return exp.var(f"__leadflow_param_{node.name if node.this else ''}__")
    return node


def _group_by_all(select: exp.Select) -> None:
    """DuckDB's ``group by all`` / ``order by all``: by each output column that is not an
    aggregate, in order (by position, as PostgreSQL allows)."""
    positions = [
        exp.Literal.number(index)
        for index, projection in enumerate(select.expressions, start=1)
        if not projection.find(exp.AggFunc)
    ]
    group = select.args.get("group")
    if isinstance(group, exp.Group) and group.args.get("all"):
        select.set("group", exp.Group(expressions=[position.copy() for position in positions]))
    order = select.args.get("order")
    if isinstance(order, exp.Order) and [o.this for o in order.expressions] == [exp.var("ALL")]:
        ordered = order.expressions[0]
        select.set(
            "order",
            exp.Order(
                expressions=[
                    exp.Ordered(this=exp.Literal.number(index), desc=ordered.args.get("desc"))
                    for index in range(1, len(select.expressions) + 1)
                ]
            ),
        )


def _statements(tree: exp.Expression) -> list[exp.Expression]:
    """DuckDB's `create or replace table` is `drop ... if exists` then `create` here."""
    if isinstance(tree, exp.Create) and tree.args.get("replace") and tree.kind == "TABLE":
        created = tree.copy()
        created.set("replace", False)
        target = tree.find(exp.Table)
        assert target is not None
        return [exp.Drop(tables=[target.copy()], kind="TABLE", exists=True), created]
    return [tree]


# DuckDB's url_encode (UTF-8 bytes percent-encoded, all but A-Z a-z 0-9 - . _ ~, hex in capitals)
# has no PostgreSQL function: the same over the argument's bytes, the argument named once (so a
# positional parameter in it stays one).
_URL_ENCODE_SQL = """
    (select case when url_input.url_text = '' then '' else (
        select string_agg(
            case
                when url_byte between 48 and 57 or url_byte between 65 and 90
                    or url_byte between 97 and 122 or url_byte in (45, 46, 95, 126)
                    then chr(url_byte)
                else '%' || substr('0123456789ABCDEF', url_byte / 16 + 1, 1)
                    || substr('0123456789ABCDEF', url_byte % 16 + 1, 1)
            end, '' order by url_byte_number)
        from (
            select url_byte_number,
                get_byte(convert_to(url_input.url_text, 'UTF8'), url_byte_number) as url_byte
            from generate_series(
                0, octet_length(convert_to(url_input.url_text, 'UTF8')) - 1) as url_byte_number
        ) as url_bytes
    ) end
    from (select __url_encode_argument__ as url_text) as url_input)
"""
_URL_ENCODE = cast(exp.Expression, sqlglot.parse_one(_URL_ENCODE_SQL, read="postgres"))


def _url_encode(argument: exp.Expression) -> exp.Expression:
    encoded = _URL_ENCODE.copy()
    marker = next(
        column
        for column in encoded.find_all(exp.Column)
        if column.name == "__url_encode_argument__"
    )
    marker.replace(argument)
    return encoded


def _client_side_copy(tree: exp.Expression) -> exp.Expression:
    """DuckDB's `copy (...) to 'file'` writes where LeadFlow runs; PostgreSQL's would write on
    the server: here it is `copy ... to stdout`, which ``execute`` writes to the file."""
    if isinstance(tree, exp.Copy) and tree.args.get("kind") is False:
        tree = tree.copy()
        tree.set("files", [exp.var("STDOUT")])
    return tree


def translate(sql: str) -> tuple[str, ...]:
    """The PostgreSQL statements for one DuckDB-dialect text, with psycopg2's parameters."""
    return _translation(sql)[0]


@lru_cache(maxsize=2048)
def _translation(sql: str) -> tuple[tuple[str, ...], str | None]:
    """The statements, and the file a DuckDB `copy (...) to 'file'` writes (else None)."""
    translated: list[str] = []
    copy_target = None
    for tree in sqlglot.parse(sql, read="duckdb"):
        if tree is None:
            continue
        if isinstance(tree, exp.Copy) and tree.args.get("kind") is False:
            (target,) = tree.args["files"]
            copy_target = str(target.name)
        tree = _client_side_copy(tree.transform(_portable))
        for statement in _statements(tree):
            text = statement.sql(dialect="postgres").replace("%", "%%")
            translated.append(_MARKER.sub(lambda m: f"%({m[1]})s" if m[1] else "%s", text))
    return tuple(translated), copy_target


def _as_duckdb_error(error: psycopg2.Error) -> duckdb.Error:
    """The DuckDB exception a module catches for this PostgreSQL error."""
    message = (error.pgerror or str(error)).strip()
    if isinstance(error, psycopg2.errors.UndefinedTable | psycopg2.errors.InvalidSchemaName):
        return duckdb.CatalogException(message)
    if isinstance(error, psycopg2.errors.IntegrityError):
        return duckdb.ConstraintException(message)
    if isinstance(error, psycopg2.errors.DataError):
        return duckdb.ConversionException(message)
    if isinstance(error, psycopg2.errors.SyntaxError | psycopg2.errors.UndefinedFunction):
        return duckdb.ParserException(message)
    return duckdb.Error(message)


_ARROW_TYPES: list[tuple[Any, str]] = [
    # DuckDB's json and boolean under arrow_lossless_conversion (canonical extension types).
    (lambda arrow_type: isinstance(arrow_type, pa.JsonType), "json"),
    (lambda arrow_type: isinstance(arrow_type, pa.Bool8Type), "boolean"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_timestamp, "timestamp"),
    (pa.types.is_date, "date"),
    (pa.types.is_string, "varchar"),
    (pa.types.is_large_string, "varchar"),
    (pa.types.is_null, "varchar"),
]


def _without_nul(table: pa.Table) -> pa.Table:
    """The table with the NUL character dropped from its text: PostgreSQL's text cannot hold
    it (COPY refuses the whole table), DuckDB's can, and JSON's ``\\u0000`` decodes to it."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            cleaned = pc.replace_substring(table.column(index), "\x00", "")
            table = table.set_column(index, field, cleaned)
    return table


def _column_type(arrow_type: pa.DataType) -> str:
    for matches, sql_type in _ARROW_TYPES:
        if matches(arrow_type):
            return sql_type
    raise TypeError(f"cannot register a column of type {arrow_type} on PostgreSQL")


class PostgresConnection:
    """One PostgreSQL session with the DuckDB connection API LeadFlow's modules use.

    Autocommit, as DuckDB is: each statement is its own transaction unless ``begin`` opened
    one. Temporary tables live as long as the connection, as in DuckDB.
    """

    def __init__(self, target: PostgresTarget) -> None:
        try:
            self._connection = psycopg2.connect(target.url)
        except psycopg2.OperationalError as error:
            reason = " ".join(str(error).split())
            raise WarehouseUnreachableError(
                f"cannot connect to the PostgreSQL warehouse {target.display} ({reason}); "
                "check LEADFLOW_WAREHOUSE_URL and that the server is up"
            ) from None
        self._connection.autocommit = True
        # DuckDB returns json as text; so must this, for the modules that parse it themselves.
        psycopg2.extras.register_default_json(self._connection, loads=lambda text: text)
        psycopg2.extras.register_default_jsonb(self._connection, loads=lambda text: text)
        self._cursor = self._connection.cursor()
        # Unqualified names resolve in dbt's schema, as in DuckDB (temporary tables first).
        self._cursor.execute("set search_path to main, public")
        # The warehouse's timestamps are naive UTC: so is the session's clock (now()).
        self._cursor.execute("set timezone to 'UTC'")

    # -- statements ---------------------------------------------------------------------
    def execute(
        self, query: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Self:
        arguments = _arguments(parameters)
        statements, copy_target = _translation(query)
        try:
            for statement in statements:
                if copy_target is None:
                    self._cursor.execute(statement, arguments)
                    continue
                # COPY takes no parameters: psycopg2 binds them into the text.
                with open(copy_target, "wb") as target:
                    self._cursor.copy_expert(self._cursor.mogrify(statement, arguments), target)
        except psycopg2.Error as error:
            raise _as_duckdb_error(error) from None
        return self

    def executemany(self, query: str, parameters: Sequence[Sequence[Any]]) -> Self:
        (statement,) = translate(query)
        try:
            psycopg2.extras.execute_batch(
                self._cursor, statement, [_arguments(row) for row in parameters], page_size=1000
            )
        except psycopg2.Error as error:
            raise _as_duckdb_error(error) from None
        return self

    # -- results ------------------------------------------------------------------------
    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        if self._cursor.description is None:
            return None
        return [tuple(column) for column in self._cursor.description]

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._cursor.description is None:
            return self._changed_rows()
        return [tuple(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._cursor.description is None:
            return next(iter(self._changed_rows()), None)
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def _changed_rows(self) -> list[tuple[Any, ...]]:
        """DuckDB answers an insert, update or delete without ``returning`` with one row, the
        number of rows it changed (and a DDL statement with none): so does this."""
        return [(self._cursor.rowcount,)] if self._cursor.rowcount >= 0 else []

    def df(self) -> pd.DataFrame:
        """The result as DuckDB's ``df()`` gives it: typed columns (through arrow), decimals
        as floats, booleans with nulls as pandas' nullable boolean."""
        columns = [column[0] for column in self._cursor.description or []]
        rows = self._cursor.fetchall()
        arrays = [pa.array([row[index] for row in rows]) for index in range(len(columns))]
        arrays = [
            array.cast(pa.float64()) if pa.types.is_decimal(array.type) else array
            for array in arrays
        ]
        frame = pa.table(arrays, names=columns).to_pandas()
        for name, array in zip(columns, arrays, strict=True):
            if pa.types.is_boolean(array.type) and array.null_count:
                frame[name] = frame[name].astype(pd.BooleanDtype())
        return frame

    def fetchnumpy(self) -> dict[str, np.ndarray[Any, Any]]:
        frame = self.df()
        return {column: frame[column].to_numpy() for column in frame.columns}

    # -- transactions -------------------------------------------------------------------
    def begin(self) -> None:
        self._cursor.execute("begin")

    def commit(self) -> None:
        self._cursor.execute("commit")

    def rollback(self) -> None:
        self._cursor.execute("rollback")

    def close(self) -> None:
        self._connection.close()

    # -- relations from Python ------------------------------------------------------------
    def register(self, name: str, data: pa.Table | pd.DataFrame) -> None:
        """Copy ``data`` into the temporary table ``name`` (DuckDB reads it in place)."""
        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        columns = ", ".join(f'"{field.name}" {_column_type(field.type)}' for field in table.schema)
        # An extension type (json) is written as its storage: the text.
        stored = pa.table(
            [
                column.cast(column.type.storage_type)
                if isinstance(column.type, pa.BaseExtensionType)
                else column
                for column in table.columns
            ],
            names=table.column_names,
        )
        buffer = io.BytesIO()
        pa_csv.write_csv(_without_nul(stored), buffer, pa_csv.WriteOptions(include_header=False))
        buffer.seek(0)
        try:
            self._cursor.execute(f'drop table if exists "{name}"')
            self._cursor.execute(f'create temporary table "{name}" ({columns})')
            self._cursor.copy_expert(f'copy "{name}" from stdin with (format csv)', buffer)
        except psycopg2.Error as error:
            raise _as_duckdb_error(error) from None

    def unregister(self, name: str) -> None:
        self._cursor.execute(f'drop table if exists "{name}"')

    # -- locks ----------------------------------------------------------------------------
    @contextmanager
    def advisory_lock(self, name: str) -> Iterator[None]:
        """Hold LeadFlow's lock ``name`` (one session across every worker at a time)."""
        self._cursor.execute("select pg_advisory_lock(%s, %s)", _lock_arguments(name))
        try:
            yield
        finally:
            self._cursor.execute("select pg_advisory_unlock(%s, %s)", _lock_arguments(name))

    def try_advisory_lock(self, name: str) -> bool:
        """Take LeadFlow's lock ``name`` for this session if it is free; held until the
        session ends (or the server sees its process die)."""
        self._cursor.execute("select pg_try_advisory_lock(%s, %s)", _lock_arguments(name))
        row = self._cursor.fetchone()
        return bool(row and row[0])

    def advisory_holders(self, name: str) -> list[str]:
        """The names (``application_name``) of the sessions holding lock ``name``."""
        self._cursor.execute(
            """
            select activity.application_name
            from pg_locks as locks
            inner join pg_stat_activity as activity on locks.pid = activity.pid
            where
                locks.locktype = 'advisory' and locks.granted and locks.objsubid = 2
                and locks.classid::bigint = %s and locks.objid::bigint = %s
            """,
            (ADVISORY_NAMESPACE, self.advisory_key(name)),
        )
        return [name for (name,) in self._cursor.fetchall()]

    def held_advisory_keys(self) -> set[int]:
        """The keys of LeadFlow's locks some session holds now, on any host."""
        self._cursor.execute(
            "select objid::bigint from pg_locks where locktype = 'advisory' and granted "
            "and objsubid = 2 and classid::bigint = %s",
            (ADVISORY_NAMESPACE,),
        )
        return {key for (key,) in self._cursor.fetchall()}

    def name_session(self, name: str) -> None:
        """Name this session (``application_name``) for those who look at who holds a lock."""
        self._cursor.execute("select set_config('application_name', %s, false)", (name,))

    @staticmethod
    def advisory_key(name: str) -> int:
        """The lock's key as ``pg_locks.objid`` shows it (with ``classid`` LeadFlow's)."""
        return zlib.crc32(name.encode())


def _lock_arguments(name: str) -> tuple[int, int]:
    """pg_advisory_lock's two int4 keys: LeadFlow's namespace, and a stable key per name
    (Python's hash() changes between processes)."""
    key = PostgresConnection.advisory_key(name)
    return ADVISORY_NAMESPACE, key - 2**32 if key >= 2**31 else key


def _arguments(parameters: Sequence[Any] | Mapping[str, Any] | None) -> Any:
    """psycopg2's arguments: always given (so `%%` is read as `%`), lists as arrays."""
    if parameters is None:
        return ()
    if isinstance(parameters, Mapping):
        return {key: _value(value) for key, value in parameters.items()}
    return tuple(_value(value) for value in parameters)


def _value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


psycopg2.extensions.register_adapter(np.int64, psycopg2.extensions.AsIs)
