from __future__ import annotations

from datetime import datetime

from typer.testing import CliRunner

from flows.cli import app
from flows.sources.check import check_files

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
