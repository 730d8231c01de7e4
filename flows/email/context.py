"""The variables a nurture template may use, built from one ``fct_nurture_queue`` row.

Fallbacks are applied here, not in templates, so a template can render under StrictUndefined:
a misspelt variable is an error at lint time, never a blank in a customer's inbox. Every
variable and fallback is documented in ``templates/CONTEXT.md`` (a test keeps them in step).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flows.email.tracks import LintProblem, TemplateError

SAMPLE_CONTEXT_FILE = "sample_context.yml"

# (context variable, queue column, fallback when the column is null or blank)
LEAD_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("first_name", "first_name", "there"),
    ("last_name", "last_name", ""),
    ("company", "company", "your team"),
    ("title", "title", ""),
)
REP_NAME_COLUMN = "owner_name"
REP_EMAIL_COLUMN = "owner_email"
# The variables that differ from lead to lead (``personal_values``), by dotted name.
PERSONAL_FIELDS: tuple[str, ...] = (
    *(f"lead.{name}" for name, _, _ in LEAD_FIELDS),
    "lead.email",
    "rep.name",
    "rep.email",
    "unsubscribe_url",
)

_LEAD_VALUES = tuple((f"lead.{name}", column, fallback) for name, column, fallback in LEAD_FIELDS)

# Tabs, newlines and other control characters in lead-supplied text would break subject lines
# and headers; they carry no meaning in a name or company.
WHITESPACE_AND_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f]+")


def clean_text(value: Any) -> str:
    """A single line of text, or "" for null, NaN (pandas' null) and blank values."""
    # Most values are clean already: printable (no whitespace but " "), no runs of spaces, no
    # padding. Checking that is several times faster than the substitution (run per lead).
    if (
        type(value) is str
        and value.isprintable()
        and "  " not in value
        and value[:1] != " "
        and value[-1:] != " "
    ):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return WHITESPACE_AND_CONTROLS.sub(" ", str(value)).strip()


def personal_values(
    row: Mapping[str, Any], *, unsubscribe_url: str, sender_name: str
) -> dict[str, str]:
    """The variables that differ from lead to lead, by dotted name (``lead.first_name``).

    These are what a batch substitutes per recipient (see ``PERSONAL_FIELDS``); the rest of
    the context (``track``, ``sender``) is the same for every lead of a step.
    """
    email = clean_text(row.get("email"))
    if not email:
        raise TemplateError.from_problems(
            LintProblem(
                "fct_nurture_queue",
                None,
                f"lead {row.get('lead_id')!r} has no email; "
                "the queue must only hold leads that can be emailed",
            )
        )
    values = {
        field: clean_text(row.get(column)) or fallback for field, column, fallback in _LEAD_VALUES
    }
    values["lead.email"] = email
    values["rep.name"] = clean_text(row.get(REP_NAME_COLUMN)) or clean_text(sender_name)
    values["rep.email"] = clean_text(row.get(REP_EMAIL_COLUMN))
    values["unsubscribe_url"] = unsubscribe_url
    return values


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lead.first_name": v}`` → ``{"lead": {"first_name": v}}``."""
    nested: dict[str, Any] = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = value
    return nested


def shared_context(
    track: str, step: int, *, sender_name: str, sender_address: str
) -> dict[str, Any]:
    """The part of the context every lead of a step shares."""
    return {
        "track": {"name": clean_text(track), "step": step},
        "sender": {"name": clean_text(sender_name), "address": clean_text(sender_address)},
    }


def build_context(
    row: Mapping[str, Any], *, unsubscribe_url: str, sender_name: str, sender_address: str
) -> dict[str, Any]:
    """The template context for one nurture queue row (columns in docs/data-contracts.md)."""
    personal = personal_values(row, unsubscribe_url=unsubscribe_url, sender_name=sender_name)
    step = row.get("next_step")
    return nest(personal) | shared_context(
        row.get("nurture_track") or "",
        int(step) if step is not None else 0,
        sender_name=sender_name,
        sender_address=sender_address,
    )


def load_context_file(path: Path) -> dict[str, Any]:
    """A context written as YAML (the sample, or one given to ``leadflow templates preview``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise TemplateError.from_problems(
            LintProblem(str(path), None, "no such file: give the path of a YAML context file")
        ) from None
    except yaml.YAMLError as error:
        raise TemplateError.from_problems(
            LintProblem(str(path), None, f"invalid YAML ({error}): check the indentation")
        ) from None
    if not isinstance(data, dict):
        raise TemplateError.from_problems(
            LintProblem(
                str(path), None, "a context file holds `name: value` lines (see CONTEXT.md)"
            )
        )
    return data


def load_sample_context(templates_dir: Path) -> dict[str, Any]:
    return load_context_file(templates_dir / SAMPLE_CONTEXT_FILE)
