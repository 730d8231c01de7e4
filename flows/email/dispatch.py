"""Send the nurture steps that are due, exactly once each, in batches a provider accepts.

The send ledger (``ops.email_sends``) is the guard: a row keyed by
``message_key = md5(lead_id|track|step)`` is inserted as ``pending`` *before* the provider is
called and settled as ``sent`` or ``failed`` after. A lead therefore never gets the same step
twice, whatever crashes in between: a pending row left by a crash is settled on the next run
from what the provider says it delivered, and is only retried when it certainly was not.

Which steps are sent is decided in SQL over the whole queue (``_select_due``): leads
suppressed *now* are left out (suppression events loaded after the models were built, the
provider's suppression list, ``dim_leads``), steps that failed ``max_attempts`` times are given
up, and a daily limit defers the rest to the next day. Due rows are then read in chunks; each
lead's step is rendered once per shape (``render.py``), and the chunk's recipients go out in
batches of one (track, step, shape, reply-to) of at most 1,000 distinct addresses, each batch
claimed in one insert just before its request: a process killed anywhere leaves at most the
batch in flight pending, and the next run sends the batches never claimed.

On PostgreSQL several runs may dispatch at once. A claim is still one atomic statement, and a
run sends only the steps its own statement claimed; the daily limit is counted again with
each claim, under a lock the claims of every run take in turn; and while its claims are in
flight a run holds a lock of its own, so that another run settles only the pending claims of
runs that are gone. On DuckDB (one writer) none of that costs anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from flows.email.context import clean_text, personal_values, shared_context
from flows.email.message import (
    EmailProviderError,
    EmailSender,
    OutgoingBatch,
    Recipient,
    SendResult,
)
from flows.email.render import RenderedShape, TemplateRenderer, shape_values
from flows.email.templates import NurtureStep, TemplateError, Track
from flows.warehouse import Connection, one_writer_at_a_time

# SendGrid accepts at most 1,000 personalizations per request; batches never exceed that.
BATCH_SIZE = 1000
# Due rows read, rendered and claimed at a time: one ledger insert per chunk, not per batch.
CHUNK_SIZE = 10_000
# What rendering and the ledger read of a due row (fct_nurture_queue's columns, and the key).
DUE_ROW_COLUMNS = (
    "lead_id", "email", "first_name", "last_name", "company", "title", "owner_rep_id",
    "owner_name", "owner_email", "stage", "stage_reason", "nurture_track", "next_step",
    "message_key",
)  # fmt: skip
MAX_LISTED_ERRORS = 20
# message_key() in SQL, over queue-shaped rows.
MESSAGE_KEY_SQL = "md5(lead_id || '|' || nurture_track || '|' || next_step)"
SUPPRESSION_EVENT_TYPES = ("unsubscribe", "bounce", "spam_report")
# The stages a lead is nurtured in (the others belong to sales): as fct_nurture_queue has it.
SALES_STAGES = ("mql", "sql", "opportunity", "customer")
# On PostgreSQL, where runs may overlap: the session lock a run holds while its claims are in
# flight (so no other run settles them as left by a crash), and the one that orders the
# daily limit's count-and-claim across runs.
SENDING_LOCK = "email-sending:{run_id}"
DAILY_LIMIT_LOCK = "email-daily-limit"
# A claimed step whose email was certainly not sent: the run stopped before (or the provider
# refused the whole request). It is failed, not deleted, so the next run sends it at once.
INTERRUPTED = "not sent: the run that claimed it stopped before the email went out"


@dataclass(frozen=True)
class Sender:
    """Who the nurture emails come from, and where recipients unsubscribe."""

    from_email: str
    name: str
    address: str
    unsubscribe_url: str  # may contain {message_key}


@dataclass(frozen=True)
class SendLimits:
    max_attempts: int = 3  # a step that failed this many times is no longer claimed
    daily_limit: int | None = None  # ledger rows created per UTC day of the run clock


@dataclass(frozen=True)
class DispatchReport:
    due: int
    sent: int
    failed: int
    not_rendered: int
    suppressed: int = 0  # due, but suppressed since the queue was built
    gave_up: int = 0  # due, but failed max_attempts times already
    deferred: int = 0  # due, but over the daily limit: sent on a later day
    deferred_quiet_hours: int = 0  # due, but outside the send window in the lead's time zone
    unknown_pending: int = 0  # pending past LEADFLOW_PENDING_UNKNOWN_AFTER_HOURS, no event
    released_never_sent: int = 0  # pending, proven never to have reached the provider: resent
    errors: tuple[str, ...] = ()  # the distinct reasons of failed, unrendered and given-up sends

    @property
    def could_not_send(self) -> bool:
        """A send failed or an email could not be rendered: the run must say so."""
        return bool(self.failed or self.not_rendered)


@dataclass
class PreparedSend:
    """A due step rendered for its lead, waiting for its claim."""

    group: tuple[Any, ...]  # (track, step, shape values, reply_to): one batch's worth
    shape: RenderedShape
    recipient: Recipient
    ledger_row: dict[str, Any]


@dataclass
class _Tally:
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # cut from a claim by the daily limit that overlapping runs spent
    errors: set[str] = field(default_factory=set)


def message_key(lead_id: str, track: str, step: int) -> str:
    return hashlib.md5(f"{lead_id}|{track}|{step}".encode()).hexdigest()


def settle_earlier_sends(connection: Connection, sender: EmailSender) -> int:
    """Resolve ledger rows a crashed run left ``pending``; returns how many were settled.

    Delivered → ``sent``, at the clock of the run that claimed it. Certainly not delivered →
    ``failed`` as ``INTERRUPTED``, so this run sends it again. Unknown (the provider cannot say)
    → left pending: never risk a second email. A run still sending (on PostgreSQL, where runs
    overlap) keeps its claims: they are in flight, not left by a crash.
    """
    pending = connection.execute(
        "select message_key, run_id from ops.email_sends where status = 'pending'"
    ).fetchall()
    # Read after the rows: a run seen sending now held its lock when it claimed them.
    sending = _runs_sending_now(connection, {run_id for _, run_id in pending})
    outcomes = [
        (key, run_id, sender.was_delivered(key)) for key, run_id in pending if run_id not in sending
    ]
    known = [outcome for outcome in outcomes if outcome[2] is not None]
    if not known:
        return 0
    settled = pa.table(
        {
            "message_key": [key for key, _, _ in known],
            "run_id": [run_id for _, run_id, _ in known],
            "delivered": [delivered for _, _, delivered in known],
        },
        schema=pa.schema(
            [("message_key", pa.string()), ("run_id", pa.string()), ("delivered", pa.bool_())]
        ),
    )
    connection.register("settled_earlier", settled)
    connection.execute(
        """
        update ops.email_sends as ledger
        set status = case when settled_earlier.delivered then 'sent' else 'failed' end,
            sent_at = case when settled_earlier.delivered then ledger.created_at end,
            error = case when settled_earlier.delivered then null else ? end
        from settled_earlier
        -- Still the claim that was read: another run may have settled and claimed it since.
        where
            ledger.message_key = settled_earlier.message_key
            and ledger.run_id = settled_earlier.run_id
            and ledger.status = 'pending'
        """,
        [INTERRUPTED],
    )
    connection.unregister("settled_earlier")
    return len(known)


def _runs_sending_now(connection: Connection, run_ids: set[str]) -> set[str]:
    """Which of these runs are sending now (they hold their sending lock); a run killed holds
    no lock."""
    if isinstance(connection, duckdb.DuckDBPyConnection):
        return set()
    held = connection.held_advisory_keys()
    return {
        run_id
        for run_id in run_ids
        if connection.advisory_key(SENDING_LOCK.format(run_id=run_id)) in held
    }


def why_now(row: Mapping[str, Any], subject: str) -> str:
    """The ledger's note of the send. The follow-up task words its own why-now when the lead
    engages (flows/sales/tasks.py), with the stage in the reasons seed's words, never a code."""
    return (
        f"Nurture email '{subject}' went out (track {row['nurture_track']}, step "
        f"{row['next_step']})."
    )


