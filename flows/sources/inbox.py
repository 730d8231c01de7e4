"""Load inbox files into ``raw.*``: header check, set-based validation, quarantine, ledger.

Loading a file happens in two phases so that a corrupt file leaves nothing half-written: it is
first *staged* (parsed and classified into temporary tables, which raises ``SourceFileError``
for an unreadable file) and then *committed*, in a transaction of its own, to ``raw.*``,
``ops.quarantine`` and the ``ops.loads`` ledger. ``load_file`` does both and turns any error
into that file's ``SourceFileError``; a dry run (``sources check``) is the same load with the
transaction rolled back instead of committed.

DuckDB parses and validates, whatever the warehouse: files are staged on a *parser*
connection (``parsing_connection``). On a DuckDB warehouse that is the warehouse itself and the
commit inserts from the staged tables directly; on PostgreSQL it is a scratch in-memory DuckDB,
and the commit copies the staged rows over (``register``, a COPY) before the same inserts.
Several extracts may then run at once: the ledger row is the claim on a load (unique per file
content and mapping), taken first in the file's transaction, and a load another run claimed
first is skipped like any file loaded before.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from flows.sources.api import advance_watermark
from flows.sources.catalog import ENTITIES, Entity
from flows.sources.lines import record_lines
from flows.sources.mapping import (
    ATTRIBUTES_COLUMN,
    ParsedColumn,
    SourceMapping,
    json_path,
    quoted_name,
    sql_text,
    type_by_suffix,
)
from flows.sources.validation import rejected_rows_sql, typed_columns_sql, value
from flows.warehouse import Connection

FILE_NAME_PATTERN = re.compile(
    r"^(?P<entity>[a-z]+)__(?P<source>[a-z0-9_]+?)(__[\w.-]+)?\.(csv|jsonl|ndjson|parquet)(\.gz)?$"
)
CONTRACT_DOC = "docs/data-contracts.md"
# Staged rows cross from the parser to a PostgreSQL warehouse in COPYs of this many rows, so a
# large file never sits in memory whole (DuckDB itself spills to disk).
COPY_BATCH_ROWS = 200_000


class SourceFileError(Exception):
    """A file that cannot be loaded at all; the message names the file, line and fix."""

    def __init__(self, path: Path, problem: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class InboxFile:
    path: Path
    mapping: SourceMapping
    sha256: str

    @property
    def entity(self) -> Entity:
        return self.mapping.entity

    @property
    def source(self) -> str:
        return self.mapping.source

    @property
    def load_id(self) -> str:
        # One load per (file content, mapping): the same bytes under the same mapping always
        # get the same id; under two mappings they are two loads.
        key = f"{self.sha256}:{self.mapping.name}".encode()
        return f"load_{hashlib.sha256(key).hexdigest()[:20]}"


class RowFates:
    """What became of a file's rows: read, quarantined (by reason) and loaded."""

    rows_read: int
    reasons: dict[str, int]

    @property
    def rows_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def rows_loaded(self) -> int:
        return self.rows_read - self.rows_quarantined


@dataclass(frozen=True)
class StagedFile(RowFates):
    """A parsed file awaiting commit: its rows as read, and the verdict on each rejected row.

    Only rejected rows get a verdict row, so staging a large, mostly clean file holds one copy
    of it (the parsed text) in memory or DuckDB's spill files, not three.
    """

    file: InboxFile
    parser: duckdb.DuckDBPyConnection = field(repr=False, compare=False)  # holds the tables
    parsed_table: str  # the file's columns, in file order (rowid + 1 = record number)
    verdicts_table: str  # record_number, rejection_code, rejection_reason of rejected rows
    columns: Mapping[str, ParsedColumn]  # header name -> its column in the parsed table
    rows_read: int
    reasons: dict[str, int] = field(default_factory=dict)
    default_timestamp: datetime | None = None  # for timestamp columns the file lacks

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(self.columns)

    @property
    def absent_columns(self) -> list[str]:
        """Mapped export columns this file lacks: they load as null (or their fallback)."""
        return self.file.mapping.absent_columns(self.columns)

    line_offset: int = 0  # a record's line is its number plus this ...
    lines_table: str | None = None  # ... unless this table (record_number, line) lists it

    def source_line_sql(self, record_number: str) -> str:
        """The line an editor shows for the record numbered by the expression given."""
        plain = f"{record_number} + {self.line_offset}"
        if self.lines_table is None:
            return plain
        return (
            f"coalesce((select line from {self.lines_table} as lines "
            f"where lines.record_number = {record_number}), {plain})"
        )

    def mapped_sql(self) -> str:
        """The file's rows in canonical columns (text), with their record numbers."""
        projection = self.file.mapping.projection_sql(self.columns, self.default_timestamp)
        return f"(select rowid + 1 as record_number, {projection} from {self.parsed_table})"


