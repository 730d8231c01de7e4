"""New events for the incremental run: a seeded share of the events file, replayed as new.

The rows are copied set-based by DuckDB from one CSV to another (the file is streamed, never
held in Python), so the same code serves 10k and 1M leads.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

NEW_EVENT_ID_PREFIX = "evt_inc_"


class AppendError(ValueError):
    """The appender was asked for something it cannot make; the message says what to pass."""


def append_new_events(
    events_file: Path,
    new_file: Path,
    *,
    share: float,
    seed: int,
    after: datetime,
    until: datetime,
) -> int:
    """Write to ``new_file`` about ``share`` of the rows of ``events_file`` as new events.

    Each picked row keeps its person, type, campaign and URL, gets a fresh ``event_id`` and an
    ``occurred_at`` in (``after``, ``until``]: what the same people did since the last run.
    Which rows are picked and when they happen is a pure function of (seed, event_id), so the
    same seed gives the same file. Returns the number of rows written.
    """
    if not 0 < share <= 1:
        raise AppendError(f"share must be in (0, 1], got {share}")
    if until <= after:
        raise AppendError(f"until ({until}) must be later than after ({after})")
    window_seconds = int((until - after).total_seconds())
    per_million = round(share * 1_000_000)
    with duckdb.connect() as connection:
        # Every column as text: malformed rows of the source file are replayed as they are,
        # and the extract quarantines them again, as it would in production.
        written = connection.execute(
            f"""
            copy (
                select * replace (
                    '{NEW_EVENT_ID_PREFIX}' || md5(? || '|' || event_id)[1:16] as event_id,
                    strftime(
                        ?::timestamp + to_seconds(
                            1 + hash(? || '|time|' || event_id) % {window_seconds}
                        ),
                        '%Y-%m-%dT%H:%M:%S'
                    ) as occurred_at
                )
                from read_csv(?, header = true, all_varchar = true, auto_detect = false,
                              delim = ',', quote = '"', escape = '"',
                              columns = {_header_columns(events_file)})
                where hash(? || '|pick|' || event_id) % 1000000 < {per_million}
                order by occurred_at, event_id
            ) to '{_quoted(new_file)}' (format csv, header)
            """,
            [str(seed), after, str(seed), str(events_file), str(seed)],
        ).fetchone()
    return int(written[0]) if written else 0


def _header_columns(events_file: Path) -> str:
    with events_file.open(encoding="utf-8-sig") as handle:
        header = handle.readline().strip().split(",")
    if "event_id" not in header or "occurred_at" not in header:
        raise AppendError(
            f"{events_file}: the header needs event_id and occurred_at, found {', '.join(header)}"
        )
    return "{" + ", ".join(f"'{name}': 'varchar'" for name in header) + "}"


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
