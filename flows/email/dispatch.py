"""Send the nurture steps that are due, exactly once each.

The send ledger (``ops.email_sends``) is the guard: a row keyed by
``message_key = md5(lead_id|track|step)`` is inserted as ``pending`` *before* the provider is
called and settled as ``sent`` or ``failed`` after. A lead therefore never gets the same step
twice, whatever crashes in between: a pending row left by a crash is settled on the next run
from what the provider says it delivered, and is only retried when it certainly was not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from flows.email.message import EmailSender, OutgoingEmail, SendResult
from flows.email.render import TemplateRenderer
from flows.email.templates import NurtureStep, TemplateError, Track, build_context

# SendGrid accepts at most 1,000 personalizations per request; batches never exceed that.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Sender:
    """Who the nurture emails come from, and where recipients unsubscribe."""

    from_email: str
    name: str
    address: str
    unsubscribe_url: str  # may contain {message_key}


@dataclass(frozen=True)
class DispatchReport:
    due: int
    sent: int
    failed: int
    not_rendered: int


@dataclass(frozen=True)
class PreparedSend:
    email: OutgoingEmail
    ledger_row: dict[str, Any]


def message_key(lead_id: str, track: str, step: int) -> str:
    return hashlib.md5(f"{lead_id}|{track}|{step}".encode()).hexdigest()


def settle_earlier_sends(connection: duckdb.DuckDBPyConnection, sender: EmailSender) -> int:
    """Resolve ledger rows a crashed run left ``pending``; returns how many were settled.

    Delivered → ``sent``. Certainly not delivered → the row is removed so the step is sent on a
    later run. Unknown (the provider cannot say) → left pending: never risk a second email.
    """
    pending = connection.execute(
        "select message_key from ops.email_sends where status = 'pending'"
    ).fetchall()
    settled = 0
    for (key,) in pending:
        delivered = sender.was_delivered(key)
        if delivered is True:
            connection.execute(
                "update ops.email_sends set status = 'sent', sent_at = coalesce(sent_at, "
                "now()::timestamp) where message_key = ?",
                [key],
            )
        elif delivered is False:
            connection.execute("delete from ops.email_sends where message_key = ?", [key])
        settled += delivered is not None
    return settled


def why_now(row: Mapping[str, Any], subject: str) -> str:
    return (
        f"Nurture email '{subject}' went out (track {row['nurture_track']}, step "
        f"{row['next_step']}); the lead is {row['stage']} because {row['stage_reason']}. "
        "Follow up while it is fresh."
    )


def prepare(
    row: Mapping[str, Any],
    step: NurtureStep,
    track: Track,
    renderer: TemplateRenderer,
    sender: Sender,
    run_id: str,
    as_of: datetime,
) -> PreparedSend:
    key = message_key(row["lead_id"], step.track, step.step)
    unsubscribe_url = sender.unsubscribe_url.format(message_key=key)
    context = build_context(
        row,
        unsubscribe_url=unsubscribe_url,
        sender_name=sender.name,
        sender_address=sender.address,
    )
    rendered = renderer.render(step, context)
    email = OutgoingEmail(
        message_key=key,
        to_email=str(row["email"]).strip(),
        to_name=" ".join(p for p in (row.get("first_name"), row.get("last_name")) if p),
        from_email=sender.from_email,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        preheader=rendered.preheader,
        track=step.track,
        step=step.step,
        unsubscribe_group=track.unsubscribe_group,
        custom_args={"message_key": key, "lead_id": str(row["lead_id"]), "track": step.track},
        unsubscribe_url=unsubscribe_url,
    )
    ledger_row = {
        "message_key": key,
        "lead_id": row["lead_id"],
        "email": email.to_email,
        "track": step.track,
        "step": step.step,
        "template": step.template,
        "subject": rendered.subject,
        "owner_rep_id": row.get("owner_rep_id"),
        "owner_email": row.get("owner_email"),
        "follow_up_title": rendered.follow_up_title,
        "follow_up_due_days": step.follow_up_due_days,
        "why_now": why_now(row, rendered.subject),
        "created_at": as_of,
        "run_id": run_id,
    }
    return PreparedSend(email, ledger_row)


def _claim(
    connection: duckdb.DuckDBPyConnection, prepared: list[PreparedSend], provider: str
) -> list[PreparedSend]:
    """Insert pending ledger rows; return only the sends this call claimed.

    A claim succeeds for a step never tried or one whose earlier send failed.
    """
    connection.register("claim_batch", pa.Table.from_pylist([p.ledger_row for p in prepared]))
    claimed = connection.execute(
        """
        insert into ops.email_sends (
            message_key, lead_id, email, track, step, template, subject, status, provider,
            owner_rep_id, owner_email, follow_up_title, follow_up_due_days, why_now,
            created_at, run_id
        )
        select
            message_key, lead_id, email, track, step, template, subject, 'pending', ?,
            owner_rep_id, owner_email, follow_up_title, follow_up_due_days, why_now,
            created_at, run_id
        from claim_batch
        on conflict (message_key) do update set
            status = 'pending',
            provider = excluded.provider,
            subject = excluded.subject,
            error = null,
            created_at = excluded.created_at,
            run_id = excluded.run_id
        -- A step the provider refused is tried again; a pending or sent one never is.
        where ops.email_sends.status = 'failed'
        returning message_key
        """,
        [provider],
    ).fetchall()
    connection.unregister("claim_batch")
    keys = {key for (key,) in claimed}
    return [p for p in prepared if p.email.message_key in keys]


def _settle(
    connection: duckdb.DuckDBPyConnection, results: list[SendResult], as_of: datetime
) -> None:
    settled = pa.Table.from_pylist(
        [
            {
                "message_key": r.message_key,
                "status": r.status,
                "provider_message_id": r.provider_message_id,
                "error": r.error,
            }
            for r in results
        ],
        schema=pa.schema(
            [
                ("message_key", pa.string()),
                ("status", pa.string()),
                ("provider_message_id", pa.string()),
                ("error", pa.string()),
            ]
        ),
    )
    connection.register("settled", settled)
    connection.execute(
        """
        update ops.email_sends as ledger
        set status = settled.status,
            provider_message_id = settled.provider_message_id,
            error = settled.error,
            sent_at = case when settled.status = 'sent' then ? end
        from settled
        where ledger.message_key = settled.message_key
        """,
        [as_of],
    )
    connection.unregister("settled")


def dispatch_due_steps(
    connection: duckdb.DuckDBPyConnection,
    *,
    tracks: Mapping[str, Track],
    renderer: TemplateRenderer,
    email_sender: EmailSender,
    sender: Sender,
    run_id: str,
    as_of: datetime,
) -> DispatchReport:
    """Render and send every due step of ``fct_nurture_queue``, in ledger-guarded batches."""
    # The queue is streamed through its own cursor, one batch at a time, so a million due
    # steps never sit in memory at once; ledger writes go through ``connection``.
    reader = connection.cursor()
    reader.execute("select * from main.fct_nurture_queue where is_due order by due_at, lead_id")
    columns = [description[0] for description in reader.description or []]
    steps = {(s.track, s.step): (s, t) for t in tracks.values() for s in t.steps}
    due = sent = failed = not_rendered = 0
    while batch := reader.fetchmany(BATCH_SIZE):
        due += len(batch)
        prepared: list[PreparedSend] = []
        for values in batch:
            row = dict(zip(columns, values, strict=True))
            found = steps.get((row["nurture_track"], row["next_step"]))
            try:
                if found is None:
                    raise TemplateError(
                        f"track {row['nurture_track']} has no step {row['next_step']} in "
                        "templates/ (was it removed after the models were built?)"
                    )
                prepared.append(prepare(row, *found, renderer, sender, run_id, as_of))
            except TemplateError as error:
                not_rendered += 1
                _quarantine_unrendered(connection, row, str(error), run_id)
        claimed = _claim(connection, prepared, email_sender.provider) if prepared else []
        if not claimed:
            continue
        results = email_sender.send([p.email for p in claimed])
        _settle(connection, results, as_of)
        sent += sum(r.status == "sent" for r in results)
        failed += sum(r.status == "failed" for r in results)
    reader.close()
    return DispatchReport(due, sent, failed, not_rendered)


def _quarantine_unrendered(
    connection: duckdb.DuckDBPyConnection, row: Mapping[str, Any], reason: str, run_id: str
) -> None:
    connection.execute(
        """
        insert into ops.quarantine (run_id, stage, entity, record_key, reason_code, reason,
                                    record, quarantined_at)
        values (?, 'nurture', 'nurture_queue', ?, 'render_failed', ?, ?, now()::timestamp)
        """,
        [run_id, row["lead_id"], reason, json.dumps(row, default=str)],
    )
