"""One export into several entities: a profile per entity matches the same file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flows.sources.check import check_files
from flows.sources.inbox import commit_staged, identify_all, scan_inbox, stage_file
from flows.sources.mapping import load_mappings

AS_OF = datetime(2026, 11, 22)
EXPORT = (
    "Prospect ID,Email,Last Activity,Last Activity Date,Tags\n"
    "p1,a@x.com,Email Opened,2026-11-01 10:00:00,Interested in other courses\n"
    "p2,b@x.com,Page Visited on Website,2026-11-02 11:00:00,Ringing\n"
    "p3,c@x.com,Olark Chat Conversation,2026-11-03 12:00:00,\n"
)
COMMON = "source: crm\nfiles: ['crm-export*.csv']\ndefault_timestamp: '2026-11-10 00:00:00'\n"
PROFILES = {
    "a_leads.yml": "entity: leads\ncolumns: {source_lead_id: Prospect ID, email: Email}\n"
    'attributes: "*"\noutcome_only: [Tags]\n',
    "b_activity.yml": "entity: events\n"
    "columns: {event_id: Prospect ID, email: Email, event_type: Last Activity, "
    "occurred_at: Last Activity Date}\n"
    "values: {event_type: {Email Opened: email_open, Page Visited on Website: page_view}}\n",
    "c_tags.yml": "entity: outcomes\n"
    "columns: {outcome_id: Prospect ID, email: Email, outcome: Tags, reason: Tags}\n"
    "values:\n  outcome: {Interested in other courses: rejected, Ringing: no_response}\n"
    "  reason: {Interested in other courses: bad_fit, Ringing: unresponsive}\n",
}


def profiles(folder: Path) -> list:
    folder.mkdir()
    for name, body in PROFILES.items():
        (folder / name).write_text(COMMON + body)
    return load_mappings([folder])


def test_one_export_loads_once_per_entity_it_feeds(warehouse, parser, tmp_path):
    mappings = profiles(tmp_path / "profiles")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "crm-export-1.csv").write_text(EXPORT)

    scan = scan_inbox(warehouse, inbox, mappings)
    assert [f.entity.name for f in scan.new] == ["leads", "events", "outcomes"]
    assert len({f.load_id for f in scan.new}) == 3  # the same bytes, three loads
    staged = [stage_file(warehouse, parser, f, AS_OF, i) for i, f in enumerate(scan.new)]
    commit_staged(warehouse, staged, "run-1")

    assert warehouse.execute(
        "select source_lead_id, attributes->>'$.tags', attributes->>'$.last_activity' "
        "from raw.leads order by 1"
    ).fetchall() == [
        ("p1", None, "Email Opened"),
        ("p2", None, "Page Visited on Website"),
        ("p3", None, "Olark Chat Conversation"),
    ]
    assert warehouse.execute(
        "select event_id, event_type, occurred_at from raw.events order by 1"
    ).fetchall() == [
        ("p1", "email_open", datetime(2026, 11, 1, 10)),
        ("p2", "page_view", datetime(2026, 11, 2, 11)),
    ]
    assert warehouse.execute(
        "select outcome_id, outcome, reason from raw.outcomes order by 1"
    ).fetchall() == [("p1", "rejected", "bad_fit"), ("p2", "no_response", "unresponsive")]
    # Every row of each load is loaded or quarantined with its reason.
    quarantined = warehouse.execute(
        "select entity, source_line, reason_code from ops.quarantine order by 1"
    ).fetchall()
    assert quarantined == [("events", 4, "unknown_value"), ("outcomes", 4, "missing_required")]

    again = scan_inbox(warehouse, inbox, mappings)
    assert again.new == []
    assert len(again.already_loaded) == 3


def test_the_first_profile_per_entity_wins(tmp_path):
    mappings = profiles(tmp_path / "profiles")
    shadowing = tmp_path / "mine"
    shadowing.mkdir()
    (shadowing / "leads.yml").write_text(
        "source: mine\nentity: leads\nfiles: ['crm-export*.csv']\n"
        "default_timestamp: file_mtime\ncolumns: {source_lead_id: Prospect ID, email: Email}\n"
    )
    found = identify_all(Path("crm-export-2.csv"), load_mappings([shadowing]) + mappings)
    assert [(m.entity.name, m.source) for m in found] == [
        ("leads", "mine"),
        ("events", "crm"),
        ("outcomes", "crm"),
    ]


def test_sources_check_predicts_each_entity_of_the_file(tmp_path):
    mappings = profiles(tmp_path / "profiles")
    export = tmp_path / "crm-export-1.csv"
    export.write_text(EXPORT)
    checks = check_files(export, mappings=mappings, as_of=AS_OF)
    assert [(c.entity, c.rows_read, c.rows_quarantined) for c in checks] == [
        ("leads", 3, 0),
        ("events", 3, 1),
        ("outcomes", 3, 1),
    ]


def test_the_documented_profiles_load(tmp_path):
    """docs/sources.md's activity and tags profiles are valid and feed events and outcomes."""
    doc = (Path(__file__).parents[3] / "docs" / "sources.md").read_text()
    entities = []
    for name in ("crm_activity", "crm_tags"):
        example = doc.split(f"# my-profiles/{name}.yml", 1)[1].split("```", 1)[0]
        path = tmp_path / f"{name}.yml"
        path.write_text(example.split("\n", 1)[1])
        entities += [m.entity.name for m in load_mappings([tmp_path]) if m.name == name]
    assert entities == ["events", "outcomes"]
