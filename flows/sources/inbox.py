"""Load inbox files into ``raw.*``: header check, set-based validation, quarantine, ledger.

Loading happens in two phases so that a corrupt file leaves nothing half-written: every new
file is first *staged* (parsed and classified into temporary tables, which raises
``SourceFileError`` for an unreadable file) and only then *committed*, each file in its own
transaction, to ``raw.*``, ``ops.quarantine`` and the ``ops.loads`` ledger.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb

from flows.sources.catalog import ENTITIES, Entity
from flows.sources.lines import record_lines
from flows.sources.mapping import SourceMapping, quoted_name, sql_text, type_by_suffix
from flows.sources.validation import rejected_rows_sql, typed_columns_sql

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
        # One load per file content: the same bytes always get the same id.
        return f"load_{self.sha256[:20]}"


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
    parsed_table: str  # the file's columns as text, in file order (rowid + 1 = record number)
    verdicts_table: str  # record_number, rejection_code, rejection_reason of rejected rows
    header: tuple[str, ...]
    rows_read: int
    reasons: dict[str, int] = field(default_factory=dict)
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
        projection = self.file.mapping.projection_sql(self.header)
        return f"(select rowid + 1 as record_number, {projection} from {self.parsed_table})"


@dataclass(frozen=True)
class InboxScan:
    new: list[InboxFile]
    already_loaded: list[Path]
    ignored: list[Path]
    unidentified: list[SourceFileError] = field(default_factory=list)  # no mapping fits


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identify(path: Path, mappings: list[SourceMapping] | None = None) -> SourceMapping:
    """The mapping of a file: the first profile whose ``files`` match its name, else the
    naming convention ``<entity>__<source>.csv``."""
    for mapping in mappings or []:
        if mapping.matches(path):
            return mapping
    match = FILE_NAME_PATTERN.match(path.name)
    if not match or match["entity"] not in ENTITIES:
        raise SourceFileError(
            path,
            "the file name does not say what it holds; name inbox files "
            f"<entity>__<source>.csv with entity one of {', '.join(ENTITIES)} "
            "(e.g. leads__crm.csv), or write a mapping profile whose `files` match it "
            "(docs/sources.md)",
        )
    return SourceMapping.by_convention(ENTITIES[match["entity"]], match["source"])


def scan_inbox(
    connection: duckdb.DuckDBPyConnection,
    inbox_dir: Path,
    mappings: list[SourceMapping] | None = None,
) -> InboxScan:
    """Which inbox files are new (by content hash) and which were loaded before.

    A file is read when a mapping profile names it or it is a CSV, JSON-lines or Parquet file
    (gzip too); anything else is listed as ignored.
    """
    loaded = {row[0] for row in connection.execute("select file_sha256 from ops.loads").fetchall()}
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
            mapping = identify(path, mappings)
        except SourceFileError as error:
            unidentified.append(error)
            continue
        sha256 = file_sha256(path)
        if sha256 in loaded:
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
    return checked_header(inbox_file, tuple(cell.strip() for cell in first_row))


def checked_header(inbox_file: InboxFile, header: tuple[str, ...]) -> tuple[str, ...]:
    """The header, if it has every column the file's mapping needs (else a file error)."""
    path, mapping, entity = inbox_file.path, inbox_file.mapping, inbox_file.entity
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise SourceFileError(path, f"the header repeats column(s) {', '.join(repeated)}", line=1)
    missing = mapping.missing_columns(header)
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
            f"{mapping.path} reads (found: {', '.join(header)}); fix the export or the "
            "profile's `columns`",
            line=1,
        )
    return header


def _reader_problem(error: duckdb.Error) -> tuple[int | None, str]:
    """The line and the gist of DuckDB's reader error, without its query echo or advice."""
    text = str(error)
    line_match = re.search(r"(?:CSV Error on Line: |in line )(\d+)", text)
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
    if "unicode" in text.lower():
        problem = (
            "the file is not text in its declared encoding; export it as UTF-8 or set "
            "`format.encoding` in its mapping profile"
        )
    elif "Expected Number of Columns" in problem:
        problem = problem.replace("Expected Number of Columns:", "expected").replace(
            "Found:", "columns, found"
        )
        problem += " (a truncated file or an unquoted delimiter)"
    return (int(line_match[1]) if line_match else None), problem.rstrip(".")