@dataclass(frozen=True)
class InboxScan:
    new: list[InboxFile]
    already_loaded: list[Path]  # a file once per mapping it was loaded under
    ignored: list[Path]
    unidentified: list[SourceFileError] = field(default_factory=list)  # no mapping fits


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identify_all(path: Path, mappings: list[SourceMapping] | None = None) -> list[SourceMapping]:
    """The mappings of a file: per entity, the first profile whose ``files`` match its name
    (one export may feed leads, events and outcomes through a profile each), else the naming
    convention ``<entity>__<source>.csv``."""
    firsts: dict[str, SourceMapping] = {}
    for mapping in mappings or []:
        if mapping.matches(path):
            firsts.setdefault(mapping.entity.name, mapping)
    if firsts:
        return list(firsts.values())
    match = FILE_NAME_PATTERN.match(path.name)
    if not match or match["entity"] not in ENTITIES:
        raise SourceFileError(
            path,
            "the file name does not say what it holds; name inbox files "
            f"<entity>__<source>.csv with entity one of {', '.join(ENTITIES)} "
            "(e.g. leads__crm.csv), or write a mapping profile whose `files` match it "
            "(docs/sources.md)",
        )
    return [SourceMapping.by_convention(ENTITIES[match["entity"]], match["source"])]


def identify(path: Path, mappings: list[SourceMapping] | None = None) -> SourceMapping:
    """The first mapping of a file (see ``identify_all``)."""
    return identify_all(path, mappings)[0]


def scan_inbox(
    connection: Connection,
    inbox_dir: Path,
    mappings: list[SourceMapping] | None = None,
) -> InboxScan:
    """Which inbox files are new (by content hash) and which were loaded before.

    A file is read when a mapping profile names it or it is a CSV, JSON-lines or Parquet file
    (gzip too); anything else is listed as ignored.
    """
    # Loaded before: this content under this mapping (a ledger row from before mappings were
    # recorded, mapping null, by its entity and source).
    loaded = set(
        connection.execute(
            "select file_sha256, coalesce(mapping, entity || ':' || source) from ops.loads"
        ).fetchall()
    )
    new: list[InboxFile] = []
    already_loaded: list[Path] = []
    ignored: list[Path] = []
    unidentified: list[SourceFileError] = []
    for path in sorted(inbox_dir.iterdir()) if inbox_dir.is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        profiled = any(mapping.matches(path) for mapping in mappings or [])
        if not profiled and type_by_suffix(path) is None:
            ignored.append(path)
            continue
        try:
            file_mappings = identify_all(path, mappings)
        except SourceFileError as error:
            unidentified.append(error)
            continue
        sha256 = file_sha256(path)
        for mapping in file_mappings:  # one load per (content, mapping)
            legacy_key = f"{mapping.entity.name}:{mapping.source}"
            if (sha256, mapping.name) in loaded or (sha256, legacy_key) in loaded:
                already_loaded.append(path)
            else:
                new.append(InboxFile(path, mapping, sha256))
    return InboxScan(new, already_loaded, ignored, unidentified)