def split_into_batches(
    recipients: Iterable[Recipient], size: int = BATCH_SIZE
) -> list[tuple[Recipient, ...]]:
    """Batches of at most ``size``, in order, never one address twice in a batch.

    SendGrid refuses a request that names an address twice; a second lead with the same
    address goes to the next batch instead.
    """
    batches: list[list[Recipient]] = []
    addresses: list[set[str]] = []
    first_open = 0
    for recipient in recipients:
        address = recipient.to_email.lower()
        index = first_open
        while index < len(batches) and (len(batches[index]) >= size or address in addresses[index]):
            index += 1
        if index == len(batches):
            batches.append([])
            addresses.append(set())
        batches[index].append(recipient)
        addresses[index].add(address)
        while first_open < len(batches) and len(batches[first_open]) >= size:
            first_open += 1
    return [tuple(batch) for batch in batches]


def _events_seen_by_models(connection: Connection) -> datetime | None:
    """The newest event load the models were built from (None before the first build)."""
    try:
        row = connection.execute(
            "select max(loaded_at) from main.int_lead_events_scored"
        ).fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


def _select_due(connection: Connection, as_of: datetime, limits: SendLimits) -> dict[str, Any]:
    """Put the due steps into the temporary table ``due_steps``; return the counts.

    Due: the queue's due rows, plus steps interrupted after the queue was built (it saw them
    pending). Each is marked suppressed-now, given-up, or claimable.
    """
    connection.execute(
        f"""
        create or replace temporary table due_steps as
        with
        queue as (
            select
                lead_id, email, first_name, last_name, company, title, owner_rep_id,
                owner_name, owner_email, stage, stage_reason, nurture_track, next_step, due_at
            from main.fct_nurture_queue
            where is_due
        ),
        interrupted as (
            select
                leads.lead_id, leads.email, leads.first_name, leads.last_name, leads.company,
                leads.title, leads.owner_rep_id, leads.owner_name, leads.owner_email,
                leads.stage, leads.stage_reason, ledger.track as nurture_track,
                ledger.step as next_step, ledger.created_at as due_at
            from ops.email_sends as ledger
            inner join main.dim_leads as leads on ledger.lead_id = leads.lead_id
            where
                ledger.status = 'failed'
                and ledger.error = $interrupted
                and leads.nurture_track = ledger.track
                and leads.email is not null
                and not list_contains($sales_stages, leads.stage)
                and not exists (
                    select 1 from main.fct_nurture_queue as listed
                    where
                        listed.lead_id = ledger.lead_id
                        and listed.nurture_track = ledger.track
                        and listed.next_step = ledger.step
                )
        ),
        candidates as (
            select *, {MESSAGE_KEY_SQL} as message_key
            from (select * from queue union all select * from interrupted)
        ),
        suppressed_emails as (
            select lower(trim(email)) as email
            from raw.events
            where
                list_contains($suppression_event_types, lower(trim(event_type)))
                and loaded_at > coalesce($seen::timestamp, '-infinity'::timestamp)
            union
            select lower(trim(email)) from ops.email_suppressions where lifted_at is null
        ),
        marked as (
            select
                candidates.*,
                ledger.status as ledger_status,
                coalesce(ledger.attempts, 1) as attempts,
                ledger.error as ledger_error,
                coalesce(leads.is_suppressed, false)
                or lower(trim(candidates.email)) in (select email from suppressed_emails)
                    as is_suppressed_now
            from candidates
            left join ops.email_sends as ledger on candidates.message_key = ledger.message_key
            left join main.dim_leads as leads on candidates.lead_id = leads.lead_id
        )
        select
            *,
            not is_suppressed_now and ledger_status = 'failed' and attempts >= $max_attempts
                as has_given_up,
            not is_suppressed_now
            and (ledger_status is null or (ledger_status = 'failed' and attempts < $max_attempts))
                as is_claimable
        from marked
        """,
        {
            "interrupted": INTERRUPTED,
            "seen": _events_seen_by_models(connection),
            "max_attempts": limits.max_attempts,
            "sales_stages": list(SALES_STAGES),
            "suppression_event_types": list(SUPPRESSION_EVENT_TYPES),
        },
    )
    counts = connection.execute(
        """
        select
            count(*),
            count(*) filter (where is_suppressed_now),
            count(*) filter (where has_given_up),
            count(*) filter (where is_claimable),
            array_agg(distinct ledger_error) filter (where has_given_up)
        from due_steps
        """
    ).fetchone()
    assert counts is not None
    due, suppressed, gave_up, claimable, gave_up_errors = counts
    allowed = claimable
    if limits.daily_limit is not None:
        allowed = min(claimable, _left_today(connection, as_of, limits.daily_limit))
    return {
        "due": due,
        "suppressed": suppressed,
        "gave_up": gave_up,
        "gave_up_errors": [error for error in gave_up_errors or () if error],
        "claimable": claimable,
        "allowed": allowed,
        "deferred": claimable - allowed,
    }


