"""The CRM link template of tasks for leads known only by their source record id."""

from __future__ import annotations

import pytest

from flows.settings import ConfigError, load_settings


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
