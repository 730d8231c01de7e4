from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from flows.extract import load_inbox
from flows.settings import load_settings
from flows.sources.inbox import (
    FileLoad,
    SourceFileError,
    commit_staged,
    file_sha256,
    identify,
    load_file,
    parsing_connection,
    scan_inbox,
    stage_file,
)
from flows.warehouse import ensure_schema, open_warehouse

AS_OF = datetime(2026, 11, 22)
LEADS_HEADER = (
    "source_lead_id,email,first_name,created_at,updated_at,employee_count,is_do_not_email"
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def load(warehouse: duckdb.DuckDBPyConnection, inbox: Path, run_id: str = "run-1") -> list:
    scan = scan_inbox(warehouse, inbox)
    with parsing_connection(warehouse) as parser:
        staged = [stage_file(warehouse, parser, f, AS_OF, i) for i, f in enumerate(scan.new)]
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
    assert staged.rows_loaded == 3
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
        ("6", None, "E", None, False, "crm", 9),  # no email: known by its record id
        ("10", "i@y.com", "<script>alert(1)</script>", None, False, "crm", 13),
    ]
    ledger = warehouse.execute(
        "select entity, source, rows_read, rows_loaded, rows_quarantined from ops.loads"
    ).fetchall()
    assert ledger == [("leads", "crm", 11, 3, 8)]


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
        (
            "id,mail\n1,a@b.com\n",
            1,
            "lacks required column(s) source_lead_id, created_at, updated_at",
        ),
        ("", 1, "the file is empty"),
        (f"{LEADS_HEADER},email\n", 1, "repeats column(s) email"),
    ],
)
def test_unreadable_file_names_file_line_and_problem(
    warehouse, parser, tmp_path, content, line, fragment
):
    path = write(tmp_path / "leads__crm.csv", content)
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(SourceFileError) as raised:
        stage_file(warehouse, parser, inbox_file, AS_OF, 0)
    assert raised.value.path == path
    assert raised.value.line == line
    assert fragment in str(raised.value)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("bad_line", [1, 5000])
def test_non_utf8_file_is_a_file_error(warehouse, parser, tmp_path, bad_line):
    good = "".join(f"{n},a{n}@b.com,A,2026-01-01,2026-01-02,,\n" for n in range(1, bad_line))
    write(
        tmp_path / "leads__crm.csv",
        f"{LEADS_HEADER}\n{good}0,z@b.com,Ren\xe9,2026-01-01,2026-01-02,,\n",
        "latin-1",
    )
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(SourceFileError, match=r"not UTF-8 text|not text in its declared encoding"):
        stage_file(warehouse, parser, inbox_file, AS_OF, 0)


def test_a_failing_commit_leaves_that_file_wholly_unloaded(warehouse, parser, tmp_path):
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n")
    write(
        tmp_path / "leads__web_forms.csv", f"{LEADS_HEADER}\n2,c@d.com,C,2026-01-01,2026-01-02,,\n"
    )
    scan = scan_inbox(warehouse, tmp_path)
    staged = [stage_file(warehouse, parser, f, AS_OF, i) for i, f in enumerate(scan.new)]
    parser.execute(f"drop table {staged[1].verdicts_table}")  # the second commit will fail
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
    assert (staged.rows_read, staged.rows_loaded, staged.reasons) == (
        3,
        2,
        {"missing_contact_key": 1},
    )
    assert warehouse.execute(
        "select event_id, event_type, occurred_at, message_key, source from raw.events order by 1"
    ).fetchall() == [
        ("e1", "email_open", datetime(2026, 11, 21, 10), None, "sendgrid"),
        ("e3", "bounce", datetime(2026, 11, 21, 10, 6), "k1", "sendgrid"),
    ]


def test_parquet_files_load(warehouse, tmp_path):
    path = tmp_path / "reps__hr.parquet"
    duckdb.execute(  # the file is written by DuckDB, whatever the warehouse
        f"copy (select 'r1' as rep_id, 'Ann' as name, 'ann@x.com' as email, 'EMEA' as region, "
        f"true as is_active) to '{path}' (format parquet)"
    )
    (staged,) = load(warehouse, tmp_path)
    assert staged.rows_loaded == 1
    assert warehouse.execute("select rep_id, is_active, source from raw.reps").fetchall() == [
        ("r1", True, "hr")
    ]


def test_malformed_json_names_the_file_and_line(warehouse, parser, tmp_path):
    write(
        tmp_path / "events__web.jsonl",
        '{"event_id": "e1"}\n{"event_id": "e2"\n{"event_id": "e3"}\n',
    )
    (inbox_file,) = scan_inbox(warehouse, tmp_path).new
    with pytest.raises(
        SourceFileError, match=r"not a readable JSONL file: Malformed JSON"
    ) as raised:
        stage_file(warehouse, parser, inbox_file, AS_OF, 0)
    assert raised.value.line is not None