def read_csv_header(inbox_file: InboxFile) -> tuple[str, ...]:
    path, mapping = inbox_file.path, inbox_file.mapping
    entity, dialect = mapping.entity, mapping.format
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=dialect.python_encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=dialect.delimiter, quotechar=dialect.quote)
            first_row = next(reader, None)
    except UnicodeDecodeError:
        raise SourceFileError(
            path,
            f"the file is not {dialect.encoding.upper()} text; export it as UTF-8 CSV or "
            "set `format.encoding` in its mapping profile",
        ) from None
    except (OSError, EOFError) as error:
        raise SourceFileError(path, f"the file cannot be read ({error})") from None
    if not first_row or not any(cell.strip() for cell in first_row):
        raise SourceFileError(
            path,
            f"the file is empty; expected a header row with {', '.join(entity.required)}",
            line=1,
        )
    header = tuple(cell.strip() for cell in first_row)
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise SourceFileError(path, f"the header repeats column(s) {', '.join(repeated)}", line=1)
    return header


def checked_header(
    inbox_file: InboxFile, columns: dict[str, ParsedColumn]
) -> dict[str, ParsedColumn]:
    """The parsed columns, if they include every column the file's mapping needs (else a
    file error)."""
    path, mapping, entity = inbox_file.path, inbox_file.mapping, inbox_file.entity
    header = list(columns)
    missing = mapping.missing_columns(columns)
    if missing and mapping.path is None:
        raise SourceFileError(
            path,
            f"the header lacks required column(s) {', '.join(missing)} for {entity.name} "
            f"(found: {', '.join(header)}); rename the export's columns as listed in "
            f"{CONTRACT_DOC} or write a mapping profile (docs/sources.md)",
            line=1,
        )
    if missing:
        raise SourceFileError(
            path,
            f"the header lacks column(s) {', '.join(missing)} that mapping profile "
            f"{mapping.path} needs (found: {', '.join(header)}); export them, or in the "
            "profile drop them from `required` or give a fallback (`constants`, "
            "`default_timestamp`)",
            line=1,
        )
    return columns


def _reader_problem(error: duckdb.Error) -> tuple[int | None, str]:
    """The line and the gist of DuckDB's reader error, without its query echo or advice."""
    text = str(error)
    line_match = re.search(r"(?:CSV Error on Line: |in line )(\d+)", text)
    # The echoed record may span lines (a quoted line break): it ends at a blank line or at
    # the column count that follows it.
    text = re.sub(
        r"Original Line: .*?(?=\n\n|\nExpected Number of Columns|\Z)", "", text, count=1, flags=re.S
    )
    sentences = [
        re.sub(r' in file "[^"]*",?', "", re.sub(r"^[A-Za-z ]+ Error: ", "", line.strip()))
        for line in text.splitlines()
        if line.strip()
    ]
    problem = next(
        (
            sentence
            for sentence in sentences
            if not sentence.startswith(("CSV Error", "Original Line", "LINE ", "^"))
        ),
        "the reader gave no reason",
    )
    if "unicode" in str(error).lower():
        problem = (
            "the file is not text in its declared encoding; export it as UTF-8 or set "
            "`format.encoding` in its mapping profile"
        )
    elif "is not utf-16 encoded" in problem:
        # DuckDB 2.0's UTF-16 reader also fails on surrogate pairs (emoji and other
        # characters beyond the Basic Multilingual Plane) in a well-formed file.
        problem = (
            "the file is not UTF-16 text as its profile declares, or holds characters DuckDB's "
            "UTF-16 reader cannot read (emoji and others beyond U+FFFF); export it as UTF-8"
        )
    elif "Expected Number of Columns" in problem:
        problem = problem.replace("Expected Number of Columns:", "expected").replace(
            "Found:", "columns, found"
        )
        problem += " (a truncated file or an unquoted delimiter)"
    return (int(line_match[1]) if line_match else None), problem.rstrip(".")


NESTED_TYPES = ("STRUCT", "MAP", "UNION")


