"""A dry run of the extract: what files would load and quarantine, written nowhere.

Each file goes through ``load_file`` itself, the load a run makes, against a throw-away
in-memory database, with its transaction rolled back instead of committed: the verdict
cannot drift from what ``leadflow run`` would do, down to a value that fails on insert.
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
    identify_all,
    load_file,
)
from flows.sources.mapping import SourceMapping, type_by_suffix
from flows.warehouse import ensure_schema


@dataclass(frozen=True)
class FileCheck(RowFates):
    path: Path
    entity: str
    rows_read: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: tuple[str, ...] = ()  # "row N: reason" of a few rejected rows (N counts data rows)
    absent_columns: tuple[str, ...] = ()  # mapped export columns the file lacks (loaded as null)
    error: str | None = None  # the file could not be loaded at all
    same_as: Path | None = None  # a copy of this earlier file: a run loads it once


def source_files(path: Path, mappings: list[SourceMapping] | None = None) -> list[Path]:
    """The files a run would read: those a mapping names or of a loaded format (CSV, JSON
    lines, Parquet, gzip too); ``path`` is one file or a folder."""
    if not path.is_dir():
        return [path]
    return [
        file
        for file in sorted(path.iterdir())
        if file.is_file()
        and not file.name.startswith(".")
        and (
            type_by_suffix(file) is not None
            or any(mapping.matches(file) for mapping in mappings or [])
        )
    ]


def check_files(
    path: Path,
    *,
    mappings: list[SourceMapping] | None = None,
    samples: int = 3,
    as_of: datetime | None = None,
) -> list[FileCheck]:
    """Check one file, or every file of a folder that a run would read.

    ``mappings`` are tried in order, as in a real load; pass a single profile to check files
    against it whatever their names.
    """
    clock = as_of or datetime.now(UTC).replace(tzinfo=None)
    connection = duckdb.connect()
    ensure_schema(connection)
    first_of: dict[tuple[str, str], Path] = {}  # (content, mapping) -> the first file with it
    checks = []
    try:
        index = 0
        for file in source_files(path, mappings):
            try:
                file_mappings = identify_all(file, mappings)
            except SourceFileError as error:
                checks.append(FileCheck(file, "?", error=error.problem))
                continue
            for mapping in file_mappings:  # a run loads the file once per mapping
                index += 1
                try:
                    inbox_file = InboxFile(file, mapping, file_sha256(file))
                    key = (inbox_file.sha256, mapping.name)
                    if key in first_of:
                        checks.append(FileCheck(file, mapping.entity.name, same_as=first_of[key]))
                        continue
                    load = load_file(
                        connection,
                        inbox_file,
                        clock,
                        "check",
                        index=index,
                        dry_run=True,
                        samples=samples,
                    )
                except SourceFileError as error:
                    where = f" (line {error.line})" if error.line else ""
                    checks.append(FileCheck(file, mapping.entity.name, error=error.problem + where))
                    continue
                first_of[key] = file  # loaded: a run skips later copies (a failed one retries)
                checks.append(
                    FileCheck(
                        file,
                        mapping.entity.name,
                        load.rows_read,
                        load.reasons,
                        load.samples,
                        load.absent_columns,
                    )
                )
    finally:
        connection.close()
    return checks
