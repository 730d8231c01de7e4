"""The line an editor shows for each record of a source file.

DuckDB numbers the records it reads (1, 2, …) but skips blank lines and reads a quoted field
across line breaks, so a record's number is its line only in a plain file. The line is what a
person fixing the file needs: a CSV's first record is on line 2, under the header.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


@dataclass(frozen=True)
class RecordLines:
    """Where records start: ``offset`` past their number, except those ``starts`` lists."""

    offset: int
    starts: list[int] | None = None  # the line of every record, when the file is not plain


def count_lines(path: Path) -> int:
    """Lines as an editor counts them (a last line without a line break counts)."""
    lines, last = 0, b"\n"
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def record_lines(
    path: Path,
    *,
    kind: str,
    records: int,
    encoding: str = "utf-8",
    delimiter: str = ",",
    quote: str = '"',
) -> RecordLines:
    """The line each of ``records`` records (as DuckDB read them) starts on.

    A plain file (one line per record, no blank line) costs one pass counting line breaks;
    only a file with blank lines or line breaks inside quoted fields is read record by record.
    Parquet has no lines: its records are numbered.
    """
    header_lines = 1 if kind == "csv" else 0
    if kind not in ("csv", "jsonl") or count_lines(path) == records + header_lines:
        return RecordLines(offset=header_lines)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding=encoding, newline="") as handle:
        starts = (
            _csv_record_starts(handle, delimiter, quote)
            if kind == "csv"
            else [number for number, line in enumerate(handle, start=1) if line.strip()]
        )
    # Should the reader count differently from DuckDB (it never has), numbering is the
    # honest fallback rather than lines that point at the wrong record.
    return RecordLines(header_lines, starts if len(starts) == records else None)


def _csv_record_starts(handle: IO[str], delimiter: str, quote: str) -> list[int]:
    reader = csv.reader(handle, delimiter=delimiter, quotechar=quote)
    starts: list[int] = []
    previous_end = 0
    for row in reader:
        if row:  # a blank line reads as an empty row; DuckDB skips it too
            starts.append(previous_end + 1)
        previous_end = reader.line_num
    return starts[1:]  # the first is the header
