"""Links into the CRM for leads known only by their source record id (docs/sources.md).

A link template is an http(s) address with ``{source_lead_id}`` where the record id goes and,
optionally, ``{source}``; both are filled URL-encoded. A source's leads profile may declare
its own (``crm_url_template``: a team with HubSpot and Salesforce exports links each to its
CRM); ``LEADFLOW_CRM_URL_TEMPLATE`` links the leads of every other source; with neither a
lead has no link. The hand-off's task titles and the reps' digest build the link with the
one SQL expression below, over whole batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

PLACEHOLDERS = frozenset({"source", "source_lead_id"})
EXAMPLE_TEMPLATE = "https://crm.example/leads/{source_lead_id}"


def checked_crm_url_template(template: str) -> str:
    """The template itself, or ValueError saying what a template needs (for a validator)."""
    placeholders = set(re.findall(r"{([^{}]*)}", template))
    if (
        not re.fullmatch(r"https?://\S+", template)
        or "source_lead_id" not in placeholders
        or not placeholders <= PLACEHOLDERS
    ):
        raise ValueError(
            f"{template!r} is not a CRM link template: an http(s) address with "
            "{source_lead_id} where the record id goes (and optionally {source}), such as "
            f"{EXAMPLE_TEMPLATE}"
        )
    return template


@dataclass(frozen=True)
class CrmLinks:
    """The link templates a run fills: each source's own, else the fallback (none: no link)."""

    fallback: str | None = None  # LEADFLOW_CRM_URL_TEMPLATE
    by_source: Mapping[str, str] = field(default_factory=dict)  # source -> its profile's

    def sql_parameters(self) -> dict[str, object]:
        """The named query parameters ``crm_url_sql`` reads."""
        return {
            "crm_link_sources": list(self.by_source),
            "crm_link_templates": list(self.by_source.values()),
            "crm_link_fallback": self.fallback,
        }


def crm_url_sql(source: str, source_lead_id: str) -> str:
    """SQL for the link to the record (``source``, ``source_lead_id``), null without a
    template; the query takes ``CrmLinks.sql_parameters()`` as named parameters. Written in
    the SQL DuckDB and PostgreSQL share (a source's template found by its position in the
    list of sources; url_encode is translated for PostgreSQL by flows/postgres.py)."""
    template = (
        "coalesce((cast($crm_link_templates as varchar[]))"
        f"[array_position(cast($crm_link_sources as varchar[]), {source})], "
        "cast($crm_link_fallback as varchar))"
    )
    return (
        f"replace(replace({template}, '{{source}}', url_encode({source})), "
        f"'{{source_lead_id}}', url_encode({source_lead_id}))"
    )
