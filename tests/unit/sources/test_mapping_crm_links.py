"""A leads profile's own CRM link template (`crm_url_template`), checked like the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.sources.mapping import MappingError, crm_url_templates, load_mapping, load_mappings

HUBSPOT_LINK = "https://app.hubspot.com/contacts/123/record/0-1/{source_lead_id}"
LEADS = (
    "source: {source}\nentity: leads\nfiles: ['{source}-*.csv']\ndefault_timestamp: file_mtime\n"
    "columns: {{source_lead_id: Record ID}}\n"
)


def leads_profile(folder: Path, source: str, template: str | None, name: str = "") -> Path:
    path = folder / f"{name or source}.yml"
    text = LEADS.format(source=source)
    if template is not None:
        text += f'crm_url_template: "{template}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def test_a_leads_profile_links_its_source_to_its_own_crm(tmp_path):
    leads_profile(tmp_path, "hubspot", HUBSPOT_LINK)
    leads_profile(tmp_path, "web_forms", None)
    mappings = load_mappings([tmp_path])
    assert {m.source: m.crm_url_template for m in mappings} == {
        "hubspot": HUBSPOT_LINK,
        "web_forms": None,
    }
    assert crm_url_templates(mappings) == {"hubspot": HUBSPOT_LINK}


@pytest.mark.parametrize(
    "template",
    [
        "https://app.hubspot.com/contacts/123/record/0-1/",  # where would the record id go?
        "https://app.hubspot.com/contacts/123/record/0-1/{record_id}",  # not LeadFlow's
        "https://crm.example/{source}/leads/{id}?lead={source_lead_id}",  # one unknown
        "app.hubspot.com/contacts/123/record/0-1/{source_lead_id}",  # no scheme: not a link
    ],
)
def test_a_profile_template_that_cannot_link_names_the_file_the_key_and_the_fix(tmp_path, template):
    profile = leads_profile(tmp_path, "hubspot", template)
    with pytest.raises(MappingError) as raised:
        load_mapping(profile)
    message = str(raised.value)
    assert message.startswith(f"{profile}: key `crm_url_template`")
    assert repr(template) in message
    assert "https://crm.example/leads/{source_lead_id}" in message


def test_only_a_leads_profile_may_declare_a_crm_link(tmp_path):
    profile = tmp_path / "events.yml"
    profile.write_text(
        "source: hubspot\nentity: events\nfiles: ['hubspot-events-*.csv']\n"
        "columns: {event_id: Id, source_lead_id: Record ID, event_type: Type, occurred_at: At}\n"
        f'crm_url_template: "{HUBSPOT_LINK}"\n',
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as raised:
        load_mapping(profile)
    assert str(raised.value).startswith(f"{profile}: key `crm_url_template`")
    assert "leads profile" in str(raised.value)


def test_two_profiles_linking_one_source_differently_are_both_named(tmp_path):
    mine, shipped = tmp_path / "mine", tmp_path / "shipped"
    mine.mkdir()
    shipped.mkdir()
    first = leads_profile(mine, "hubspot", HUBSPOT_LINK)
    second = leads_profile(
        shipped, "hubspot", "https://crm.example/leads/{source_lead_id}", "hubspot_old"
    )
    with pytest.raises(MappingError) as raised:
        load_mappings([mine, shipped])
    message = str(raised.value)
    assert str(first) in message and str(second) in message
    assert "key `crm_url_template`" in message
    # The same link twice (a copy of a profile) is one link, not a conflict.
    leads_profile(shipped, "hubspot", HUBSPOT_LINK, "hubspot_old")
    assert crm_url_templates(load_mappings([mine, shipped])) == {"hubspot": HUBSPOT_LINK}


def test_a_command_reading_the_profiles_says_the_mistake_without_a_trace(monkeypatch, tmp_path):
    profile = leads_profile(tmp_path, "hubspot", "https://app.hubspot.com/{record_id}")
    monkeypatch.setenv("LEADFLOW_MAPPINGS_DIR", str(tmp_path))
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["sources", "check", str(tmp_path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1
    assert f"{profile}: key `crm_url_template`" in output
    assert "Traceback" not in output