def parse_into(
    connection: duckdb.DuckDBPyConnection, inbox_file: InboxFile, table: str
) -> dict[str, ParsedColumn]:
    """Parse a file into a temporary table in file order, its columns named by position;
    returns each header name's column."""
    dialect = inbox_file.mapping.format
    kind = dialect.type_of(inbox_file.path)
    parameters: dict[str, str] = {"path": str(inbox_file.path)}
    try:
        if kind == "csv":
            header = read_csv_header(inbox_file)
            columns = {name: ParsedColumn(f"c{n}") for n, name in enumerate(header)}
            types = "{" + ", ".join(f"'c{n}': 'varchar'" for n in range(len(header))) + "}"
            # The dialect is fixed, not sniffed: sniffing a damaged file can "succeed" with the
            # wrong delimiter and load garbage, where a fixed dialect reports the broken line.
            connection.execute(
                f"""
                create or replace temp table {table} as select * from read_csv($path,
                    header = true, auto_detect = false, delim = $delimiter, quote = $quote,
                    escape = $quote, encoding = $encoding, columns = {types}, all_varchar = true)
                """,
                {
                    **parameters,
                    "delimiter": dialect.delimiter,
                    "quote": dialect.quote,
                    "encoding": dialect.encoding,
                },
            )
            return checked_header(inbox_file, columns)
        if kind == "jsonl":
            columns = _parse_json_lines(connection, table, parameters)
        else:
            described = connection.execute(
                "describe select * from read_parquet($path)", parameters
            ).fetchall()
            columns = {
                name: ParsedColumn(
                    f"c{n}",
                    "json"
                    if data_type == "JSON"
                    else "nested"
                    if data_type.endswith("]") or data_type.startswith(NESTED_TYPES)
                    else "text",
                )
                for n, (name, data_type, *_) in enumerate(described)
            }
            select = ", ".join(
                f"{quoted_name(name)} as {column.sql}" for name, column in columns.items()
            )
            connection.execute(
                f"create or replace temp table {table} as "
                f"select {select or 'null as c0'} from read_parquet($path)",
                parameters,
            )
    except duckdb.Error as error:
        line, problem = _reader_problem(error)
        raise SourceFileError(
            inbox_file.path, f"not a readable {kind.upper()} file: {problem}", line=line
        ) from None
    if not columns:
        raise SourceFileError(inbox_file.path, "the file holds no records")
    return checked_header(inbox_file, columns)


def _parse_json_lines(
    connection: duckdb.DuckDBPyConnection, table: str, parameters: dict[str, str]
) -> dict[str, ParsedColumn]:
    """Each record's top-level fields as JSON values, so a string keeps its text and an object
    stays an object (that row is quarantined where a single value is expected); the whole
    record, as written, in column ``record``."""
    objects = f"{table}_objects"
    connection.execute(
        f"create or replace temp table {objects} as select json from read_ndjson_objects($path)",
        parameters,
    )
    keys = connection.execute(
        f"""
        select key from (
            select unnest(json_keys(json)) as key,
                rowid * 1000000 + generate_subscripts(json_keys(json), 1) as position
            from {objects} where json_type(json) = 'OBJECT'
        )
        where key <> ''  -- JSONPath cannot name an empty key (the record keeps it)
        group by key order by min(position)
        """
    ).fetchall()
    columns = {key: ParsedColumn(f"c{n}", "json") for n, (key,) in enumerate(keys)}
    select = ", ".join(
        f"json_extract(json, {sql_text(json_path([key]))}) as {column.sql}"
        for key, column in columns.items()
    )
    connection.execute(
        f"create or replace temp table {table} as select json as record, "
        f"{select or 'null as c0'} from {objects} order by rowid"
    )
    connection.execute(f"drop table {objects}")
    return columns


@contextmanager
def parsing_connection(warehouse: Connection) -> Iterator[duckdb.DuckDBPyConnection]:
    """The DuckDB connection that parses and validates files for ``warehouse``: the warehouse
    itself when it is DuckDB (staged tables sit beside ``raw.*`` and are committed without a
    copy), else a scratch in-memory DuckDB, closed after."""
    if isinstance(warehouse, duckdb.DuckDBPyConnection):
        yield warehouse
        return
    # Spilled to a folder of its own: an in-memory database would spill into ./.tmp.
    with tempfile.TemporaryDirectory(prefix="leadflow-parse-") as spill:
        scratch = duckdb.connect(config={"temp_directory": spill})
        # json leaves it typed (arrow.json), so the copy into PostgreSQL keeps it json.
        scratch.execute("set arrow_lossless_conversion = true")
        try:
            yield scratch
        finally:
            scratch.close()