def load_each(warehouse: duckdb.DuckDBPyConnection, inbox: Path, mappings=None) -> dict:
    """Each new file's FileLoad, or its SourceFileError: the extract's loop, file by file."""
    outcomes: dict[str, FileLoad | SourceFileError] = {}
    for index, inbox_file in enumerate(scan_inbox(warehouse, inbox, mappings).new):
        try:
            outcomes[inbox_file.path.name] = load_file(
                warehouse, inbox_file, AS_OF, "run-1", index=index
            )
        except SourceFileError as error:
            outcomes[inbox_file.path.name] = error
    return outcomes


def test_header_names_that_are_sql_words_load(warehouse, tmp_path):
    # `rowid` shadowed DuckDB's row number and aborted the whole extract (a binder error).
    write(
        tmp_path / "leads__crm.csv",
        "source_lead_id,email,created_at,updated_at,rowid,select,order,ROWID\n"
        "1,a@b.com,2026-01-01,2026-01-02,r,s,o,R\n",
    )
    (outcome,) = load_each(warehouse, tmp_path).values()
    assert isinstance(outcome, FileLoad) and outcome.rows_loaded == 1
    # The record's line as an editor shows it: the header is line 1.
    assert warehouse.execute("select source_lead_id, source_line from raw.leads").fetchall() == [
        ("1", 2)
    ]


def test_numbers_are_validated_against_the_column_they_land_in(warehouse, tmp_path):
    # 99999999999 is a bigint but not an integer: it overflowed the insert, failing the run.
    write(
        tmp_path / "leads__crm.csv",
        f"{LEADS_HEADER}\n"
        "1,a@b.com,A,2026-01-01,2026-01-02,99999999999,\n"
        "2,b@b.com,B,2026-01-01,2026-01-02,2147483647,\n"
        "3,c@b.com,C,2026-01-01,2026-01-02,2147483648,\n"
        "4,d@b.com,D,2026-01-01,2026-01-02,-5,\n",
    )
    (outcome,) = load_each(warehouse, tmp_path).values()
    assert isinstance(outcome, FileLoad)
    assert outcome.reasons == {"out_of_range": 2, "invalid_number": 1}
    assert warehouse.execute("select source_lead_id, employee_count from raw.leads").fetchall() == [
        ("2", 2147483647)
    ]
    assert warehouse.execute(
        "select reason from ops.quarantine where record_key = '1'"
    ).fetchone() == ('employee_count "99999999999" is out of range (0 to 2147483647)',)


