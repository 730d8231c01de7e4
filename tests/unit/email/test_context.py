"""The template context: built from a queue row, with fallbacks, and documented in CONTEXT.md."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flows.email.context import (
    PERSONAL_FIELDS,
    build_context,
    load_context_file,
    personal_values,
)
from flows.email.templates import RENDERER_VARIABLES
from flows.email.tracks import TemplateError

SENDER = {"sender_name": "LeadFlow Demo", "sender_address": "1 Main St, Springfield"}


def context_of(row: dict[str, Any]) -> dict[str, Any]:
    return build_context(row, unsubscribe_url="https://u.example/?key=k", **SENDER)


def flatten(context: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in context.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_a_full_row_fills_every_variable(queue_row):
    assert context_of(queue_row) == {
        "lead": {
            "first_name": "Ana",
            "last_name": "Silva",
            "company": "Acme Freight",
            "title": "Marketing Manager",
            "email": "ana.silva@example.com",
        },
        "rep": {"name": "Sam Lee", "email": "sam.lee@leadflow.example"},
        "track": {"name": "warm_up", "step": 1},
        "unsubscribe_url": "https://u.example/?key=k",
        "sender": {"name": "LeadFlow Demo", "address": "1 Main St, Springfield"},
    }


@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")], ids=repr)
def test_missing_values_get_their_fallbacks(queue_row, missing):
    for column in ("first_name", "last_name", "company", "title", "owner_name", "owner_email"):
        queue_row[column] = missing
    context = context_of(queue_row)
    assert context["lead"]["first_name"] == "there"
    assert context["lead"]["company"] == "your team"
    assert context["lead"]["last_name"] == context["lead"]["title"] == ""
    assert context["rep"] == {"name": "LeadFlow Demo", "email": ""}


def test_line_breaks_and_control_characters_become_spaces(queue_row):
    queue_row["first_name"] = "Ana\r\nBcc: victim@example.com"
    queue_row["company"] = "Acme\tFreight\x00 Ltd"
    context = context_of(queue_row)
    assert context["lead"]["first_name"] == "Ana Bcc: victim@example.com"
    assert context["lead"]["company"] == "Acme Freight Ltd"


def test_a_row_without_email_is_refused(queue_row):
    queue_row["email"] = None
    with pytest.raises(TemplateError, match="has no email"):
        context_of(queue_row)


def documented_variables(shipped_templates) -> dict[str, str]:
    """``variable -> fallback cell`` from the table in CONTEXT.md."""
    table_row = re.compile(r"^\| `([a-z_.]+)` \| [a-z]+ \| (.+?) \|", re.MULTILINE)
    return dict(table_row.findall((shipped_templates / "CONTEXT.md").read_text()))


def test_context_md_documents_exactly_the_variables_templates_get(shipped_templates, queue_row):
    built = set(flatten(context_of(queue_row))) | set(flatten(RENDERER_VARIABLES))
    assert set(documented_variables(shipped_templates)) == built


def test_context_md_fallbacks_are_the_real_ones(shipped_templates, queue_row):
    for column in ("first_name", "last_name", "company", "title", "owner_name", "owner_email"):
        queue_row[column] = None
    actual = flatten(context_of(queue_row))
    literal_fallbacks = {
        variable: json.loads(cell.strip("`"))
        for variable, cell in documented_variables(shipped_templates).items()
        if cell.startswith('`"')
    }
    assert literal_fallbacks, "CONTEXT.md should state literal fallbacks"
    for variable, fallback in literal_fallbacks.items():
        assert actual[variable] == fallback, variable
    assert documented_variables(shipped_templates)["rep.name"] == "`sender.name`"
    assert actual["rep.name"] == actual["sender.name"]


def test_the_sample_context_has_the_same_shape_as_a_built_one(sample_context, queue_row):
    assert set(flatten(sample_context)) == set(flatten(context_of(queue_row)))


def test_a_context_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "lead.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(TemplateError, match=r"lead\.yml"):
        load_context_file(path)
    with pytest.raises(TemplateError, match="no such file"):
        load_context_file(tmp_path / "missing.yml")


def test_personal_values_are_the_context_fields_that_differ_per_lead(queue_row):
    values = personal_values(queue_row, unsubscribe_url="https://u.example/?key=k",
                             sender_name="LeadFlow Demo")  # fmt: skip
    assert tuple(values) == PERSONAL_FIELDS
    flat = flatten(context_of(queue_row))
    assert {field: flat[field] for field in PERSONAL_FIELDS} == values
    # The rest is the same for every lead of a step.
    assert set(flat) - set(PERSONAL_FIELDS) == {"track.name", "track.step", "sender.name",
                                                "sender.address"}  # fmt: skip
