"""A dry run of the extract: what files would load and quarantine, written nowhere.

The same staging and validation code as the real load runs against a throw-away in-memory
database, so the verdict cannot drift from what ``leadflow run`` would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from flows.sources.inbox import (
    InboxFile,
    RowFates,
    SourceFileError,
    file_sha256,
    identify,
    stage_file,
)
from flows.sources.mapping import SourceMapping
from flows.warehouse import ensure_schema


@dataclass(frozen=True)
class FileCheck(RowFates):
    path: Path
    entity: str
    rows_read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: tuple[str, ...] = ()  # "row N: reason" of a few rejected rows (N counts data rows)
    error: str | None = None  # the file could not be loaded at all


def check_files(
    path: Path,
    *,
    mappings: list[SourceMapping] | None = None,
    samples: int = 3,
    as_of: datetime | None = None,
) -> list[FileCheck]:
    """Check one file, or every file of a folder that a mapping names or that is a CSV.

    ``mappings`` are tried in order, as in a real load; pass a single profile to check files
    against it whatever their names.
    """
    clock = as_of or datetime.now(UTC).replace(tzinfo=None)
    candidates = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    files = [
        file
        for file in candidates
        if file.name.lower().endswith((".csv", ".csv.gz"))
        or any(mapping.matches(file) for mapping in mappings or [])
    ]
    connection = duckdb.connect()
    ensure_schema(connection)
    try:
        return [
            _check(connection, file, index, clock, samples, mappings)
            for index, file in enumerate(files)
        ]
    finally:
        connection.close()


def _check(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    index: int,
    as_of: datetime,
    samples: int,
    mappings: list[SourceMapping] | None,
) -> FileCheck:
    entity_name = "?"
    try:
        mapping = identify(path, mappings)
        entity_name = mapping.entity.name
        staged = stage_file(connection, InboxFile(path, mapping, file_sha256(path)), as_of, index)
    except SourceFileError as error:
        return FileCheck(
            path, entity_name, error=error.problem + (f" (line {error.line})" if error.line else "")
        )
    rejected = connection.execute(
        f"select record_number, rejection_reason from {staged.verdicts_table} "
        "order by record_number limit ?",
        [samples],
    ).fetchall()
    return FileCheck(
        path,
        entity_name,
        staged.rows_read,
        staged.reasons,
        tuple(f"row {number}: {reason}" for number, reason in rejected),
    )
