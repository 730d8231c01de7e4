"""The canonical entities LeadFlow loads, with the validation rules of each column.

One declaration per entity drives the header check, the row validation SQL and the typed
insert into ``raw.<entity>``; docs/data-contracts.md is the prose version of this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_TYPES = (
    "email_open",
    "email_click",
    "page_view",
    "pricing_page_view",
    "content_download",
    "form_fill",
    "webinar_attended",
    "demo_request",
    "unsubscribe",
    "bounce",
    "spam_report",
)
OUTCOMES = ("accepted", "rejected", "opportunity", "won", "lost", "no_response")
OUTCOME_REASONS = (
    "not_ready",
    "no_budget",
    "bad_timing",
    "bad_fit",
    "student",
    "competitor",
    "unresponsive",
    "duplicate",
)
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
SEGMENTS = ("smb", "mid_market", "enterprise")


@dataclass(frozen=True)
class Entity:
    """A canonical record type: its raw table, key and typed columns."""

    name: str
    key: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    timestamps: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    decimals: tuple[str, ...] = ()
    booleans: dict[str, bool] = field(default_factory=dict)  # column -> default when empty
    emails: tuple[str, ...] = ()
    # Ways to find the row's person: each may be empty, but not all of them. A lead needs none:
    # its source record id (the key) finds it, and a lead known only by it is worked in the CRM.
    contact_keys: tuple[str, ...] = ()
    accepted_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ordered_timestamps: tuple[str, str] | None = None  # (earlier, later)
    # The key names one thing in its source for good: a row whose key that source loaded
    # before is a resend (a retried callback, an upload sent twice), quarantined, not loaded.
    key_is_final: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


ENTITIES: dict[str, Entity] = {
    entity.name: entity
    for entity in (
        Entity(
            name="leads",
            key="source_lead_id",
            required=("source_lead_id", "created_at", "updated_at"),
            optional=(
                "email",
                "first_name",
                "last_name",
                "company",
                "title",
                "industry",
                "employee_count",
                "country",
                "phone",
                "lead_source",
                "first_campaign",
                "is_do_not_email",
            ),
            timestamps=("created_at", "updated_at"),
            integers=("employee_count",),
            booleans={"is_do_not_email": False},
            emails=("email",),
            ordered_timestamps=("created_at", "updated_at"),
        ),
        Entity(
            name="events",
            key="event_id",
            required=("event_id", "event_type", "occurred_at"),
            optional=("email", "source_lead_id", "campaign", "url", "message_key"),
            timestamps=("occurred_at",),
            emails=("email",),
            contact_keys=("email", "source_lead_id"),
            accepted_values={"event_type": EVENT_TYPES},
        ),
        Entity(
            name="outcomes",
            key="outcome_id",
            required=("outcome_id", "outcome", "occurred_at"),
            optional=(
                "email",
                "source_lead_id",
                "lead_id",
                "task_id",
                "reason",
                "rep_id",
                "amount",
                "note",
            ),
            timestamps=("occurred_at",),
            decimals=("amount",),
            emails=("email",),
            contact_keys=("email", "source_lead_id", "lead_id", "task_id"),
            accepted_values={"outcome": OUTCOMES, "reason": OUTCOME_REASONS},
            key_is_final=True,
        ),
        Entity(
            name="reps",
            key="rep_id",
            required=("rep_id", "name", "email", "region"),
            optional=("segment", "is_active"),
            booleans={"is_active": True},
            emails=("email",),
            accepted_values={"region": REGIONS, "segment": SEGMENTS},
        ),
    )
}
