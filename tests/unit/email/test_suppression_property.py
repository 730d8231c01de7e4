"""Property: a suppressed lead is never emailed, whatever the events and whenever they land.

Over generated leads and SendGrid event sequences (opt-outs and group resubscribes stamped
before or after the run's clock, landed and loaded before the claim or only after it), the
real loader (``load_landed_events``) and the real claim and dispatch run against the warehouse
(DuckDB, then PostgreSQL), with a provider that records what it was handed. Two runs: the first
step, then, once every event is loaded, the second.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.email.dispatch import dispatch_due_steps
from flows.email.events import LandingWriter, load_landed_events
from flows.email.message import OutgoingBatch, SendResult
from flows.email.render import TemplateRenderer
from flows.email.templates import load_tracks
from flows.warehouse import Connection
from tests.unit.email.test_dispatch import AS_OF, SENDER, TEMPLATES, add_queue

OPT_OUTS = ("unsubscribe", "bounce", "spamreport", "group_unsubscribe")
# Read and compiled once: the examples only change the warehouse.
TRACKS = load_tracks(TEMPLATES)
RENDERER = TemplateRenderer(TEMPLATES)
GROUPS = (101, 102)
# What an example writes: each starts without it (the examples share the test's warehouse).
WRITTEN_TABLES = (
    "ops.email_sends", "ops.email_suppressions", "ops.quarantine", "ops.loads",
    "raw.email_provider_events", "raw.events",
)  # fmt: skip


@dataclass(frozen=True)
class Event:
    lead: int
    kind: str  # an opt-out, or group_resubscribe
    hours_from_clock: int  # the event's timestamp, before or after the run's clock
    group: int
    loaded_before_claim: bool
    shouted: bool  # the address as a recipient may type it: other case, spaces

    def payload(self, number: int) -> dict[str, Any]:
        email = f"lead{self.lead}@example.com"
        stamped = AS_OF.replace(tzinfo=UTC) + timedelta(hours=self.hours_from_clock)
        return {
            "event": self.kind,
            "email": f" {email.upper()} " if self.shouted else email,
            "timestamp": int(stamped.timestamp()),
            "sg_event_id": f"event-{number}",
            "sg_message_id": f"message-{number}.filter0001",
            **({"asm_group_id": self.group} if self.kind.startswith("group_") else {}),
        }


def events(leads: int) -> st.SearchStrategy[list[Event]]:
    return st.lists(
        st.builds(
            Event,
            lead=st.integers(0, leads - 1),
            kind=st.sampled_from((*OPT_OUTS, "group_resubscribe")),
            hours_from_clock=st.integers(-72, 72),
            group=st.sampled_from(GROUPS),
            loaded_before_claim=st.booleans(),
            shouted=st.booleans(),
        ),
        max_size=12,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, set[int], list[Event]]:
    leads = draw(st.integers(1, 8))
    suppressed_in_models = draw(st.sets(st.integers(0, leads - 1), max_size=2))
    return leads, suppressed_in_models, draw(events(leads))


class RecordingSender:
    """A provider that takes every batch and remembers who it was handed."""

    provider = "recording"

    def __init__(self) -> None:
        self.emailed: list[tuple[str, int]] = []  # (lead id, step)

    def check(self) -> None:
        pass

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        self.emailed += [(recipient.lead_id, batch.step) for recipient in batch.recipients]
        return [SendResult(r.message_key, "sent", "m", None) for r in batch.recipients]

    def was_delivered(self, message_key: str) -> bool | None:
        return None


def in_force(lead: int, loaded: list[Event]) -> bool:
    """Whether the loaded events leave the lead opted out: any unsubscribe, bounce or spam
    report; a group unsubscribe unless a later resubscribe to that group lifted it."""
    mine = [event for event in loaded if event.lead == lead]
    if any(event.kind in ("unsubscribe", "bounce", "spamreport") for event in mine):
        return True
    return any(
        event.kind == "group_unsubscribe"
        and not any(
            later.kind == "group_resubscribe"
            and later.group == event.group
            and later.hours_from_clock >= event.hours_from_clock
            for later in mine
        )
        for event in mine
    )


def dispatch(connection: Connection, sender: RecordingSender, run_id: str, as_of: datetime) -> None:
    dispatch_due_steps(
        connection,
        tracks=TRACKS,
        renderer=RENDERER,
        email_sender=sender,
        sender=SENDER,
        run_id=run_id,
        as_of=as_of,
    )


def land_and_load(connection: Connection, landing: Path, batch: list[Event], first: int) -> None:
    """As the receiver lands events and the next extract loads them."""
    if batch:
        LandingWriter(landing).append([e.payload(first + n) for n, e in enumerate(batch)])
    load_landed_events(connection, landing, "run")


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # emptied for each example
)
@given(scenario=scenarios())
# The case the issue names: an unsubscribe stamped 3 h after the clock, loaded before the claim.
@example(scenario=(2, set(), [Event(1, "unsubscribe", 3, 101, True, False)]))
def test_a_suppressed_lead_is_never_emailed(
    warehouse: Connection, scenario: tuple[int, set[int], list[Event]]
) -> None:
    leads, suppressed_in_models, generated = scenario
    before = [event for event in generated if event.loaded_before_claim]
    after = [event for event in generated if not event.loaded_before_claim]
    for table in WRITTEN_TABLES:
        warehouse.execute(f"delete from {table}")
    with tempfile.TemporaryDirectory() as folder:
        landing = Path(folder)
        add_queue(warehouse, leads)
        warehouse.execute(
            "update main.dim_leads set is_suppressed = true where list_contains(?, lead_id)",
            [[f"L{lead}" for lead in suppressed_in_models]],
        )
        sender = RecordingSender()

        land_and_load(warehouse, landing, before, first=0)
        dispatch(warehouse, sender, "run-1", AS_OF)
        first = {lead for lead, _ in sender.emailed}
        for lead in range(leads):
            if in_force(lead, before) or lead in suppressed_in_models:
                # Whatever its timestamp: an opt-out loaded before the claim stops the send.
                assert f"L{lead}" not in first, (lead, before)
            elif not any(event.lead == lead for event in before):
                assert f"L{lead}" in first  # nothing stopped it: it went

        # The next step, once the rest has landed: now every opt-out counts.
        land_and_load(warehouse, landing, after, first=len(before))
        warehouse.execute("update main.fct_nurture_queue set next_step = 2")
        dispatch(warehouse, sender, "run-2", AS_OF + timedelta(days=3))
        second = {lead for lead, step in sender.emailed if step == 2}
        for lead in range(leads):
            if in_force(lead, generated) or lead in suppressed_in_models:
                assert f"L{lead}" not in second, (lead, generated)
            elif not any(event.lead == lead for event in generated):
                assert f"L{lead}" in second
        assert len(sender.emailed) == len(set(sender.emailed))  # never one step twice
