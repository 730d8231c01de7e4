"""``leadflow templates send-test``: one step, rendered, through the real provider, to a tester.

A proof, not a nurture email: the subject starts with "[TEST] ", the batch is marked
``is_test`` and carries the category ``test`` (so provider statistics can leave it out), its
message key starts with ``test-`` and is new on every send, and it is never written to the
send ledger (``ops.email_sends``): it cannot count towards a lead's frequency cap or stop the
lead's real email. The step is rendered once for one recipient, so the HTML and text are final
and there are no substitutions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import duckdb

from flows.email.context import build_context
from flows.email.message import EmailSender, OutgoingBatch, Recipient, SendResult
from flows.email.outbox import EMAIL_ADDRESS
from flows.email.render import TemplateRenderer
from flows.email.templates import context_for_step, find_step_file
from flows.email.tracks import LintProblem, TemplateError, Track, read_step_file
from flows.settings import ConfigError, Settings
from flows.warehouse import Connection

TEST_SUBJECT_PREFIX = "[TEST] "
TEST_CATEGORY = "test"


def lead_row(connection: Connection, lead_id: str) -> dict[str, Any]:
    """A lead's template values: its nurture queue row, else its dim_leads row (read-only)."""
    for table in ("main.fct_nurture_queue", "main.dim_leads"):
        try:
            cursor = connection.execute(f"select * from {table} where lead_id = ?", [lead_id])
        except duckdb.CatalogException:
            continue  # the models were never built: reported below as "no such lead"
        values = cursor.fetchone()
        if values is not None:
            columns = [description[0] for description in cursor.description or []]
            return dict(zip(columns, values, strict=True))
    raise ConfigError(
        f"--lead {lead_id}: no such lead in the warehouse (fct_nurture_queue or dim_leads); "
        "give a lead_id from `dim_leads`, or leave --lead out to use the sample lead"
    )


def context_from_lead(
    row: Mapping[str, Any], settings: Settings, message_key: str
) -> dict[str, Any]:
    """The template context of a warehouse lead, with this send's own unsubscribe link."""
    return build_context(
        row,
        unsubscribe_url=settings.unsubscribe_url.format(message_key=message_key),
        sender_name=parseaddr(settings.email_from)[0] or settings.email_from,
        sender_address=settings.sender_address,
    )


def new_test_key() -> str:
    return f"test-{uuid.uuid4().hex}"


def build_test_batch(
    templates_dir: Path,
    template_path: str | Path,
    tracks: Mapping[str, Track],
    context: Mapping[str, Any],
    *,
    lead_id: str,
    to_address: str,
    from_email: str,
    message_key: str,
) -> OutgoingBatch:
    """The step file rendered for ``context``, as a one-recipient test batch to ``to_address``."""
    if not (to_address.isascii() and EMAIL_ADDRESS.fullmatch(to_address)):
        raise ConfigError(f"--to {to_address!r} is not an email address: give e.g. you@example.com")
    root = templates_dir.resolve()
    step, problems = read_step_file(root, find_step_file(root, template_path))
    if step is None:
        raise TemplateError.from_problems(*problems)
    track = tracks.get(step.track)
    if track is None:
        raise TemplateError.from_problems(
            LintProblem(
                step.template,
                None,
                f"track `{step.track}` cannot be used: `leadflow templates lint` says why",
            )
        )
    email = TemplateRenderer(root).render(step, context_for_step(context, step))
    rep_email = context.get("rep", {}).get("email") or None
    return OutgoingBatch(
        track=step.track,
        step=step.step,
        from_email=from_email,
        reply_to=rep_email,
        html=email.html,
        text=email.text,
        unsubscribe_group=track.unsubscribe_group,
        categories=(TEST_CATEGORY,),
        recipients=(
            Recipient(
                message_key=message_key,
                lead_id=lead_id,
                to_email=to_address,
                to_name="",
                subject=TEST_SUBJECT_PREFIX + email.subject,
                substitutions={},
                unsubscribe_url=str(context["unsubscribe_url"]),
            ),
        ),
        is_test=True,
    )


def send_test(sender: EmailSender, batch: OutgoingBatch) -> SendResult:
    """Send the test batch; raises ConfigError with the provider's reason if it failed."""
    sender.check()
    [result] = sender.send(batch)
    if result.status != "sent":
        raise ConfigError(
            f"the {sender.provider} provider did not send the test email: {result.error}"
        )
    return result