def _left_today(connection: Connection, as_of: datetime, daily_limit: int) -> int:
    """How many ledger rows the daily limit still allows on the run clock's UTC day."""
    day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    today = connection.execute(
        "select count(*) from ops.email_sends where created_at >= ? and created_at < ?",
        [day, day + timedelta(days=1)],
    ).fetchone()
    return max(daily_limit - (today[0] if today else 0), 0)


@contextmanager
def _daily_allowance(
    connection: Connection, limits: SendLimits, as_of: datetime
) -> Iterator[int | None]:
    """How many steps a claim may take today (None: no cut), held until the claim is written.

    On DuckDB one run writes at a time, and ``_select_due`` already cut the due steps to the
    limit. On PostgreSQL runs may overlap, so each claim counts again under a lock that the
    claims of every run take in turn: together they never pass the limit.
    """
    if limits.daily_limit is None or isinstance(connection, duckdb.DuckDBPyConnection):
        yield None
        return
    with connection.advisory_lock(DAILY_LIMIT_LOCK):
        yield _left_today(connection, as_of, limits.daily_limit)


def dispatch_due_steps(
    connection: Connection,
    *,
    tracks: Mapping[str, Track],
    renderer: TemplateRenderer,
    email_sender: EmailSender,
    sender: Sender,
    run_id: str,
    as_of: datetime,
    limits: SendLimits = SendLimits(),
) -> DispatchReport:
    """Render and send every due step of ``fct_nurture_queue``, in ledger-guarded batches."""
    counts = _select_due(connection, as_of, limits)
    # In group order, so batches come out full; under a daily limit, the oldest due first.
    # Numbered as sorted, and read back in chunks by number (one connection, so the temporary
    # tables stay visible). Both engines number an unordered window in the order its input
    # comes; a window ordered by the group would sort again (a second of CPU more at a million
    # rows on DuckDB), and a different order would only make the batches less full.
    limited = counts["allowed"] < counts["claimable"]
    due_columns = ", ".join(DUE_ROW_COLUMNS)
    connection.execute(
        f"""
        create or replace temporary table claimable_steps as
        select row_number() over () as chunk_row, {due_columns}
        from (
            select {due_columns}
            from (
                select * from due_steps where is_claimable
                {"order by due_at nulls first, lead_id limit $allowed" if limited else ""}
            ) as claimable
            order by nurture_track, next_step, owner_email nulls first, owner_name, lead_id
        ) as in_group_order
        """,
        {"allowed": counts["allowed"]} if limited else {},
    )
    # Its memory is better spent on the ledger rows the sends are about to write.
    connection.execute("drop table due_steps")
    preparer = SendPreparer(tracks, renderer, sender, run_id, as_of)
    tally = _Tally()
    # While this run has claims in flight, other runs see it (``_runs_sending_now``).
    with one_writer_at_a_time(connection, SENDING_LOCK.format(run_id=run_id)):
        for start in range(0, counts["allowed"], CHUNK_SIZE):
            chunk = connection.execute(
                f"select {due_columns} from claimable_steps "
                "where chunk_row > ? and chunk_row <= ? order by chunk_row",
                [start, start + CHUNK_SIZE],
            )
            columns = [description[0] for description in chunk.description or []]
            rows = [dict(zip(columns, values, strict=True)) for values in chunk.fetchall()]
            prepared = preparer.prepare(rows)
            _quarantine_unrendered(connection, prepared.unrendered, run_id)
            _send(
                connection,
                prepared.sends,
                preparer.steps,
                sender,
                email_sender,
                limits,
                as_of,
                tally,
            )
    connection.execute("drop table claimable_steps")
    return DispatchReport(
        due=counts["due"],
        sent=tally.sent,
        failed=tally.failed,
        not_rendered=preparer.not_rendered,
        suppressed=counts["suppressed"],
        gave_up=counts["gave_up"],
        deferred=counts["deferred"] + tally.deferred,
        errors=_listed(tally.errors | preparer.errors | set(counts["gave_up_errors"])),
    )