def stage_file(
    warehouse: Connection,
    parser: duckdb.DuckDBPyConnection,
    inbox_file: InboxFile,
    as_of: datetime,
    index: int,
) -> StagedFile:
    """Parse a file into temporary tables of classified rows on ``parser`` (nothing permanent
    is written); the warehouse is read for the final keys loaded before."""
    entity = inbox_file.entity
    parsed = f"parsed_{index}"
    columns = parse_into(parser, inbox_file, parsed)
    staged = StagedFile(
        inbox_file,
        parser,
        parsed,
        f"verdicts_{index}",
        columns,
        0,
        default_timestamp=inbox_file.mapping.timestamp_default(inbox_file.path),
    )
    loaded_before = _keys_loaded_before(warehouse, staged, f"loaded_{index}")
    rejected = rejected_rows_sql(
        entity, staged.mapped_sql(), as_of, inbox_file.source, loaded_before
    )
    try:
        parser.execute(f"create or replace temp table {staged.verdicts_table} as {rejected}")
    finally:
        if loaded_before is not None:
            parser.execute(f"drop table if exists {loaded_before}")
    rows_read = parser.execute(f"select count(*) from {parsed}").fetchall()[0][0]
    reasons = dict(
        parser.execute(
            f"select rejection_code, count(*) from {staged.verdicts_table} "
            "group by all order by all"
        ).fetchall()
    )
    dialect = inbox_file.mapping.format
    lines = record_lines(
        inbox_file.path,
        kind=dialect.type_of(inbox_file.path),
        records=rows_read,
        encoding=dialect.python_encoding,
        delimiter=dialect.delimiter,
        quote=dialect.quote,
    )
    lines_table = None
    if lines.starts is not None:
        lines_table = f"lines_{index}"
        parser.execute(
            f"create or replace temp table {lines_table} as "
            "select unnest(range(1, len($starts) + 1)) as record_number, unnest($starts) as line",
            {"starts": lines.starts},
        )
    return replace(
        staged,
        rows_read=rows_read,
        reasons=reasons,
        line_offset=lines.offset,
        lines_table=lines_table,
    )


def _keys_loaded_before(warehouse: Connection, staged: StagedFile, table: str) -> str | None:
    """Where the parser finds the rows of ``raw.<entity>`` an entity with final keys checks
    the file's keys against: None, ``raw.<entity>`` itself, when the parser is the warehouse;
    on PostgreSQL, ``table``, a copy of the warehouse's rows that have the file's keys."""
    entity, parser = staged.file.entity, staged.parser
    if not entity.key_is_final or parser is warehouse:
        return None
    keys = parser.sql(
        f"select distinct {value(entity.key)} as {entity.key} from {staged.mapped_sql()}"
    ).to_arrow_table()
    warehouse.register("file_keys", keys)
    try:
        earlier = warehouse.execute(
            f"select {entity.key}, source from raw.{entity.name} "
            f"where source = ? and {entity.key} in (select {entity.key} from file_keys)",
            [staged.file.source],
        ).df()
    finally:
        warehouse.unregister("file_keys")
    parser.register("earlier_rows", earlier)
    parser.execute(
        f"create or replace temp table {table} as select "
        f"cast({entity.key} as varchar) as {entity.key}, cast(source as varchar) as source "
        "from earlier_rows"
    )
    parser.unregister("earlier_rows")
    return table


@dataclass(frozen=True)
class FileLoad(RowFates):
    """What loading one file did or, on a dry run, would do."""

    file: InboxFile
    rows_read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    absent_columns: tuple[str, ...] = ()  # mapped export columns the file lacks
    samples: tuple[str, ...] = ()  # "row N: reason" of the first rejected rows
    # This content was loaded under this mapping before, or by another run meanwhile: skipped.
    skipped: bool = False


def load_file(
    warehouse: Connection,
    inbox_file: InboxFile,
    as_of: datetime,
    run_id: str,
    *,
    parser: duckdb.DuckDBPyConnection | None = None,
    index: int = 0,
    dry_run: bool = False,
    samples: int = 0,
) -> FileLoad:
    """Stage one file on ``parser`` (by default ``parsing_connection(warehouse)``, opened for
    this file) and write it in a transaction of its own; a dry run makes the same writes and
    rolls them back, so it predicts the load exactly.

    Any error while loading the file is this file's ``SourceFileError`` (file, line when
    known, cause), so the caller records it and goes on with the other files.
    """
    if parser is None:
        with parsing_connection(warehouse) as parser:
            return _load_file(warehouse, parser, inbox_file, as_of, run_id, index, dry_run, samples)
    return _load_file(warehouse, parser, inbox_file, as_of, run_id, index, dry_run, samples)