def test_json_lines_keep_scalars_and_quarantine_objects_where_a_value_belongs(warehouse, tmp_path):
    record = {"source_lead_id": "1", "created_at": "2026-01-01", "updated_at": "2026-01-02"}
    lines = [
        {**record, "email": "a@b.com", "company": "Acme", "employee_count": 12},
        {**record, "source_lead_id": "2", "email": "b@b.com", "company": {"name": "Acme"}},
        {**record, "source_lead_id": "3", "email": "c@b.com", "company": ["Acme"]},
        {**record, "source_lead_id": "4", "email": "d@b.com", "is_do_not_email": True},
    ]
    write(tmp_path / "leads__api.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    (outcome,) = load_each(warehouse, tmp_path).values()
    assert isinstance(outcome, FileLoad)
    assert outcome.reasons == {"nested_value": 2}
    # A string stays the string (no quotes reach the email); numbers and booleans their text.
    assert warehouse.execute(
        "select source_lead_id, company, employee_count, is_do_not_email from raw.leads order by 1"
    ).fetchall() == [("1", "Acme", 12, False), ("4", None, None, True)]
    reason, company = warehouse.execute(
        "select reason, record->'$.company' from ops.quarantine where record_key = '2'"
    ).fetchone()
    assert reason == "company holds an object or a list where a single value is expected"
    assert json.loads(company) == {"name": "Acme"}  # as written (PostgreSQL keeps the spacing)


def test_the_same_bytes_under_two_mappings_are_two_loads(warehouse, tmp_path):
    content = f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n"
    write(tmp_path / "leads__crm.csv", content)
    write(tmp_path / "leads__web_forms.csv", content)
    outcomes = load_each(warehouse, tmp_path)
    assert all(isinstance(o, FileLoad) and not o.skipped for o in outcomes.values())
    assert warehouse.execute(
        "select leads.source, mapping from raw.leads join ops.loads using (load_id) order by 1"
    ).fetchall() == [("crm", "leads__crm"), ("web_forms", "leads__web_forms")]
    # The next run finds both loaded: skipped, nothing loads twice.
    scan = scan_inbox(warehouse, tmp_path)
    assert (scan.new, len(scan.already_loaded)) == ([], 2)


def test_a_copy_under_the_same_mapping_is_skipped_not_fatal(warehouse, tmp_path):
    content = f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n"
    write(tmp_path / "leads__crm.csv", content)
    write(tmp_path / "leads__crm__copy.csv", content)
    outcomes = load_each(warehouse, tmp_path)
    assert [(name, o.skipped) for name, o in outcomes.items()] == [
        ("leads__crm.csv", False),
        ("leads__crm__copy.csv", True),
    ]
    assert warehouse.execute("select count(*) from raw.leads").fetchone() == (1,)


def test_an_error_at_insert_is_that_files_error_and_it_is_retried(warehouse, tmp_path):
    write(tmp_path / "leads__crm.csv", f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n")
    write(tmp_path / "reps__hr.csv", "rep_id,name,email,region\nr1,Ann,ann@x.com,EMEA\n")
    # A column the insert writes is gone: the leads file's insert fails, the reps file's not.
    warehouse.execute("alter table raw.leads drop column title")
    outcomes = load_each(warehouse, tmp_path)
    error = outcomes["leads__crm.csv"]
    assert isinstance(error, SourceFileError)
    assert "could not be loaded (" in str(error) and str(error.path) in str(error)
    assert isinstance(outcomes["reps__hr.csv"], FileLoad)  # the other file loaded
    assert warehouse.execute("select entity from ops.loads").fetchall() == [("reps",)]
    assert warehouse.execute("select count(*) from raw.leads").fetchone() == (0,)
    # Not loaded, so not skipped: the next run tries it again.
    assert [f.path.name for f in scan_inbox(warehouse, tmp_path).new] == ["leads__crm.csv"]


def test_a_warehouse_from_before_per_mapping_loads_is_migrated(tmp_path):
    connection = duckdb.connect()
    connection.execute("create schema ops")
    connection.execute(
        """
        create table ops.loads (load_id varchar primary key, run_id varchar,
            entity varchar not null, source varchar not null, file_path varchar not null,
            file_sha256 varchar not null unique, rows_read bigint not null,
            rows_loaded bigint not null, rows_quarantined bigint not null,
            loaded_at timestamp not null)
        """
    )
    content = f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n"
    path = write(tmp_path / "leads__crm.csv", content)
    connection.execute(
        "insert into ops.loads values ('load_old', 'r0', 'leads', 'crm', ?, ?, 1, 1, 0, now())",
        [str(path), file_sha256(path)],
    )
    ensure_schema(connection)
    ensure_schema(connection)  # safe to run again
    assert connection.execute("select load_id, mapping from ops.loads").fetchall() == [
        ("load_old", None)
    ]
    # Loaded before the migration: still loaded, whatever mapping reads it now.
    assert [p.name for p in scan_inbox(connection, tmp_path).already_loaded] == ["leads__crm.csv"]
    write(tmp_path / "leads__web.csv", content)  # the same bytes under another mapping
    (inbox_file,) = scan_inbox(connection, tmp_path).new
    assert not load_file(connection, inbox_file, AS_OF, "run-1").skipped


def test_the_extract_loop_goes_on_past_a_bad_file_and_retries_it(
    tmp_path, monkeypatch, warehouse_setting
):
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    content = f"{LEADS_HEADER}\n1,a@b.com,A,2026-01-01,2026-01-02,,\n"
    write(inbox / "leads__crm.csv", content)
    write(inbox / "leads__web_forms.csv", content)  # the same bytes, another mapping
    write(inbox / "leads__broken.csv", f'{LEADS_HEADER}\n1,a@b.com,"A\n')
    first = load_inbox.fn("run-1", AS_OF)
    assert (first.files_loaded, first.files_skipped, first.rows_loaded) == (2, 0, {"leads": 2})
    assert len(first.file_errors) == 1 and "leads__broken.csv" in first.file_errors[0]
    second = load_inbox.fn("run-2", AS_OF)
    # Loaded files are skipped; the failed one is tried again, never reported as skipped.
    assert (second.files_loaded, second.files_skipped) == (0, 2)
    assert len(second.file_errors) == 1 and "leads__broken.csv" in second.file_errors[0]
    with open_warehouse(load_settings().warehouse, read_only=True) as warehouse:
        assert warehouse.execute(
            "select run_id, line from ops.load_errors order by run_id"
        ).fetchall() == [("run-1", 2), ("run-2", 2)]
