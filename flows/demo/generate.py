"""Synthetic inbox files for demos, tests and benchmarks (``leadflow generate``).

One latent variable drives everything: each person has a ``propensity`` to buy, a standard
normal draw. It is never written out; it shows only through what it influences:

- fit: better companies (more employees, likelier an ideal-customer industry), slightly more
  senior titles; fewer personal mailboxes and students; a better channel mix (referral, event,
  webinar);
- engagement: a larger share of high-intent events (pricing page views, webinars, demo
  requests), and more recent ones. How many events someone has (mostly opens and page views)
  is their own habit, not propensity;
- outcomes, caused by fit and engagement: sales hears of a person soon after they raise a hand
  (or at some other moment), and whether that happens and ends in an opportunity or a win
  depends on propensity and on the person's buying signal at that moment: their recent,
  intent-weighted events (``activity.create_sales_outcomes``). Students and competitors'
  employees never convert.

Each influence mixes propensity with its own noise, so fit and engagement predict conversion
well, but not perfectly: a lead-scoring model can be judged by how well it ranks the people
that converted (AUC), and a better model scores higher. The shipped points misjudge this world
as teams often do (they reward reading volume, rate a demo request three pricing page views and
senior titles highly): `leadflow scoring fit` learns better ones from the outcomes.

Everything is built set-based in one in-memory DuckDB connection, with pseudo-random draws
that are a pure function of (seed, row, purpose) (see ``flows.demo.sql``), so the same seed and
as_of give byte-identical files. Data too large for memory spills to a temporary directory.

A small share of rows is malformed on purpose, each with exactly one defect
(``flows.demo.defects``); ``GeneratedDataset.bad_rows_by_reason`` says how many rows of each
file the extract must quarantine, and with which reason code.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from flows.demo import activity, people
from flows.demo.defects import EVENT_DEFECTS, LEAD_DEFECTS, OUTCOME_DEFECTS, Defect, create_bad_rows
from flows.demo.sql import install_macros, literal

EARLIEST_AS_OF = datetime(2000, 1, 1)
# Lead ids have eight digits; ten million people leave room for the bad rows' fresh ids.
MAX_LEADS = 10_000_000
# Beyond this DuckDB spills to a temporary directory: a million leads fit in about this much.
MEMORY_LIMIT = "2GB"


class GenerateError(ValueError):
    """The generator was asked for something it cannot make; the message says what to pass."""


@dataclass(frozen=True)
class GeneratedDataset:
    out_dir: Path
    files: dict[str, int]  # file name -> data rows written (bad rows included)
    bad_rows: int  # rows deliberately malformed: extract must quarantine exactly these
    bad_rows_by_reason: dict[str, dict[str, int]]  # file name -> quarantine reason_code -> rows


@dataclass(frozen=True)
class _InboxFile:
    """One inbox file: its good rows are the table of the same name, numbered by ``row_index``
    and ordered by ``sort_at``; ``columns`` says how each column is written from them."""

    table: str
    columns: dict[str, str]
    defects: tuple[Defect, ...] = ()
    bad_share: float = 0.0
    timestamp: str = "iso_t"

    @property
    def name(self) -> str:
        return f"{self.table}.csv"


INBOX_FILES = (
    _InboxFile("leads__crm", people.lead_file_columns(people.CRM_LEAD_IDS), LEAD_DEFECTS, 0.007),
    _InboxFile("leads__web_forms", people.lead_file_columns(people.WEB_FORM_IDS), LEAD_DEFECTS,
               0.007, timestamp="iso_space"),
    _InboxFile("events__marketing_automation", activity.EVENT_FILE_COLUMNS, EVENT_DEFECTS, 0.0005),
    _InboxFile("outcomes__crm", activity.OUTCOME_FILE_COLUMNS, OUTCOME_DEFECTS, 0.01),
    _InboxFile("reps__crm", people.REP_FILE_COLUMNS),
)  # fmt: skip


def generate_dataset(out_dir: Path, *, leads: int, seed: int, as_of: datetime) -> GeneratedDataset:
    """Write the inbox files for about ``leads`` people to ``out_dir`` (created if missing).

    ``as_of`` is the clock of the data (naive UTC, or aware and converted): nothing happens
    after it, so run the pipeline with an as_of no earlier than this one. Files appear whole
    or not at all: each is written under a temporary name and renamed once all are written.
    """
    clock = _checked_clock(leads=leads, seed=seed, as_of=as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="leadflow-generate-") as spill_dir,
        closing(duckdb.connect()) as connection,
    ):
        connection.execute(f"set temp_directory = {literal(spill_dir)}")
        connection.execute(f"set memory_limit = {literal(MEMORY_LIMIT)}")
        install_macros(connection, seed=seed, as_of=clock)
        people.create_companies(connection, leads=leads)
        people.create_people(connection, leads=leads)
        people.create_lead_rows(connection)
        people.create_reps(connection)
        activity.create_marketing_events(connection)
        activity.create_sales_outcomes(connection)
        bad_rows_by_reason = {
            file.name: create_bad_rows(
                connection,
                good=file.table,
                defects=file.defects,
                share=file.bad_share,
                timestamp=file.timestamp,
            )
            for file in INBOX_FILES
            if file.defects
        }
        files = _write_files(connection, out_dir)
    return GeneratedDataset(
        out_dir=out_dir,
        files=files,
        bad_rows=sum(sum(counts.values()) for counts in bad_rows_by_reason.values()),
        bad_rows_by_reason=bad_rows_by_reason,
    )


def _checked_clock(*, leads: int, seed: int, as_of: datetime) -> datetime:
    if not 1 <= leads <= MAX_LEADS:
        raise GenerateError(f"leads must be between 1 and {MAX_LEADS:,} people, got {leads:,}")
    if not -(2**63) <= seed < 2**63:
        raise GenerateError(f"seed must fit in 64 bits (a signed integer), got {seed}")
    clock = as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of
    if clock < EARLIEST_AS_OF:
        raise GenerateError(
            f"as_of {as_of.isoformat()} is too early: the data spans two years before it and "
            f"the contract rejects dates before 1990; pass an as_of after {EARLIEST_AS_OF.date()}"
        )
    return clock.replace(microsecond=0)


def _write_files(connection: duckdb.DuckDBPyConnection, out_dir: Path) -> dict[str, int]:
    """Write every file under a temporary name, then rename them all into place."""
    partials = {file.name: out_dir / f".{file.name}.{os.getpid()}.partial" for file in INBOX_FILES}
    try:
        files: dict[str, int] = {}
        for file in INBOX_FILES:
            rows = f"select * from {file.table}"
            if file.defects:
                rows += f"""
                    union all by name
                    select * exclude (bad_number, defect_kind) from {file.table}__bad"""
            columns = ", ".join(f"{sql} as {column}" for column, sql in file.columns.items())
            # The columns are computed after the sort (a projection keeps its input's order),
            # so the sort moves only the stored columns.
            written = connection.execute(f"""
                copy (
                    select {columns}
                    from ({rows} order by sort_at, row_index)
                ) to {literal(str(partials[file.name]))} (format csv, header)
            """).fetchone()
            assert written is not None  # COPY reports the rows it wrote
            files[file.name] = int(written[0])
        for name, partial in partials.items():
            partial.replace(out_dir / name)
    finally:
        for partial in partials.values():
            partial.unlink(missing_ok=True)
    return files