def _load_file(
    warehouse: Connection,
    parser: duckdb.DuckDBPyConnection,
    inbox_file: InboxFile,
    as_of: datetime,
    run_id: str,
    index: int,
    dry_run: bool,
    samples: int,
) -> FileLoad:
    if already_loaded(warehouse, inbox_file):
        return FileLoad(inbox_file, skipped=True)
    try:
        staged = stage_file(warehouse, parser, inbox_file, as_of, index)
        rejected = parser.execute(
            f"select record_number, rejection_reason from {staged.verdicts_table} "
            "order by record_number limit ?",
            [samples],
        ).fetchall()
        warehouse.begin()
        try:
            claimed = _commit_one(warehouse, staged, run_id)
            if dry_run or not claimed:
                warehouse.rollback()
            else:
                warehouse.commit()
        except BaseException:
            warehouse.rollback()
            raise
    except SourceFileError:
        raise
    except Exception as error:  # whatever it is, it is this file's: the others still load
        line, problem = _reader_problem(error) if isinstance(error, duckdb.Error) else (None, "")
        raise SourceFileError(
            inbox_file.path,
            f"could not be loaded ({problem or f'{type(error).__name__}: {error}'}); "
            "it is tried again on the next run",
            line=line,
        ) from error
    finally:
        for table in (
            f"parsed_{index}",
            f"parsed_{index}_objects",
            f"verdicts_{index}",
            f"lines_{index}",
        ):
            parser.execute(f"drop table if exists {table}")
    if not claimed:  # another run loaded it since the check above
        return FileLoad(inbox_file, skipped=True)
    return FileLoad(
        inbox_file,
        staged.rows_read,
        staged.reasons,
        tuple(staged.absent_columns),
        tuple(f"row {number}: {reason}" for number, reason in rejected),
    )


def already_loaded(connection: Connection, inbox_file: InboxFile) -> bool:
    """Whether this content was loaded under this mapping (e.g. a copy of a file loaded under
    another name earlier in the same run); a ledger row from before mappings were recorded
    counts for the same entity and source."""
    return bool(
        connection.execute(
            "select count(*) from ops.loads where file_sha256 = ? and (mapping = ? "
            "or (mapping is null and entity = ? and source = ?))",
            [inbox_file.sha256, inbox_file.mapping.name, inbox_file.entity.name, inbox_file.source],
        ).fetchall()[0][0]
    )


def commit_staged(
    warehouse: Connection, staged_files: list[StagedFile], run_id: str
) -> list[StagedFile]:
    """Write each staged file to raw/quarantine/ledger in a transaction of its own: a crash
    leaves every file either wholly loaded or not at all. Returns the files written: a load
    another run claimed first is left out."""
    committed = []
    for staged in staged_files:
        warehouse.begin()
        try:
            if _commit_one(warehouse, staged, run_id):
                warehouse.commit()
                committed.append(staged)
            else:
                warehouse.rollback()
        except BaseException:
            warehouse.rollback()
            raise
        staged.parser.execute(f"drop table if exists {staged.parsed_table}")
        staged.parser.execute(f"drop table if exists {staged.verdicts_table}")
        if staged.lines_table:
            staged.parser.execute(f"drop table if exists {staged.lines_table}")
    return committed


def record_load_error(
    connection: Connection, error: SourceFileError, sha256: str, run_id: str
) -> None:
    """Keep why a file could not load; it stays in the inbox and is tried again next run."""
    connection.execute(
        "insert into ops.load_errors values (?, ?, ?, ?, ?, now()::timestamp)",
        [run_id, str(error.path), sha256, error.line, error.problem],
    )


