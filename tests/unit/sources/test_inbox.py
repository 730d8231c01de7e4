from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from flows.sources.inbox import (
    SourceFileError,
    commit_staged,
    identify,
    scan_inbox,
    stage_file,
)

AS_OF = datetime(2026, 11, 22)
LEADS_HEADER = (
    "source_lead_id,email,first_name,created_at,updated_at,employee_count,is_do_not_email"
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def load(warehouse: duckdb.DuckDBPyConnection, inbox: Path, run_id: str = "run-1") -> list:
    scan = scan_inbox(warehouse, inbox)
    staged = [stage_file(warehouse, f, AS_OF, i) for i, f in enumerate(scan.new)]
    commit_staged(warehouse, staged, run_id)
    return staged


def test_every_row_is_loaded_or_quarantined_with_its_reason(warehouse, tmp_path):
    write(
        tmp_path / "leads__crm.csv",
        "\n".join(
            [
                LEADS_HEADER,
                "1, Jane@Acme.com ,Jane,2026-01-01,2026-01-02,50,",
                "2,jane.doe@,Bob,2026-01-01,2026-01-02,,",
                '3,x@y.com,"Multi\nline",2026-02-30,2026-03-01,,',
                "4,z@y.com,Zed,2026-01-05,2026-01-01,,yes",
                "5,q@y.com,Q,2026-01-05,2026-01-06,many,",
                "1,dup@y.com,D,2026-01-05,2026-01-06,,",
                "6,,E,2026-01-05,2026-01-06,,",
                "7,f@y.com,F,2099-01-05,2099-01-06,,",
                "8,g@y.com,G,1899-12-31,2026-01-06,,",
                "9,h@y.com,H,2026-01-05,2026-01-06,,maybe",
                "10,i@y.com,<script>alert(1)</script>,2026-01-05,2026-01-06,,no",
            ]
        )
        + "\n",
    )
    (staged,) = load(warehouse, tmp_path)
    assert staged.rows_read == 11
    assert staged.rows_loaded == 2
    quarantined = dict(
        warehouse.execute(
            "select record_key, reason_code from ops.quarantine where stage = 'extract'"
        ).fetchall()
    )
    assert quarantined == {
        "2": "malformed_email",
        "3": "invalid_timestamp",
        "4": "out_of_order",
        "5": "invalid_number",
        "1": "duplicate_key",
        "6": "missing_contact_key",
        "7": "impossible_date",
        "8": "impossible_date",
        "9": "invalid_boolean",
    }
    loaded = warehouse.execute(
        "select source_lead_id, email, first_name, employee_count, is_do_not_email, source,"
        " source_line from raw.leads order by source_line"
    ).fetchall()
    assert loaded == [
        ("1", " Jane@Acme.com ", "Jane", 50, False, "crm", 2),
        ("10", "i@y.com", "<script>alert(1)</script>", None, False, "crm", 13),
    ]
    ledger = warehouse.execute(
        "select entity, source, rows_read, rows_loaded, rows_quarantined from ops.loads"
    ).fetchall()
    assert ledger == [("leads", "crm", 11, 2, 9)]


def test_quarantine_keeps_the_original_record_and_a_readable_reason(warehouse, tmp_path):
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n2,jane.doe@,Bob,2026-01-01,2026-01-02,,\n")
    load(warehouse, tmp_path)
    reason, record, line = warehouse.execute(
        "select reason, record->>'$.first_name', source_line from ops.quarantine"
    ).fetchone()
    assert reason == 'email "jane.doe@" is not an email address'
    assert record == "Bob"
    assert line == 2  # the header is line 1


def test_same_file_twice_loads_nothing_new(warehouse, tmp_path):
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n")
    load(warehouse, tmp_path)
    assert load(warehouse, tmp_path) == []
    scan = scan_inbox(warehouse, tmp_path)
    assert [p.name for p in scan.already_loaded] == ["leads__crm.csv"]
    assert warehouse.execute("select count(*) from raw.leads").fetchone() == (1,)


def test_changed_file_loads_as_a_new_version(warehouse, tmp_path):
    path = write(
        tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n"
    )
    load(warehouse, tmp_path)
    write(path, f"{LEADS_HEADER}\n1,a@b.com,Ann,2026-01-01,2026-01-03,,\n")
    load(warehouse, tmp_path)
    assert warehouse.execute("select count(*) from ops.loads").fetchone() == (2,)
    assert warehouse.execute(
        "select list(first_name order by updated_at) from raw.leads"
    ).fetchone() == (["A", "Ann"],)


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        (
            f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n2,b@b.com",
            3,
            "expected 7 columns",
        ),
        (f'{LEADS_HEADER}\n1,a@b.com,"A,2026-01-01,2026-01-02,,\n', 2, "unterminated quote"),
        ("id,mail\n1,a@b.com\n", 1, "lacks required column(s) source_lead_id, email, created_at"),
        ("", 1, "the file is empty"),
        (f"{LEADS_HEADER},email\n", 1, "repeats column(s) email"),
    ],
)
def test_unreadable_file_names_file_line_and_problem(warehouse, tmp_path, content, line, fragment):
    path = write(tmp_path / "leads__crm.csv", content)
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(SourceFileError) as raised:
        stage_file(warehouse, inbox_file, AS_OF, 0)
    assert raised.value.path == path
    assert raised.value.line == line
    assert fragment in str(raised.value)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("bad_line", [1, 5000])