def _listed(errors: set[str]) -> tuple[str, ...]:
    """The distinct reasons, a screenful at most (some name their lead or address)."""
    ordered = sorted(errors)
    if len(ordered) <= MAX_LISTED_ERRORS:
        return tuple(ordered)
    more = len(ordered) - MAX_LISTED_ERRORS + 1
    return (
        *ordered[: MAX_LISTED_ERRORS - 1],
        f"... and {more:,} more in ops.email_sends and ops.quarantine",
    )


@dataclass
class PreparedChunk:
    sends: list[PreparedSend]
    unrendered: list[tuple[Mapping[str, Any], str]]  # the queue row, and why


class SendPreparer:
    """Renders due rows into recipients and ledger rows: each step once per shape."""

    def __init__(
        self,
        tracks: Mapping[str, Track],
        renderer: TemplateRenderer,
        sender: Sender,
        run_id: str,
        as_of: datetime,
    ) -> None:
        self.steps = {(s.track, s.step): (s, t) for t in tracks.values() for s in t.steps}
        self.renderer = renderer
        self.sender = sender
        self.run_id = run_id
        self.as_of = as_of
        self.shapes: dict[tuple[Any, ...], RenderedShape | TemplateError] = {}
        self.not_rendered = 0
        self.errors: set[str] = set()

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> PreparedChunk:
        """Each row's recipient and ledger row; rows that cannot be rendered, with the reason."""
        chunk = PreparedChunk([], [])
        for row in rows:
            found = self.steps.get((row["nurture_track"], row["next_step"]))
            try:
                if found is None:
                    raise TemplateError(
                        f"track {row['nurture_track']} has no step {row['next_step']} in "
                        "templates/ (was it removed after the models were built?)"
                    )
                step = found[0]
                key = row["message_key"]
                unsubscribe_url = self.sender.unsubscribe_url.format(message_key=key)
                values = personal_values(
                    row, unsubscribe_url=unsubscribe_url, sender_name=self.sender.name
                )
                real = shape_values(self.renderer.shape_fields(step), values)
                shape_key = (step.track, step.step, tuple(sorted(real.items())))
                shape = self._shape(shape_key, step, real)
                personal = shape.personalize(values)
            except TemplateError as error:
                self.not_rendered += 1
                self.errors.add(str(error))
                chunk.unrendered.append((row, str(error)))
                continue
            reply_to = values["rep.email"] or None  # the owning rep
            lead_id = str(row["lead_id"])
            recipient = Recipient(
                message_key=key,
                lead_id=lead_id,
                to_email=values["lead.email"],
                to_name=" ".join(
                    name
                    for name in (clean_text(row["first_name"]), clean_text(row["last_name"]))
                    if name
                ),
                subject=personal.subject,
                substitutions=personal.substitutions,
                unsubscribe_url=unsubscribe_url,
                custom_args={"message_key": key, "lead_id": lead_id},
            )
            ledger_row = {
                "message_key": key,
                "lead_id": lead_id,
                "email": recipient.to_email,
                "track": step.track,
                "step": step.step,
                "template": step.template,
                "subject": personal.subject,
                "owner_rep_id": row.get("owner_rep_id"),
                "owner_email": row.get("owner_email"),
                "follow_up_title": personal.follow_up_title,
                "follow_up_due_days": step.follow_up_due_days,
                "why_now": why_now(row, personal.subject),
                "created_at": self.as_of,
                "run_id": self.run_id,
            }
            chunk.sends.append(PreparedSend((*shape_key, reply_to), shape, recipient, ledger_row))
        return chunk

    def _shape(
        self, shape_key: tuple[Any, ...], step: NurtureStep, real: Mapping[str, str]
    ) -> RenderedShape:
        """The step rendered for this shape: once per run (a failure, too, is kept)."""
        shape = self.shapes.get(shape_key)
        if shape is None:
            shared = shared_context(
                step.track,
                step.step,
                sender_name=self.sender.name,
                sender_address=self.sender.address,
            )
            try:
                shape = self.renderer.render_shape(step, shared, real)
            except TemplateError as error:
                shape = error
            self.shapes[shape_key] = shape
        if isinstance(shape, TemplateError):
            raise shape
        return shape