def _commit_one(warehouse: Connection, staged: StagedFile, run_id: str) -> bool:
    """Claim the load and write its rows, in the caller's transaction; False, with nothing
    written, when another run holds the claim."""
    inbox_file, entity = staged.file, staged.file.entity
    # The ledger row first: it is the claim. A concurrent extract inserting the same load
    # waits for this transaction to end, then finds the load taken (or, rolled back, free).
    # No conflict target: the load id and (content, mapping) are one key, and as arbiters
    # both end a race in "taken", never in a unique violation.
    claimed = warehouse.execute(
        """
        insert into ops.loads (load_id, run_id, entity, source, file_path, file_sha256,
            rows_read, rows_loaded, rows_quarantined, loaded_at, mapping)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp, ?)
        on conflict do nothing
        returning load_id
        """,
        [
            inbox_file.load_id,
            run_id,
            entity.name,
            inbox_file.source,
            str(inbox_file.path),
            inbox_file.sha256,
            staged.rows_read,
            staged.rows_loaded,
            staged.rows_quarantined,
            inbox_file.mapping.name,
        ],
    ).fetchall()
    if not claimed:
        return False
    column_list = ", ".join(entity.columns)
    typed_columns = typed_columns_sql(entity)
    if inbox_file.mapping.keeps_attributes:
        column_list += f", {ATTRIBUTES_COLUMN}"
        typed_columns += f", cast({ATTRIBUTES_COLUMN} as json) as {ATTRIBUTES_COLUMN}"
    _insert_staged(
        warehouse,
        staged.parser,
        f"raw.{entity.name}",
        f"{column_list}, load_id, source, source_file, source_line, loaded_at",
        f"""
        select {typed_columns}, ? as load_id, ? as source, ? as source_file,
            {staged.source_line_sql("mapped.record_number")} as source_line,
            now()::timestamp as loaded_at
        from {staged.mapped_sql()} as mapped
        anti join {staged.verdicts_table} as verdicts using (record_number)
        """,
        [inbox_file.load_id, inbox_file.source, str(inbox_file.path)],
    )
    # The original record, as the source wrote it, is kept with each rejected row.
    fields = ", ".join(
        f"{sql_text(name)}, parsed.{column.sql}" for name, column in staged.columns.items()
    )
    is_json_lines = inbox_file.mapping.format.type_of(inbox_file.path) == "jsonl"
    original = "parsed.record" if is_json_lines else f"json_object({fields})"
    _insert_staged(
        warehouse,
        staged.parser,
        "ops.quarantine",
        "load_id, run_id, stage, entity, source_file, source_line, record_key, reason_code, "
        "reason, record, quarantined_at",
        f"""
        select ? as load_id, ? as run_id, 'extract' as stage, ? as entity, ? as source_file,
            {staged.source_line_sql("verdicts.record_number")} as source_line,
            nullif(trim(mapped.{entity.key}), '') as record_key,
            rejection_code as reason_code, rejection_reason as reason, {original} as record,
            now()::timestamp as quarantined_at
        from {staged.verdicts_table} as verdicts
        inner join {staged.mapped_sql()} as mapped using (record_number)
        inner join {staged.parsed_table} as parsed on parsed.rowid + 1 = record_number
        """,
        [inbox_file.load_id, run_id, entity.name, str(inbox_file.path)],
    )
    mapping = inbox_file.mapping
    if mapping.api is not None and mapping.watermark_column is not None:
        # In the same transaction as the rows: the watermark never passes a row not loaded.
        advance_watermark(
            warehouse, mapping.api.name, entity.name, mapping.watermark_column, inbox_file.load_id
        )
    return True


def _insert_staged(
    warehouse: Connection,
    parser: duckdb.DuckDBPyConnection,
    table: str,
    columns: str,
    select: str,
    parameters: list[str],
) -> None:
    """``insert into table (columns)`` the rows of ``select``, a query over the parser's
    staged tables naming its columns as ``columns`` does: one statement when the parser is the
    warehouse, else the rows are copied over first (``register``: COPY, in batches)."""
    if parser is warehouse:
        warehouse.execute(f"insert into {table} ({columns}) {select}", parameters)
        return
    for batch in parser.sql(select, params=parameters).to_arrow_reader(COPY_BATCH_ROWS):
        warehouse.register("staged_rows", pa.Table.from_batches([batch]))
        warehouse.execute(f"insert into {table} ({columns}) select {columns} from staged_rows")
    warehouse.unregister("staged_rows")