def parse_into(
    connection: duckdb.DuckDBPyConnection, inbox_file: InboxFile, table: str
) -> tuple[str, ...]:
    """Parse a file into a temporary table in file order; returns its column names."""
    dialect = inbox_file.mapping.format
    kind = dialect.type_of(inbox_file.path)
    header = read_csv_header(inbox_file) if kind == "csv" else ()
    if kind == "csv":
        columns = "{" + ", ".join(f"{sql_text(name)}: 'varchar'" for name in header) + "}"
        # The dialect is fixed, not sniffed: sniffing a damaged file can "succeed" with the
        # wrong delimiter and load garbage, where a fixed dialect reports the broken line.
        reader = (
            "read_csv($path, header = true, auto_detect = false, delim = $delimiter, "
            f"quote = $quote, escape = $quote, encoding = $encoding, columns = {columns}, "
            "all_varchar = true)"
        )
        parameters = {
            "delimiter": dialect.delimiter,
            "quote": dialect.quote,
            "encoding": dialect.encoding,
        }
    elif kind == "jsonl":
        reader, parameters = "read_json($path, format = 'newline_delimited')", {}
    else:
        reader, parameters = "read_parquet($path)", {}
    try:
        connection.execute(
            f"create or replace temp table {table} as select * from {reader}",
            {"path": str(inbox_file.path), **parameters},
        )
    except duckdb.Error as error:
        line, problem = _reader_problem(error)
        raise SourceFileError(
            inbox_file.path, f"not a readable {kind.upper()} file: {problem}", line=line
        ) from None
    if kind == "csv":
        return header
    names = tuple(row[0] for row in connection.execute(f"describe {table}").fetchall())
    if not names:
        raise SourceFileError(inbox_file.path, "the file holds no records")
    return checked_header(inbox_file, names)


def stage_file(
    connection: duckdb.DuckDBPyConnection, inbox_file: InboxFile, as_of: datetime, index: int
) -> StagedFile:
    """Parse a file into a temporary table of classified rows (nothing permanent is written)."""
    entity = inbox_file.entity
    parsed = f"parsed_{index}"
    header = parse_into(connection, inbox_file, parsed)
    staged = StagedFile(inbox_file, parsed, f"verdicts_{index}", header, 0)
    connection.execute(
        f"""
        create or replace temp table {staged.verdicts_table} as
        {rejected_rows_sql(entity, staged.mapped_sql(), as_of)}
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


def commit_staged(
    connection: duckdb.DuckDBPyConnection, staged_files: list[StagedFile], run_id: str
) -> None:
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
    connection: duckdb.DuckDBPyConnection, error: SourceFileError, sha256: str, run_id: str
) -> None:
    """Keep why a file could not load; it stays in the inbox and is tried again next run."""
    connection.execute(
        "insert into ops.load_errors values (?, ?, ?, ?, ?, now()::timestamp)",
        [run_id, str(error.path), sha256, error.line, error.problem],
    )


def _commit_one(connection: duckdb.DuckDBPyConnection, staged: StagedFile, run_id: str) -> None:
    inbox_file, entity = staged.file, staged.file.entity
    lineage = [inbox_file.load_id, inbox_file.source, str(inbox_file.path)]
    column_list = ", ".join(entity.columns)
    # The original record, as the source wrote it, is kept with each rejected row.
    original = ", ".join(
        f"{quoted_name(name)} := parsed.{quoted_name(name)}" for name in staged.header
    )
    connection.execute(
        f"""
        insert into raw.{entity.name}
            ({column_list}, load_id, source, source_file, source_line, loaded_at)
        select {typed_columns_sql(entity)}, ?, ?, ?,
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
               rejection_code, rejection_reason, to_json(struct_pack({original})),
               now()::timestamp
        from {staged.verdicts_table} as verdicts
        inner join {staged.mapped_sql()} as mapped using (record_number)
        inner join {staged.parsed_table} as parsed on parsed.rowid + 1 = record_number
        """,
        [inbox_file.load_id, run_id, entity.name, str(inbox_file.path)],
    )
    connection.execute(
        "insert into ops.loads values (?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp)",
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
        ],
    )
