"""Load inbox files into ``raw.*``: header check, set-based validation, quarantine, ledger.

Loading a file happens in two phases so that a corrupt file leaves nothing half-written: it is
first *staged* (parsed and classified into temporary tables, which raises ``SourceFileError``
for an unreadable file) and then *committed*, in a transaction of its own, to ``raw.*``,
``ops.quarantine`` and the ``ops.loads`` ledger. ``load_file`` does both and turns any error
into that file's ``SourceFileError``; a dry run (``sources check``) is the same load with the
transaction rolled back instead of committed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb

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
from flows.sources.validation import rejected_rows_sql, typed_columns_sql
from flows.warehouse import Connection

FILE_NAME_PATTERN = re.compile(
    r"^(?P<entity>[a-z]+)__(?P<source>[a-z0-9_]+?)(__[\w.-]+)?\.(csv|jsonl|ndjson|parquet)(\.gz)?$"
)
CONTRACT_DOC = "docs/data-contracts.md"


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
    connection: Connection, inbox_file: InboxFile, table: str
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
    connection: Connection, table: str, parameters: dict[str, str]
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


def stage_file(
    connection: Connection, inbox_file: InboxFile, as_of: datetime, index: int
) -> StagedFile:
    """Parse a file into a temporary table of classified rows (nothing permanent is written)."""
    entity = inbox_file.entity
    parsed = f"parsed_{index}"
    columns = parse_into(connection, inbox_file, parsed)
    staged = StagedFile(
        inbox_file,
        parsed,
        f"verdicts_{index}",
        columns,
        0,
        default_timestamp=inbox_file.mapping.timestamp_default(inbox_file.path),
    )
    connection.execute(
        f"""
        create or replace temp table {staged.verdicts_table} as
        {rejected_rows_sql(entity, staged.mapped_sql(), as_of, inbox_file.source)}
        """
    )
    rows_read = connection.execute(f"select count(*) from {parsed}").fetchall()[0][0]
    reasons = dict(
        connection.execute(
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
        connection.execute(
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


@dataclass(frozen=True)
class FileLoad(RowFates):
    """What loading one file did or, on a dry run, would do."""

    file: InboxFile
    rows_read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    absent_columns: tuple[str, ...] = ()  # mapped export columns the file lacks
    samples: tuple[str, ...] = ()  # "row N: reason" of the first rejected rows
    skipped: bool = False  # this content was loaded before under this mapping: nothing read


def load_file(
    connection: Connection,
    inbox_file: InboxFile,
    as_of: datetime,
    run_id: str,
    *,
    index: int = 0,
    dry_run: bool = False,
    samples: int = 0,
) -> FileLoad:
    """Stage one file and write it in a transaction of its own; a dry run makes the same
    writes and rolls them back, so it predicts the load exactly.

    Any error while loading the file is this file's ``SourceFileError`` (file, line when
    known, cause), so the caller records it and goes on with the other files.
    """
    if already_loaded(connection, inbox_file):
        return FileLoad(inbox_file, skipped=True)
    try:
        staged = stage_file(connection, inbox_file, as_of, index)
        rejected = connection.execute(
            f"select record_number, rejection_reason from {staged.verdicts_table} "
            "order by record_number limit ?",
            [samples],
        ).fetchall()
        connection.begin()
        try:
            _commit_one(connection, staged, run_id)
            if dry_run:
                connection.rollback()
            else:
                connection.commit()
        except BaseException:
            connection.rollback()
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
            connection.execute(f"drop table if exists {table}")
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


def commit_staged(connection: Connection, staged_files: list[StagedFile], run_id: str) -> None:
    """Write each staged file to raw/quarantine/ledger in a transaction of its own: a crash
    leaves every file either wholly loaded or not at all."""
    for staged in staged_files:
        connection.begin()
        try:
            _commit_one(connection, staged, run_id)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        connection.execute(f"drop table if exists {staged.parsed_table}")
        connection.execute(f"drop table if exists {staged.verdicts_table}")
        if staged.lines_table:
            connection.execute(f"drop table if exists {staged.lines_table}")


def record_load_error(
    connection: Connection, error: SourceFileError, sha256: str, run_id: str
) -> None:
    """Keep why a file could not load; it stays in the inbox and is tried again next run."""
    connection.execute(
        "insert into ops.load_errors values (?, ?, ?, ?, ?, now()::timestamp)",
        [run_id, str(error.path), sha256, error.line, error.problem],
    )


def _commit_one(connection: Connection, staged: StagedFile, run_id: str) -> None:
    inbox_file, entity = staged.file, staged.file.entity
    lineage = [inbox_file.load_id, inbox_file.source, str(inbox_file.path)]
    column_list = ", ".join(entity.columns)
    typed_columns = typed_columns_sql(entity)
    if inbox_file.mapping.keeps_attributes:
        column_list += f", {ATTRIBUTES_COLUMN}"
        typed_columns += f", cast({ATTRIBUTES_COLUMN} as json)"
    # The original record, as the source wrote it, is kept with each rejected row.
    fields = ", ".join(
        f"{sql_text(name)}, parsed.{column.sql}" for name, column in staged.columns.items()
    )
    is_json_lines = inbox_file.mapping.format.type_of(inbox_file.path) == "jsonl"
    original = "parsed.record" if is_json_lines else f"json_object({fields})"
    connection.execute(
        f"""
        insert into raw.{entity.name}
            ({column_list}, load_id, source, source_file, source_line, loaded_at)
        select {typed_columns}, ?, ?, ?,
            {staged.source_line_sql("mapped.record_number")}, now()::timestamp
        from {staged.mapped_sql()} as mapped
        anti join {staged.verdicts_table} as verdicts using (record_number)
        """,
        lineage,
    )
    connection.execute(
        f"""
        insert into ops.quarantine (load_id, run_id, stage, entity, source_file, source_line,
            record_key, reason_code, reason, record, quarantined_at)
        select ?, ?, 'extract', ?, ?, {staged.source_line_sql("verdicts.record_number")},
               nullif(trim(mapped.{entity.key}), ''),
               rejection_code, rejection_reason, {original},
               now()::timestamp
        from {staged.verdicts_table} as verdicts
        inner join {staged.mapped_sql()} as mapped using (record_number)
        inner join {staged.parsed_table} as parsed on parsed.rowid + 1 = record_number
        """,
        [inbox_file.load_id, run_id, entity.name, str(inbox_file.path)],
    )
    connection.execute(
        """
        insert into ops.loads (load_id, run_id, entity, source, file_path, file_sha256,
            rows_read, rows_loaded, rows_quarantined, loaded_at, mapping)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp, ?)
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
    )
    mapping = inbox_file.mapping
    if mapping.api is not None and mapping.watermark_column is not None:
        # In the same transaction as the rows: the watermark never passes a row not loaded.
        advance_watermark(
            connection, mapping.api.name, entity.name, mapping.watermark_column, inbox_file.load_id
        )
