"""Quarantined and loaded rows point at the line an editor shows, whatever the file holds."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from flows.settings import PROJECT_ROOT
from flows.sources.lines import count_lines, record_lines

from .test_inbox import load

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "editor-lines"


def editor_line(path: Path, text: str) -> int:
    """The line of the file holding ``text``, counted as an editor does."""
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


@pytest.mark.parametrize("name", ["leads__crm.csv", "leads__web_forms.jsonl"])
def test_quarantined_rows_name_the_line_an_editor_shows(warehouse, tmp_path, name):
    """The CSV has a header, a field over three lines and a blank line; the JSON lines a
    blank line: counting records would point one to four lines too early."""
    shutil.copy(FIXTURES / name, tmp_path / name)
    load(warehouse, tmp_path)
    quarantined = dict(
        warehouse.execute("select record_key, source_line from ops.quarantine").fetchall()
    )
    loaded = dict(warehouse.execute("select source_lead_id, source_line from raw.leads").fetchall())
    path = FIXTURES / name
    assert quarantined["2"] == editor_line(path, "bob@")
    assert loaded["1"] == editor_line(path, "ann@acme.com")
    if name.endswith(".csv"):
        assert quarantined["4"] == editor_line(path, "dee@")
        assert loaded["3"] == editor_line(path, "cy@acme.com")


def test_a_plain_csv_is_numbered_past_its_header_without_reading_its_records(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("a,b\n1,2\n3,4")  # no line break after the last record
    assert count_lines(path) == 3
    lines = record_lines(path, kind="csv", records=2)
    assert (lines.offset, lines.starts) == (1, None)


def test_quoted_line_breaks_and_blank_lines_are_read_record_by_record(tmp_path):
    path = tmp_path / "irregular.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write('a,b\r\n1,"x\r\ny"\r\n\r\n2,z\r\n3,"p\nq\nr"\r\n4,w\r\n')
    assert record_lines(path, kind="csv", records=4).starts == [2, 5, 6, 9]


def test_parquet_records_keep_their_numbers(tmp_path):
    assert record_lines(tmp_path / "any.parquet", kind="parquet", records=3).offset == 0
