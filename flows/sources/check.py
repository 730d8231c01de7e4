"""A dry run of the extract: what files would load and quarantine, written nowhere.

The same staging and validation code as the real load runs against a throw-away in-memory
database, so the verdict cannot drift from what ``leadflow run`` would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from flows.sources.inbox import InboxFile, SourceFileError, file_sha256, identify, stage_file
from flows.warehouse import ensure_schema


@dataclass(frozen=True)
class FileCheck:
    path: Path
    entity: str
    rows_read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: tuple[str, ...] = ()  # "row N: reason" of a few rejected rows (N counts data rows)
    error: str | None = None  # the file could not be loaded at all

    @property
    def rows_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def rows_loaded(self) -> int:
        return self.rows_read - self.rows_quarantined


def check_files(path: Path, *, samples: int = 3, as_of: datetime | None = None) -> list[FileCheck]:
    """Check one CSV file or every CSV file of a folder."""
    clock = as_of or datetime.now(UTC).replace(tzinfo=None)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    connection = duckdb.connect()
    ensure_schema(connection)
    try:
        return [_check(connection, file, index, clock, samples) for index, file in enumerate(files)]
    finally:
        connection.close()


def _check(
    connection: duckdb.DuckDBPyConnection, path: Path, index: int, as_of: datetime, samples: int
) -> FileCheck:
    try:
        entity, source = identify(path)
        staged = stage_file(
            connection, InboxFile(path, entity, source, file_sha256(path)), as_of, index
        )
    except SourceFileError as error:
        return FileCheck(
            path, "?", error=error.problem + (f" (line {error.line})" if error.line else "")
        )
    rejected = connection.execute(
        f"select record_number, rejection_reason from {staged.table} "
        "where rejection_code is not null order by record_number limit ?",
        [samples],
    ).fetchall()
    return FileCheck(
        path,
        entity.name,
        staged.rows_read,
        staged.reasons,
        tuple(f"row {number}: {reason}" for number, reason in rejected),
    )
