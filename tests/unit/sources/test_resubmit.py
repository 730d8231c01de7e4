from __future__ import annotations

import csv
from datetime import datetime

import pytest

from flows.sources.inbox import SourceFileError, commit_staged, scan_inbox, stage_file
from flows.sources.mapping import load_mappings
from flows.sources.resubmit import export_name, export_quarantined, resubmit

AS_OF = datetime(2026, 11, 22)
HEADER = "source_lead_id,email,first_name,created_at,updated_at"


def test_fix_and_resubmit_quarantined_rows(warehouse, parser, tmp_path):
    inbox, fixes = tmp_path / "inbox", tmp_path / "fixes"
    inbox.mkdir()
    (inbox / "leads__crm.csv").write_text(
        f"{HEADER}\n1,a@x.com,Ann,2026-01-01,2026-01-02\n2,bo@,Bo,2026-01-01,2026-01-02\n"
        "3,cy@x.com,Cy,2026-02-30,2026-03-01\n"
    )
    scan = scan_inbox(warehouse, inbox)
    commit_staged(warehouse, [stage_file(warehouse, parser, scan.new[0], AS_OF, 0)], "run-1")

    written = export_quarantined(warehouse, fixes)
    export = fixes / "leads__crm.csv"
    assert written == {export: 2}
    with export.open() as handle:
        records = list(csv.DictReader(handle))
    assert [r["email"] for r in records] == ["bo@", "cy@x.com"]

    # Marketing ops fixes Bo's email; Cy's date stays wrong.
    records[0]["email"] = "bo@x.com"
    with export.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    (staged,) = resubmit(warehouse, [export], [], run_id="run-2", as_of=AS_OF)

    assert (staged.rows_loaded, staged.reasons) == (1, {"invalid_timestamp": 1})
    assert warehouse.execute(
        "select count(*) from raw.leads where source_lead_id = '2'"
    ).fetchone() == (1,)
    open_rows = warehouse.execute(
        "select record_key, reason_code from ops.quarantine where resolved_at is null order by 1"
    ).fetchall()
    assert open_rows == [("3", "invalid_timestamp")]  # the resubmitted rejection, not the old one
    with pytest.raises(SourceFileError, match="loaded before"):
        resubmit(warehouse, [export], [], run_id="run-3", as_of=AS_OF)
    assert export_quarantined(warehouse, fixes, reason="malformed_email") == {}


def test_a_row_rejected_by_several_versions_of_a_file_is_exported_once(warehouse, parser, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for updated in ("2026-01-02", "2026-01-03"):
        (inbox / "leads__crm.csv").write_text(f"{HEADER}\n2,bo@,Bo,2026-01-01,{updated}\n")
        scan = scan_inbox(warehouse, inbox)
        commit_staged(warehouse, [stage_file(warehouse, parser, scan.new[0], AS_OF, 0)], "run")
    written = export_quarantined(warehouse, tmp_path / "fixes")
    assert list(written.values()) == [1]
    assert "2026-01-03" in (tmp_path / "fixes" / "leads__crm.csv").read_text()


def test_exports_are_csv_named_for_the_original_mapping():
    assert export_name("/data/inbox/events__web.jsonl.gz") == "events__web.csv"
    assert (
        export_name("/data/inbox/hubspot-crm-exports-contacts.csv")
        == "hubspot-crm-exports-contacts.csv"
    )


# One CRM export into two entities: the leads, and the tags sales wrote as outcomes.
SEVERAL_ENTITIES = {
    "a_leads.yml": "entity: leads\ncolumns: {source_lead_id: Prospect ID, email: Email}\n"
    "outcome_only: [Tags]\n",
    "b_tags.yml": "entity: outcomes\n"
    "columns: {outcome_id: Prospect ID, source_lead_id: Prospect ID, email: Email, "
    "outcome: Tags, reason: Tags}\n"
    "values:\n  outcome: {Interested in other courses: rejected, Ringing: no_response}\n"
    "  reason: {Interested in other courses: bad_fit, Ringing: unresponsive}\n",
}


def _write_records(path, records):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def test_rows_of_an_export_into_several_entities_come_back_through_their_own_profile(
    warehouse, parser, tmp_path
):
    profiles, inbox, fixes = tmp_path / "profiles", tmp_path / "inbox", tmp_path / "fixes"
    profiles.mkdir()
    inbox.mkdir()
    for name, body in SEVERAL_ENTITIES.items():
        (profiles / name).write_text(
            "source: crm\nfiles: ['crm-export*.csv']\n"
            "default_timestamp: '2026-11-10 00:00:00'\n" + body
        )
    mappings = load_mappings([profiles])
    (inbox / "crm-export-1.csv").write_text(
        "Prospect ID,Email,Tags\n"
        "p1,a@x.com,Ringing\n"
        "p2,bo@,Interested in other courses\n"  # a broken email: both entities reject it
        "p3,c@x.com,Will revert\n"  # a tag the outcomes profile does not map
    )
    scan = scan_inbox(warehouse, inbox, mappings)
    staged = [stage_file(warehouse, parser, file, AS_OF, i) for i, file in enumerate(scan.new)]
    commit_staged(warehouse, staged, "run-1")

    written = export_quarantined(warehouse, fixes)
    leads_fix, outcomes_fix = (
        fixes / "leads" / "crm-export-1.csv",
        fixes / "outcomes" / "crm-export-1.csv",
    )
    assert written == {leads_fix: 1, outcomes_fix: 2}

    for path in (leads_fix, outcomes_fix):
        with path.open() as handle:
            records = list(csv.DictReader(handle))
        for record in records:
            record["Email"] = record["Email"].replace("bo@", "bo@x.com")
            record["Tags"] = record["Tags"].replace("Will revert", "Ringing")
        _write_records(path, records)
    resubmitted = resubmit(
        warehouse, [leads_fix, outcomes_fix], mappings, run_id="run-2", as_of=AS_OF
    )

    assert [(s.file.entity.name, s.rows_loaded, s.reasons) for s in resubmitted] == [
        ("leads", 1, {}),
        ("outcomes", 2, {}),
    ]
    assert warehouse.execute("select source_lead_id from raw.leads order by 1").fetchall() == [
        ("p1",),
        ("p2",),
        ("p3",),
    ]
    assert warehouse.execute(
        "select outcome_id, outcome, reason from raw.outcomes order by 1"
    ).fetchall() == [
        ("p1", "no_response", "unresponsive"),
        ("p2", "rejected", "bad_fit"),
        ("p3", "no_response", "unresponsive"),
    ]
    assert warehouse.execute(
        "select count(*) from ops.quarantine where resolved_at is null"
    ).fetchone() == (0,)
