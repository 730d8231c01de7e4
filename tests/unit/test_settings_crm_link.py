"""The CRM link template of tasks for leads known only by their source record id: the
setting, and the profiles' own templates it is the fallback of."""

from __future__ import annotations

import pytest

from flows.crm_links import CrmLinks
from flows.sales.delivery import crm_links
from flows.settings import ConfigError, load_settings
from flows.sources.mapping import SHIPPED_PROFILES


def test_a_crm_link_template_with_the_record_placeholder_is_taken(monkeypatch):
    template = "https://crm.example/{source}/leads/{source_lead_id}"
    monkeypatch.setenv("LEADFLOW_CRM_URL_TEMPLATE", template)
    assert load_settings().crm_url_template == template


@pytest.mark.parametrize(
    "template",
    [
        "https://crm.example/leads/",  # where would the record id go?
        "https://crm.example/leads/{lead_id}",  # not a placeholder LeadFlow fills
        "crm.example/leads/{source_lead_id}",  # no scheme: not a link
    ],
)
def test_a_crm_link_template_that_cannot_link_names_the_setting_and_the_fix(monkeypatch, template):
    monkeypatch.setenv("LEADFLOW_CRM_URL_TEMPLATE", template)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "LEADFLOW_CRM_URL_TEMPLATE" in message
    assert "https://crm.example/leads/{source_lead_id}" in message


def test_a_source_whose_profile_has_a_template_links_there_and_the_rest_use_the_setting(
    monkeypatch, tmp_path
):
    # The way a team sets it: a copy of the shipped HubSpot profile with the key added.
    hubspot = "https://app.hubspot.com/contacts/123/record/0-1/{source_lead_id}"
    profile = (SHIPPED_PROFILES / "hubspot_contacts.yml").read_text(encoding="utf-8")
    (tmp_path / "hubspot_contacts.yml").write_text(
        profile + f'crm_url_template: "{hubspot}"\n', encoding="utf-8"
    )
    monkeypatch.setenv("LEADFLOW_MAPPINGS_DIR", str(tmp_path))
    monkeypatch.setenv("LEADFLOW_CRM_URL_TEMPLATE", "https://crm.example/leads/{source_lead_id}")
    assert crm_links(load_settings()) == CrmLinks(
        fallback="https://crm.example/leads/{source_lead_id}", by_source={"hubspot": hubspot}
    )
    monkeypatch.delenv("LEADFLOW_CRM_URL_TEMPLATE")
    assert crm_links(load_settings()) == CrmLinks(by_source={"hubspot": hubspot})
