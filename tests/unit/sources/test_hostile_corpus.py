"""Hostile files: every row's fate is asserted, and unreadable files fail alone and clearly."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from flows.sources.inbox import SourceFileError, commit_staged, scan_inbox, stage_file
from flows.sources.mapping import load_mapping

AS_OF = datetime(2026, 11, 22)
HEADER = "source_lead_id,email,first_name,company,created_at,updated_at"
ROW = "{key},{email},{name},{company},2026-01-01,2026-01-02"


def rows(*items: tuple[str, str, str, str]) -> str:
    return "".join(ROW.format(key=k, email=e, name=n, company=c) + "\n" for k, e, n, c in items)


# file name -> (bytes, rows in the file, rows expected to load, quarantine reasons)
CORPUS: dict[str, tuple[bytes, int, int, dict[str, int]]] = {
    "leads__bom.csv": (
        (
            "\ufeff"
            + HEADER
            + "\n"
            + rows(("1", "a@x.com", "Ann", "A"), ("2", "b@x.com", "Bo", "B"))
        ).encode(),
        2,
        2,
        {},
    ),
    "leads__newlines.csv": (
        (HEADER + "\n" + rows(("1", "a@x.com", '"Ann\nMarie"', '"Acme,\r\nInc."'))).encode(),
        1,
        1,
        {},
    ),
    "leads__unicode.csv": (
        (
            HEADER
            + "\n"
            + rows(("1", "zoe@x.com", "Zoë 🚀", "東京商事"), ("2", "ali@x.com", "علي", "Ωmega"))
        ).encode(),
        2,
        2,
        {},
    ),
    "leads__huge_field.csv": (
        (
            HEADER + "\n" + rows(("1", "a@x.com", "A" * 10_000, "A"), ("2", "b@x.com", "Bo", "B"))
        ).encode(),
        2,
        1,
        {"field_too_long": 1},
    ),
    "leads__injection.csv": (
        (
            HEADER
            + "\n"
            + rows(
                ("1", "a@x.com", "'; drop table raw.leads; --", '"<script>alert(1)</script>"'),
                ("2", "b@x.com", "Robert'); --", "<img src=x onerror=alert(1)>"),
            )
        ).encode(),
        2,
        2,
        {},
    ),
    "leads__duplicates.csv": (
        (
            HEADER
            + "\n"
            + rows(
                ("1", "a@x.com", "Ann", "A"),
                ("1", "a@x.com", "Ann", "A"),
                ("2", "b@x.com", "Bo", "B"),
            )
        ).encode(),
        3,
        2,
        {"duplicate_key": 1},
    ),
    "leads__header_only.csv": ((HEADER + "\n").encode(), 0, 0, {}),
    "badge-scans-latin1.csv": (
        "Badge;Mail;Vorname;Scanned\nB1;j\xfcrgen@example.de;J\xfcrgen;30.09.2026\nB2;eva@example.de;Eva;31.09.2026\n".encode(
            "latin-1"
        ),
        2,
        1,
        {"invalid_timestamp": 1},
    ),
}
UNREADABLE = {
    "leads__empty.csv": (b"", "the file is empty"),
    "leads__garbage.csv": (
        random.Random(7).randbytes(4096).replace(b"\n", b"\x00") + b"\xff\xfe",
        "not UTF-8 text",
    ),
    "leads__truncated.csv": (
        (HEADER + "\n" + rows(("1", "a@x.com", "Ann", "A")) + "2,b@x.com,B").encode(),
        "expected 6 columns",
    ),
    "leads__wrong_header.csv": (b"id;mail\n1;a@x.com\n", "lacks required column(s) source_lead_id"),
}
BADGE_PROFILE = """
source: trade_show
entity: leads
files: ["badge-scans-*.csv"]
format: {delimiter: ";", encoding: latin-1}
columns: {source_lead_id: Badge, email: Mail, first_name: Vorname, created_at: Scanned}
constants: {updated_at: "2026-10-01 00:00:00"}
timestamp_formats: {created_at: "%d.%m.%Y"}
"""


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, (content, *_rest) in CORPUS.items():
        (inbox / name).write_bytes(content)
    for name, (content, _) in UNREADABLE.items():
        (inbox / name).write_bytes(content)
    (tmp_path / "badge.yml").write_text(BADGE_PROFILE)
    return inbox, [load_mapping(tmp_path / "badge.yml")]


def test_every_row_of_every_readable_file_is_loaded_or_quarantined(warehouse, parser, corpus):
    inbox, mappings = corpus
    files = {f.path.name: f for f in scan_inbox(warehouse, inbox, mappings).new}
    staged = [stage_file(warehouse, parser, files[name], AS_OF, i) for i, name in enumerate(CORPUS)]
    commit_staged(warehouse, staged, "run-1")
    for result in staged:
        _, read, loaded, reasons = CORPUS[result.file.path.name]
        assert (result.rows_read, result.rows_loaded, result.reasons) == (read, loaded, reasons), (
            result.file.path.name
        )
        in_raw = warehouse.execute(
            "select count(*) from raw.leads where source_file = ?", [str(result.file.path)]
        ).fetchone()[0]
        in_quarantine = warehouse.execute(
            "select count(*) from ops.quarantine where source_file = ?", [str(result.file.path)]
        ).fetchone()[0]
        assert in_raw + in_quarantine == read, result.file.path.name


def test_hostile_text_is_stored_verbatim(warehouse, parser, corpus):
    inbox, mappings = corpus
    files = {f.path.name: f for f in scan_inbox(warehouse, inbox, mappings).new}
    names = [
        "leads__injection.csv",
        "leads__unicode.csv",
        "leads__newlines.csv",
        "badge-scans-latin1.csv",
    ]
    commit_staged(
        warehouse,
        [stage_file(warehouse, parser, files[n], AS_OF, i) for i, n in enumerate(names)],
        "run-1",
    )
    stored = {row[0] for row in warehouse.execute("select first_name from raw.leads").fetchall()}
    assert {"'; drop table raw.leads; --", "Zoë 🚀", "علي", "Ann\nMarie", "Jürgen"} <= stored
    companies = {row[0] for row in warehouse.execute("select company from raw.leads").fetchall()}
    assert {"<script>alert(1)</script>", "東京商事", "Acme,\r\nInc."} <= companies


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_files_fail_alone_with_the_reason(warehouse, parser, corpus, name):
    inbox, mappings = corpus
    files = {f.path.name: f for f in scan_inbox(warehouse, inbox, mappings).new}
    with pytest.raises(SourceFileError) as raised:
        stage_file(warehouse, parser, files[name], AS_OF, 0)
    assert name in str(raised.value)
    assert UNREADABLE[name][1] in str(raised.value)