def test_non_utf8_file_is_a_file_error(warehouse, tmp_path, bad_line):
    good = "".join(f"{n},a{n}@b.com,A,2026-01-01,2026-01-02,,\n" for n in range(1, bad_line))
    write(
        tmp_path / "leads__crm.csv",
        f"{LEADS_HEADER}\n{good}0,z@b.com,Ren\xe9,2026-01-01,2026-01-02,,\n",
        "latin-1",
    )
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(SourceFileError, match=r"not UTF-8 text|not text in its declared encoding"):
        stage_file(warehouse, inbox_file, AS_OF, 0)


def test_a_failing_commit_leaves_that_file_wholly_unloaded(warehouse, tmp_path):
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n")
    write(
        tmp_path / "leads__web_forms.csv", f"{LEADS_HEADER}\n2,c@d.com,C,2026-01-01,2026-01-02,,\n"
    )
    scan = scan_inbox(warehouse, tmp_path)
    staged = [stage_file(warehouse, f, AS_OF, i) for i, f in enumerate(scan.new)]
    warehouse.execute(f"drop table {staged[1].verdicts_table}")  # the second commit will fail
    with pytest.raises(duckdb.Error):
        commit_staged(warehouse, staged, "run-1")
    # One transaction per file: the first is wholly loaded, the second not at all.
    assert warehouse.execute("select source from raw.leads").fetchall() == [("crm",)]
    assert warehouse.execute("select source from ops.loads").fetchall() == [("crm",)]
    assert scan_inbox(warehouse, tmp_path).new[0].path.name == "leads__web_forms.csv"


def test_unidentified_file_names_are_reported_not_fatal(warehouse, tmp_path):
    write(tmp_path / "contacts.csv", "a,b\n1,2\n")
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n")
    scan = scan_inbox(warehouse, tmp_path)
    assert [f.path.name for f in scan.new] == ["leads__crm.csv"]
    assert [e.path.name for e in scan.unidentified] == ["contacts.csv"]


def test_file_names_pick_entity_and_source(tmp_path):
    mapping = identify(tmp_path / "events__marketing_automation__2026-11.csv")
    assert (mapping.entity.name, mapping.source) == ("events", "marketing_automation")
    with pytest.raises(SourceFileError, match=r"<entity>__<source>\.csv"):
        identify(tmp_path / "contacts.csv")


def test_non_csv_files_are_ignored_not_loaded(warehouse, tmp_path):
    write(tmp_path / "README.txt", "notes")
    scan = scan_inbox(warehouse, tmp_path)
    assert scan.new == [] and [p.name for p in scan.ignored] == ["README.txt"]


def test_json_lines_load_with_extra_and_nested_fields(warehouse, tmp_path):
    write(
        tmp_path / "events__sendgrid__2026-11-22T10.jsonl",
        '{"event_id": "e1", "email": "A@b.com", "event_type": "email_open", "occurred_at": "2026-11-21T10:00:00", "sg": {"ip": "1.2.3.4"}}\n'
        '{"event_id": "e2", "email": "", "event_type": "email_click", "occurred_at": "2026-11-21T10:05:00"}\n'
        '{"event_id": "e3", "email": "c@d.com", "event_type": "bounce", "occurred_at": "2026-11-21T10:06:00", "message_key": "k1"}\n',
    )
    (staged,) = load(warehouse, tmp_path)
    assert (staged.rows_read, staged.rows_loaded, staged.reasons) == (3, 2, {"missing_required": 1})
    assert warehouse.execute(
        "select event_id, event_type, occurred_at, message_key, source from raw.events order by 1"
    ).fetchall() == [
        ("e1", "email_open", datetime(2026, 11, 21, 10), None, "sendgrid"),
        ("e3", "bounce", datetime(2026, 11, 21, 10, 6), "k1", "sendgrid"),
    ]


def test_parquet_files_load(warehouse, tmp_path):
    path = tmp_path / "reps__hr.parquet"
    warehouse.execute(
        f"copy (select 'r1' as rep_id, 'Ann' as name, 'ann@x.com' as email, 'EMEA' as region, "
        f"true as is_active) to '{path}' (format parquet)"
    )
    (staged,) = load(warehouse, tmp_path)
    assert staged.rows_loaded == 1
    assert warehouse.execute("select rep_id, is_active, source from raw.reps").fetchall() == [
        ("r1", True, "hr")
    ]


def test_malformed_json_names_the_file_and_line(warehouse, tmp_path):
    write(
        tmp_path / "events__web.jsonl",
        '{"event_id": "e1"}\n{"event_id": "e2"\n{"event_id": "e3"}\n',
    )
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(
        SourceFileError, match=r"not a readable JSONL file: Malformed JSON"
    ) as raised:
        stage_file(warehouse, inbox_file, AS_OF, 0)
    assert raised.value.line is not None
