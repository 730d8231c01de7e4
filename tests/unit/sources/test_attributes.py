"""Custom attributes: export columns with no canonical target kept per lead for fit rules."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from flows.sources.inbox import commit_staged, parsing_connection, scan_inbox, stage_file
from flows.sources.mapping import MappingError, ParsedColumn, attribute_name, load_mapping

AS_OF = datetime(2026, 11, 22)
EXPORT = (
    "Prospect ID,Email,Lead Source,Total Visits,Total Time Spent on Website,Country,"
    "Tags,What is your current occupation\n"
    "p1,a@x.com,Google,5,1200,India,Closed by Horizzon,Select\n"
    "p2,b@x.com,Olark Chat,, 45 ,,Ringing,Unemployed\n"
)
PROFILE_HEAD = (
    "source: crm\nentity: leads\nfiles: ['export*.csv']\n"
    "default_timestamp: '2026-10-01 00:00:00'\n"
    "columns: {source_lead_id: Prospect ID, email: Email, lead_source: Lead Source}\n"
)


def profile(folder: Path, body: str) -> Path:
    path = folder / "crm.yml"
    path.write_text(PROFILE_HEAD + body)
    return path


def loaded_attributes(warehouse, tmp_path: Path, body: str) -> dict[str, dict]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "export.csv").write_text(EXPORT)
    mappings = [load_mapping(profile(tmp_path, body))]
    scan = scan_inbox(warehouse, inbox, mappings)
    with parsing_connection(warehouse) as parser:
        staged = [stage_file(warehouse, parser, f, AS_OF, i) for i, f in enumerate(scan.new)]
        commit_staged(warehouse, staged, "run-1")
    rows = warehouse.execute("select source_lead_id, attributes from raw.leads").fetchall()
    return {key: None if value is None else json.loads(value) for key, value in rows}


def test_attribute_names_are_lower_snake_case():
    assert attribute_name("Total Time Spent on Website") == "total_time_spent_on_website"
    assert attribute_name(" Page Views/Visit ") == "page_views_visit"


def test_listed_columns_are_kept_by_their_snake_case_names(warehouse, tmp_path):
    body = "attributes: [Total Visits, Total Time Spent on Website]\n"
    assert loaded_attributes(warehouse, tmp_path, body) == {
        "p1": {"total_visits": "5", "total_time_spent_on_website": "1200"},
        "p2": {"total_visits": None, "total_time_spent_on_website": "45"},
    }


def test_all_unmapped_columns_but_outcome_only_ones_with_value_maps(warehouse, tmp_path):
    body = (
        'attributes: "*"\noutcome_only: [Tags]\n'
        'values:\n  "*": {Select: ~}\n  country: {India: IN}\n'
    )
    assert loaded_attributes(warehouse, tmp_path, body) == {
        # The unmapped Country is skipped: a canonical column's name is never an attribute's.
        "p1": {
            "total_visits": "5",
            "total_time_spent_on_website": "1200",
            "what_is_your_current_occupation": None,
        },
        "p2": {
            "total_visits": None,
            "total_time_spent_on_website": "45",
            "what_is_your_current_occupation": "Unemployed",
        },
    }


def test_attributes_named_in_the_profile_and_value_mapped(warehouse, tmp_path):
    body = (
        "attributes: {occupation: What is your current occupation}\n"
        "values: {occupation: {Select: ~}}\n"
    )
    assert loaded_attributes(warehouse, tmp_path, body) == {
        "p1": {"occupation": None},
        "p2": {"occupation": "Unemployed"},
    }


def test_a_profile_without_attributes_loads_none(warehouse, tmp_path):
    assert loaded_attributes(warehouse, tmp_path, "") == {"p1": None, "p2": None}


def test_a_listed_attribute_the_export_lacks_is_left_out(tmp_path):
    mapping = load_mapping(profile(tmp_path, "attributes: [Total Visits, Page Views]\n"))
    parsed = {"Prospect ID": ParsedColumn("c0"), "Total Visits": ParsedColumn("c1")}
    assert mapping.attribute_columns(parsed) == {"total_visits": "Total Visits"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("attributes: {title: Job}\n", "'title', which is a canonical column of leads"),
        ("attributes: [Tags]\noutcome_only: [Tags]\n", "Tags is under `outcome_only`"),
        ("outcome_only: [Lead Source]\n", "Lead Source is under `outcome_only`"),
        ("attributes: all\n", 'key `attributes`: Value error, "*" (every export column'),
    ],
)
def test_attribute_mistakes_name_the_profile_and_the_key(tmp_path, body, fragment):
    path = profile(tmp_path, body)
    with pytest.raises(MappingError) as raised:
        load_mapping(path)
    assert str(path) in str(raised.value)
    assert fragment in str(raised.value)


def test_attributes_are_kept_for_leads_only(tmp_path):
    path = tmp_path / "events.yml"
    path.write_text(
        "source: crm\nentity: events\nfiles: ['x']\nattributes: [Visits]\n"
        "columns: {event_id: a, email: b, event_type: c, occurred_at: d}\n"
    )
    with pytest.raises(MappingError, match="apply to leads only, not events"):
        load_mapping(path)


def test_the_documented_profile_loads(tmp_path):
    """docs/sources.md's worked example of custom attributes is a valid profile."""
    doc = (Path(__file__).parents[3] / "docs" / "sources.md").read_text()
    example = doc.split("# my-profiles/crm_export.yml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "crm_export.yml"
    path.write_text(example)
    mapping = load_mapping(path)
    assert dict(mapping.attributes) == {
        "total_visits": "Total Visits",
        "time_on_site": "Total Time Spent on Website",
        "occupation": "What is your current occupation",
    }
    assert mapping.outcome_only == ("Tags",)