LEDGER_ROW_SCHEMA = pa.schema(
    [
        ("message_key", pa.string()),
        ("lead_id", pa.string()),
        ("email", pa.string()),
        ("track", pa.string()),
        ("step", pa.int32()),
        ("template", pa.string()),
        ("subject", pa.string()),
        ("owner_rep_id", pa.string()),
        ("owner_email", pa.string()),
        ("follow_up_title", pa.string()),
        ("follow_up_due_days", pa.int32()),
        ("why_now", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("run_id", pa.string()),
    ]
)


# The pending ledger rows of a claim, from the registered ``claim_chunk``; parameters: the
# provider's name and the claim's wall clock.
CLAIM_SQL = """(
        message_key, lead_id, email, track, step, template, subject, status, provider,
        owner_rep_id, owner_email, follow_up_title, follow_up_due_days, why_now,
        created_at, run_id, attempts, claimed_at
    )
    select
        message_key, lead_id, email, track, step, template, subject, 'pending', ?,
        owner_rep_id, owner_email, follow_up_title, follow_up_due_days, why_now,
        created_at, run_id, 1, ?
    from claim_chunk"""


def _claim(
    connection: Connection,
    prepared: list[PreparedSend],
    provider: str,
    limits: SendLimits,
    as_of: datetime,
    tally: _Tally,
) -> list[PreparedSend]:
    """Insert pending ledger rows; return only the sends this call claimed.

    A claim succeeds for a step never tried, or one whose earlier sends failed fewer than
    ``max_attempts`` times. ``_select_due`` already left the others out: this is the guard,
    and it holds against another run claiming the same steps at the same moment (PostgreSQL):
    each statement is atomic, and a step only one of them inserts or revives is that one's.
    """
    with _daily_allowance(connection, limits, as_of) as allowance:
        if allowance is not None and allowance < len(prepared):
            tally.deferred += len(prepared) - allowance
            prepared = prepared[:allowance]
        return _claim_rows(connection, prepared, provider, limits)


def _claim_rows(
    connection: Connection, prepared: list[PreparedSend], provider: str, limits: SendLimits
) -> list[PreparedSend]:
    if not prepared:
        return []
    claim = pa.Table.from_pylist([p.ledger_row for p in prepared], schema=LEDGER_ROW_SCHEMA)
    connection.register("claim_chunk", claim)
    # The wall clock, not the run's: it orders the claims, so that a send with no word from the
    # provider can be told apart from sends claimed after it (release_never_sent).
    claimed_at = datetime.now(UTC).replace(tzinfo=None)
    try:
        # Nearly every claim is of steps never tried: a plain insert, a quarter of the upsert's
        # cost on a ledger of a million rows. The primary key refuses it whole if any of its
        # steps has a ledger row (a failed send to try again, or one another run has just
        # claimed), and the upsert below decides, row by row.
        connection.execute(f"insert into ops.email_sends {CLAIM_SQL}", [provider, claimed_at])
        keys = {p.recipient.message_key for p in prepared}
    except duckdb.ConstraintException:
        claimed = connection.execute(
            f"""
            insert into ops.email_sends {CLAIM_SQL}
            on conflict (message_key) do update set
                status = 'pending',
                provider = excluded.provider,
                subject = excluded.subject,
                error = null,
                created_at = excluded.created_at,
                run_id = excluded.run_id,
                attempts = coalesce(ops.email_sends.attempts, 1) + 1,
                claimed_at = excluded.claimed_at
            -- A step the provider refused is tried again, up to max_attempts; a pending or
            -- sent one never is.
            where ops.email_sends.status = 'failed' and coalesce(ops.email_sends.attempts, 1) < ?
            returning message_key
            """,
            [provider, claimed_at, limits.max_attempts],
        ).fetchall()
        keys = {key for (key,) in claimed}
    finally:
        connection.unregister("claim_chunk")
    return [p for p in prepared if p.recipient.message_key in keys]


def _send(
    connection: Connection,
    prepared: list[PreparedSend],
    steps: Mapping[tuple[str, int], tuple[NurtureStep, Track]],
    sender: Sender,
    email_sender: EmailSender,
    limits: SendLimits,
    as_of: datetime,
    tally: _Tally,
) -> None:
    """Claim and send the prepared steps a batch per group at a time; settle what was sent or
    refused.

    A batch is claimed right before its request, not with the chunk: a process killed (SIGKILL
    runs no ``finally``) leaves pending only the batches handed to the provider, whose events
    settle them, never claims of batches that were not sent and that no event would settle. If
    the sender raises ``EmailProviderError`` (the provider took nothing), the batch's claims
    are released at once.
    """
    groups: dict[tuple[Any, ...], tuple[RenderedShape, list[PreparedSend]]] = {}
    for p in prepared:
        groups.setdefault(p.group, (p.shape, []))[1].append(p)
    results: list[SendResult] = []
    try:
        for group, (shape, members) in groups.items():
            by_key = {p.recipient.message_key: p for p in members}
            for recipients in split_into_batches(p.recipient for p in members):
                batch_sends = [by_key[recipient.message_key] for recipient in recipients]
                claimed = _claim(
                    connection, batch_sends, email_sender.provider, limits, as_of, tally
                )
                if not claimed:
                    continue
                batch = _batch(group, shape, tuple(p.recipient for p in claimed), steps, sender)
                try:
                    results += email_sender.send(batch)
                except EmailProviderError:
                    _release(connection, [p.recipient.message_key for p in claimed])
                    raise
    finally:
        _settle(connection, results, as_of)
    for result in results:
        if result.status == "sent":
            tally.sent += 1
        else:
            tally.failed += 1
            tally.errors.add(result.error or "the provider gave no reason")


def _batch(
    group: tuple[Any, ...],
    shape: RenderedShape,
    recipients: tuple[Recipient, ...],
    steps: Mapping[tuple[str, int], tuple[NurtureStep, Track]],
    sender: Sender,
) -> OutgoingBatch:
    track_name, step_number, _, reply_to = group
    track = steps[(track_name, step_number)][1]
    return OutgoingBatch(
        track=track_name,
        step=step_number,
        from_email=sender.from_email,
        reply_to=reply_to,
        html=shape.html,
        text=shape.text,
        unsubscribe_group=track.unsubscribe_group,
        categories=("nurture", f"track:{track_name}", f"step:{step_number}"),
        recipients=recipients,
    )


def _settle(connection: Connection, results: list[SendResult], as_of: datetime) -> None:
    if not results:
        return
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


def _release(connection: Connection, message_keys: list[str]) -> None:
    """Give back claims whose email was never handed to the provider (not an attempt)."""
    if not message_keys:
        return
    connection.execute(
        """
        update ops.email_sends
        set status = 'failed', error = ?, attempts = coalesce(attempts, 1) - 1
        where list_contains(?, message_key) and status = 'pending'
        """,
        [INTERRUPTED, message_keys],
    )


def _quarantine_unrendered(
    connection: Connection,
    unrendered: list[tuple[Mapping[str, Any], str]],
    run_id: str,
) -> None:
    if not unrendered:
        return
    rows = pa.table(
        {
            "record_key": [str(row["lead_id"]) for row, _ in unrendered],
            "reason": [reason for _, reason in unrendered],
            "record": [json.dumps(row, default=str) for row, _ in unrendered],
        }
    )
    connection.register("unrendered", rows)
    connection.execute(
        """
        insert into ops.quarantine (run_id, stage, entity, record_key, reason_code, reason,
                                    record, quarantined_at)
        select ?, 'nurture', 'nurture_queue', record_key, 'render_failed', reason,
               record::json, ?
        from unrendered
        """,
        [run_id, datetime.now(UTC).replace(tzinfo=None)],
    )
    connection.unregister("unrendered")
