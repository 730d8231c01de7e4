from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from flows.cli import app
from flows.sources.check import check_files
from flows.sources.inbox import load_file, scan_inbox
from flows.sources.mapping import SHIPPED_PROFILES

EXPORTS = Path(__file__).parents[2] / "fixtures" / "exports"

HEADER = "source_lead_id,email,created_at,updated_at"


def test_dry_run_reports_fates_and_samples_without_writing(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "leads__crm.csv").write_text(
        f"{HEADER}\n1,a@b.com,2026-01-01,2026-01-02\n2,nope,2026-01-01,2026-01-02\n3,c@d.com,2026-02-30,2026-03-01\n"
    )
    (inbox / "events__web.csv").write_text("id,mail\n1,a@b.com\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))

    leads, events = sorted(
        check_files(inbox, samples=5, as_of=datetime(2026, 11, 22)), key=lambda r: r.entity
    )[::-1]

    assert (leads.rows_read, leads.rows_loaded, leads.rows_quarantined) == (3, 1, 2)
    assert leads.reasons == {"malformed_email": 1, "invalid_timestamp": 1}
    assert leads.samples == (
        'row 2: email "nope" is not an email address',
        'row 3: created_at "2026-02-30" is not a date (expected ISO 8601)',
    )
    assert "lacks required column(s) event_id" in events.error
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_cli_exits_non_zero_when_a_file_cannot_load(tmp_path):
    (tmp_path / "leads__crm.csv").write_text(f"{HEADER}\n1,a@b.com,2026-01-01,2026-01-02\n")
    result = CliRunner().invoke(app, ["sources", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "leads__crm.csv" in result.output
    (tmp_path / "contacts.csv").write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["sources", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "<entity>__<source>.csv" in result.output


def test_json_lines_and_parquet_files_are_checked_like_csv(tmp_path):
    (tmp_path / "events__web.jsonl").write_text(
        '{"event_id": "e1", "email": "a@b.com", "event_type": "page_view",'
        ' "occurred_at": "2026-11-01T10:00:00"}\n'
        '{"event_id": "e2", "email": {"work": "a@b.com"}, "event_type": "page_view",'
        ' "occurred_at": "2026-11-01T10:00:00"}\n'
    )
    duckdb.execute(
        "copy (select * from (values ('r1', 'Ann', 'ann@x.com', 'EMEA'),"
        " ('r2', 'Bo', 'bo@x.com', 'MARS')) as t(rep_id, name, email, region))"
        f" to '{tmp_path / 'reps__hr.parquet'}' (format parquet)"
    )
    events, reps = check_files(tmp_path, as_of=datetime(2026, 11, 22))
    assert (events.rows_read, events.rows_loaded, events.reasons) == (2, 1, {"nested_value": 1})
    assert (reps.rows_read, reps.rows_loaded, reps.reasons) == (2, 1, {"unknown_value": 1})
    result = CliRunner().invoke(app, ["sources", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "events__web.jsonl" in result.output and "reps__hr.parquet" in result.output
    assert "nested_value 1" in result.output and "unknown_value 1" in result.output


def test_the_dry_run_predicts_the_load_exactly(warehouse, tmp_path):
    # A hostile header, an overflowing number and a copy: what check says is what loads.
    content = (
        f"{HEADER},rowid,employee_count\n"
        "1,a@b.com,2026-01-01,2026-01-02,x,99999999999\n"
        "2,b@b.com,2026-01-01,2026-01-02,y,12\n"
    )
    (tmp_path / "leads__crm.csv").write_text(content)
    (tmp_path / "leads__crm__again.csv").write_text(content)
    checks = check_files(tmp_path, as_of=datetime(2026, 11, 22))
    loads = [
        load_file(warehouse, f, datetime(2026, 11, 22), "run-1", index=i)
        for i, f in enumerate(scan_inbox(warehouse, tmp_path).new)
    ]
    assert [(c.rows_read, c.rows_loaded, c.reasons, c.same_as is not None) for c in checks] == [
        (load.rows_read, load.rows_loaded, load.reasons, load.skipped)
        for load in loads
        if not load.skipped
    ] + [(0, 0, {}, True)]
    assert loads[1].skipped
    assert warehouse.execute("select count(*) from raw.leads").fetchone() == (1,)


def test_mapping_option_takes_a_profile_name_or_a_path(tmp_path):
    export = EXPORTS / "hubspot-crm-exports-picked-contacts-2026-11-22.csv"
    renamed = tmp_path / "picked.csv"  # a name no profile matches: --mapping decides
    shutil.copy(export, renamed)
    by_name = CliRunner().invoke(
        app, ["sources", "check", str(renamed), "--mapping", "hubspot_contacts"]
    )
    assert by_name.exit_code == 0, by_name.output
    # 202 has no email: its record id finds it, so all three rows would load.
    assert "│    3 │          3 │                0 │" in by_name.output
    assert "absent column(s)" in by_name.output and "Create Date" in by_name.output
    by_path = CliRunner().invoke(
        app,
        [
            "sources",
            "check",
            str(renamed),
            "--mapping",
            str(SHIPPED_PROFILES / "hubspot_contacts.yml"),
        ],
    )
    assert by_path.exit_code == 0 and by_path.output == by_name.output
    unknown = CliRunner().invoke(app, ["sources", "check", str(renamed), "--mapping", "hubspt"])
    assert unknown.exit_code == 1
    assert "no such profile file, nor a profile of that name" in unknown.output
    assert "hubspot_contacts" in unknown.output
