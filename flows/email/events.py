"""SendGrid's email events: landed by the receiver, loaded by the next extract, acted on in SQL.

The receiver (``flows/email/webhook.py``) runs beside the pipeline and may not open the
warehouse (DuckDB has one writer), so it appends every accepted event as a JSON line to a file
of its own under ``landing/sendgrid/`` (``LandingWriter``). The next extract loads the lines it
has not read yet (``load_landed_events``), all in SQL, one landing file per transaction:

- every event is kept once in ``raw.email_provider_events``: SendGrid retries for a day and
  sends duplicates, sometimes under a new ``sg_event_id``, so an event is a duplicate when its
  ``sg_event_id`` or its (``sg_message_id``, event, timestamp, url) was loaded before;
- ``open``/``click`` become ``email_open``/``email_click`` events and the opt-outs become
  ``bounce``/``spam_report``/``unsubscribe`` events in ``raw.events``, so dbt scores and
  suppresses them like any other event;
- opt-outs also write ``ops.email_suppressions`` (checked when a send is claimed), and a
  ``group_resubscribe`` lifts its group's suppression;
- ``processed``/``delivered`` settle the send ledger (``settle_from_events``).

A line that is not an event is quarantined with a reason. A line not yet ended by a newline is
a write in progress (or one cut off by a crash, which SendGrid was never told succeeded and so
sends again): it is read once it is complete.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa

from flows.runs import utc_now
from flows.sources.inbox import file_sha256, parsing_connection
from flows.sources.mapping import sql_text
from flows.warehouse import Connection, one_writer_at_a_time

ENTITY = "email_provider_events"
SOURCE = "sendgrid"

# SendGrid event -> LeadFlow event type in raw.events (seed engagement_points, macro
# suppression_event_types). A dropped message was never delivered: for scoring and suppression
# it is a bounce. A group unsubscribe suppresses the lead in dbt until a later group
# resubscribe; only the suppression table knows the group (and lifts that group's).
EVENT_TYPES: dict[str, str] = {
    "open": "email_open",
    "click": "email_click",
    "bounce": "bounce",
    "dropped": "bounce",
    "spamreport": "spam_report",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "group_unsubscribe",
    "group_resubscribe": "group_resubscribe",
}
SUPPRESSING_EVENTS = ("bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe")
SETTLING_EVENTS = ("processed", "delivered")

SUPPRESSIONS_DDL = """
    create table if not exists ops.email_suppressions (
        email varchar not null,
        reason varchar not null,
        source varchar not null,
        suppressed_at timestamp not null,
        lifted_at timestamp
    )"""

QUARANTINE_REASONS: dict[str, str] = {
    "not_json": "the line is not JSON (a corrupted landing file)",
    "not_an_event": "the line is JSON but not an event object",
    "missing_event": "the event has no `event` type",
    "missing_email": "the event has no `email` address",
    "bad_timestamp": "the event's `timestamp` is not a unix time in seconds",
}


class LandingWriter:
    """Appends accepted records, one JSON line each, to ``<prefix>-<UTC day>-<pid>.jsonl``
    (SendGrid's events; sales outcomes, ``flows/sales/outcomes.py``, with prefix ``outcomes``).

    Each batch is written in one piece under a lock (concurrent requests never interleave
    lines), flushed and fsynced before ``append`` returns, so an acknowledged record survives a
    crash. The process id in the name keeps several receiver processes out of each other's
    files.
    """

    def __init__(
        self, folder: Path, clock: Callable[[], datetime] = utc_now, *, prefix: str = "events"
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._day: date | None = None
        self._handle: IO[bytes] | None = None

    def append(self, events: Sequence[Mapping[str, Any]]) -> Path:
        lines = b"".join(
            json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for event in events
        )
        with self._lock:
            handle = self._file_for(self._clock().date())
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
            return Path(handle.name)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _file_for(self, day: date) -> IO[bytes]:
        if self._handle is not None and self._day == day:
            return self._handle
        if self._handle is not None:
            self._handle.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.prefix}-{day:%Y%m%d}-{os.getpid()}.jsonl"
        is_new = not path.exists()
        self._handle = path.open("ab")
        self._day = day
        if not is_new and _ends_mid_line(path):
            # A receiver that crashed mid-write (same day, same pid: a restarted container) left
            # a partial line, never acknowledged; end it, so that it alone is quarantined.
            self._handle.write(b"\n")
        if is_new:
            # The new file's name must survive a crash too, not only its bytes.
            folder_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)
        return self._handle


def _ends_mid_line(path: Path) -> bool:
    with path.open("rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


@dataclass(frozen=True)
class LandedEventsLoad:
    """What one extract made of the landing files: lines read, events kept, duplicates."""

    files: int = 0
    lines_read: int = 0
    events_loaded: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined lines by reason code

    @property
    def duplicates(self) -> int:
        return self.lines_read - self.events_loaded - sum(self.reasons.values())


def ensure_suppressions_table(connection: Connection) -> None:
    connection.execute("create schema if not exists ops")
    connection.execute(SUPPRESSIONS_DDL)


def complete_lines(path: Path, skip: int) -> list[str]:
    """The lines of a landing file after the first ``skip``, up to its last newline."""
    content = path.read_bytes()
    complete = content[: content.rfind(b"\n") + 1]
    return complete.decode("utf-8", errors="replace").splitlines()[skip:]


def load_landed_events(connection: Connection, folder: Path, run_id: str) -> LandedEventsLoad:
    """Load the lines of every landing file not read before, each file in a transaction.

    A landing file grows while its receiver runs, so each load of it reads the lines after
    those earlier loads read (``ops.loads.rows_read``) and is recorded under the hash of the
    file as it then was: an unchanged file is skipped. On PostgreSQL, workers that load at the
    same time take turns (``one_writer_at_a_time``): the next one finds the lines read.
    """
    # The load reads what was loaded (the file's lines, known events), then writes.
    with one_writer_at_a_time(connection, f"load {ENTITY}"):
        return _load_new_lines(connection, folder, run_id)


def _load_new_lines(connection: Connection, folder: Path, run_id: str) -> LandedEventsLoad:
    ensure_suppressions_table(connection)
    loaded = {row[0] for row in connection.execute("select file_sha256 from ops.loads").fetchall()}
    total = LandedEventsLoad()
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        sha256 = file_sha256(path)
        if sha256 in loaded:
            continue
        already_read = connection.execute(
            "select coalesce(sum(rows_read), 0) from ops.loads where entity = ? and file_path = ?",
            [ENTITY, str(path)],
        ).fetchall()[0][0]
        lines = complete_lines(path, int(already_read))
        if not lines:
            continue
        connection.begin()
        try:
            one = _load_lines(connection, path, sha256, lines, int(already_read), run_id)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        reasons = dict(total.reasons)
        for code, count in one.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
        total = LandedEventsLoad(
            total.files + 1,
            total.lines_read + one.lines_read,
            total.events_loaded + one.events_loaded,
            reasons,
        )
    connection.execute("drop table if exists landed_lines")
    return total


# The landed lines of one load, parsed by DuckDB: each line's rejection code (null for an
# event), what quarantine keeps of a rejected line, and what an event says, normalised.
# `is_repeat`: a later line of an event the file already has: the first line of an
# sg_event_id, then the first of what an event says (a retry can carry a new sg_event_id).
PARSE_LINES_SQL = """
    create or replace temp table landed_lines as
    with decoded as (
        -- Each line is parsed three times (a cast, its type, all its fields at once), not
        -- once per field. fields[n] is the n-th path's value, as text.
        select
            source_line,
            line,
            payload,
            json_type(payload) as payload_type,
            json_extract_string(payload, [
                '$.event', '$.email', '$.timestamp', '$.sg_event_id', '$.sg_message_id',
                '$.url', '$.message_key', '$.lead_id', '$.asm_group_id', '$.reason'
            ]) as fields
        from (select source_line, line, try_cast(line as json) as payload from landed_batch)
    ),

    checked as (
        select
            source_line,
            line,
            payload,
            payload_type,
            fields,
            case
                when payload is null then 'not_json'
                when payload_type <> 'OBJECT' then 'not_an_event'
                when nullif(trim(fields[1]), '') is null then 'missing_event'
                when nullif(trim(fields[2]), '') is null then 'missing_email'
                when try_cast(fields[3] as bigint) is null then 'bad_timestamp'
            end as rejection_code
        from decoded
    ),

    parsed as (
        select
            source_line,
            rejection_code,
            case when rejection_code is not null then coalesce(payload, to_json(line)) end
                as quarantined_record,
            case when payload_type = 'OBJECT' then fields[4] end as record_key,
            case when rejection_code is null then payload end as payload,
            nullif(trim(fields[4]), '') as sg_event_id,
            nullif(trim(fields[5]), '') as sg_message_id,
            lower(trim(fields[1])) as event,
            trim(fields[2]) as email,
            case when rejection_code is null then
                make_timestamp(cast(fields[3] as bigint) * 1000000)
            end as occurred_at,
            nullif(trim(fields[6]), '') as url,
            nullif(trim(fields[7]), '') as message_key,
            nullif(trim(fields[8]), '') as lead_id,
            try_cast(fields[9] as bigint) as asm_group_id,
            nullif(trim(fields[10]), '') as reason
        from checked
    ),

    by_event_id as (
        select
            *,
            rejection_code is null and row_number() over (
                partition by rejection_code, coalesce(sg_event_id, 'line ' || source_line)
                order by source_line
            ) > 1 as repeats_an_event_id
        from parsed
    )

    select
        source_line,
        rejection_code,
        quarantined_record,
        record_key,
        payload,
        sg_event_id,
        sg_message_id,
        event,
        email,
        occurred_at,
        url,
        message_key,
        lead_id,
        asm_group_id,
        reason,
        repeats_an_event_id or (
            rejection_code is null and row_number() over (
                partition by
                    rejection_code, repeats_an_event_id, coalesce(sg_message_id, email), event,
                    occurred_at, url
                order by source_line
            ) > 1
        ) as is_repeat
    from by_event_id
"""


def _landed_lines(connection: Connection, lines: list[str], first_line: int) -> None:
    """The temporary table ``landed_lines`` (PARSE_LINES_SQL) on the warehouse connection.

    DuckDB reads the lines: on a DuckDB warehouse, in place; on PostgreSQL, on a scratch
    in-memory DuckDB, whose parsed rows are then copied over in one piece (``register``).
    """
    landed = pa.table(
        {
            "source_line": pa.array(range(first_line + 1, first_line + len(lines) + 1), pa.int64()),
            "line": pa.array(lines, pa.string()),
        }
    )
    with parsing_connection(connection) as reader:
        _parse_lines(reader, landed)
        if reader is not connection:
            connection.register("landed_lines", reader.table("landed_lines").to_arrow_table())


def _parse_lines(reader: duckdb.DuckDBPyConnection, landed: pa.Table) -> None:
    reader.register("landed_batch", landed)
    reader.execute(PARSE_LINES_SQL)
    reader.unregister("landed_batch")


def _load_lines(
    connection: Connection,
    path: Path,
    sha256: str,
    lines: list[str],
    first_line: int,
    run_id: str,
) -> LandedEventsLoad:
    load_id = f"load_{sha256[:20]}"
    _landed_lines(connection, lines, first_line)
    reasons_sql = " ".join(
        f"when {sql_text(code)} then {sql_text(text)}" for code, text in QUARANTINE_REASONS.items()
    )
    connection.execute(
        f"""
        insert into ops.quarantine (load_id, run_id, stage, entity, source_file, source_line,
            record_key, reason_code, reason, record, quarantined_at)
        select ?, ?, 'extract', ?, ?, source_line, record_key, rejection_code,
               case rejection_code {reasons_sql} end, cast(quarantined_record as json),
               now()::timestamp
        from landed_lines
        where rejection_code is not null
        """,
        [load_id, run_id, ENTITY, str(path)],
    )
    events_loaded = connection.execute(
        """
        insert into raw.email_provider_events (sg_event_id, sg_message_id, event, email,
            occurred_at, url, message_key, lead_id, asm_group_id, reason, payload,
            load_id, source, source_file, source_line, loaded_at)
        with new_events as (
            -- The file's events, less repeats within it and events loaded before, by either key.
            select * from landed_lines
            where
                rejection_code is null
                and not is_repeat
                and not exists (
                    select 1 from raw.email_provider_events as known
                    where known.sg_event_id = landed_lines.sg_event_id
                )
                and not exists (
                    select 1 from raw.email_provider_events as known
                    where
                        coalesce(known.sg_message_id, known.email)
                        = coalesce(landed_lines.sg_message_id, landed_lines.email)
                        and known.event = landed_lines.event
                        and known.occurred_at = landed_lines.occurred_at
                        and known.url is not distinct from landed_lines.url
                )
        ),

        -- Bounces and spam reports carry no custom args: their send is found by the
        -- provider's message id (one per request, so with the address) in the ledger.
        sends_by_provider_id as (
            select
                provider_message_id,
                lower(email) as email,
                min(message_key) as message_key,
                min(lead_id) as lead_id
            from ops.email_sends
            where provider_message_id is not null
            group by 1, 2
        )

        select
            new_events.sg_event_id,
            new_events.sg_message_id,
            new_events.event,
            new_events.email,
            new_events.occurred_at,
            new_events.url,
            coalesce(new_events.message_key, sends_by_provider_id.message_key),
            coalesce(sends_by_key.lead_id, sends_by_provider_id.lead_id, new_events.lead_id),
            new_events.asm_group_id,
            new_events.reason,
            cast(new_events.payload as json),
            ?, ?, ?, new_events.source_line, now()::timestamp
        from new_events
        left join ops.email_sends as sends_by_key
            on new_events.message_key = sends_by_key.message_key
        left join sends_by_provider_id
            on split_part(new_events.sg_message_id, '.', 1)
            = sends_by_provider_id.provider_message_id
            and lower(new_events.email) = sends_by_provider_id.email
        """,
        [load_id, SOURCE, str(path)],
    ).fetchall()[0][0]
    _map_to_lead_events(connection, load_id)
    _apply_suppressions(connection, load_id)
    quarantined = dict(
        connection.execute(
            "select rejection_code, count(*) from landed_lines "
            "where rejection_code is not null group by 1 order by 1"
        ).fetchall()
    )
    connection.execute(
        "insert into ops.loads (load_id, run_id, entity, source, file_path, file_sha256, "
        "rows_read, rows_loaded, rows_quarantined, loaded_at, mapping) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp, ?)",
        [
            load_id,
            run_id,
            ENTITY,
            SOURCE,
            str(path),
            sha256,
            len(lines),
            events_loaded,
            sum(quarantined.values()),
            ENTITY,  # the landed-events loader is the file's one mapping
        ],
    )
    return LandedEventsLoad(1, len(lines), events_loaded, quarantined)


def _map_to_lead_events(connection: Connection, load_id: str) -> None:
    """The load's engagement and opt-out events, as the event types dbt scores."""
    mapping = ", ".join(
        f"({sql_text(event)}, {sql_text(event_type)})" for event, event_type in EVENT_TYPES.items()
    )
    connection.execute(
        f"""
        insert into raw.events (event_id, email, event_type, occurred_at, campaign, url,
            message_key, load_id, source, source_file, source_line, loaded_at)
        select
            'sendgrid:' || coalesce(
                provider_events.sg_event_id,
                md5(concat_ws('|', coalesce(provider_events.sg_message_id,
                    provider_events.email), provider_events.event,
                    provider_events.occurred_at, provider_events.url))
            ),
            provider_events.email,
            mapped.event_type,
            provider_events.occurred_at,
            null,
            provider_events.url,
            provider_events.message_key,
            provider_events.load_id,
            provider_events.source,
            provider_events.source_file,
            provider_events.source_line,
            provider_events.loaded_at
        from raw.email_provider_events as provider_events
        inner join (values {mapping}) as mapped (event, event_type)
            on provider_events.event = mapped.event
        where provider_events.load_id = ?
        """,
        [load_id],
    )


def _apply_suppressions(connection: Connection, load_id: str) -> None:
    """Opt-outs of the load suppress their address; group resubscribes lift their group.

    A group's suppression is told apart by its source, ``sendgrid:asm_group=<id>``. Lifts go
    first, so that an unsubscribe later than a resubscribe in the same load stays in force,
    and an unsubscribe older than a lift already made (a late retry) does not come back.
    """
    group_source = (
        "'sendgrid' || case when event in ('group_unsubscribe', 'group_resubscribe') "
        "then coalesce(':asm_group=' || asm_group_id, '') else '' end"
    )
    connection.execute(
        f"""
        update ops.email_suppressions as suppressions
        set lifted_at = resubscribes.resubscribed_at
        from (
            select lower(email) as email, {group_source} as source,
                   max(occurred_at) as resubscribed_at
            from raw.email_provider_events
            where load_id = ? and event = 'group_resubscribe'
            group by 1, 2
        ) as resubscribes
        where
            suppressions.email = resubscribes.email
            and suppressions.reason = 'group_unsubscribe'
            and suppressions.source = resubscribes.source
            and suppressions.lifted_at is null
            and suppressions.suppressed_at <= resubscribes.resubscribed_at
        """,
        [load_id],
    )
    suppressing = ", ".join(map(sql_text, SUPPRESSING_EVENTS))
    connection.execute(
        f"""
        insert into ops.email_suppressions (email, reason, source, suppressed_at)
        with opt_outs as (
            select lower(email) as email, event as reason, {group_source} as source, occurred_at
            from raw.email_provider_events
            where load_id = ? and event in ({suppressing})
        ),

        resubscribes as (
            select lower(email) as email, {group_source} as source,
                   max(occurred_at) as resubscribed_at
            from raw.email_provider_events
            where load_id = ? and event = 'group_resubscribe'
            group by 1, 2
        ),

        in_force as (
            select opt_outs.email, opt_outs.reason, opt_outs.source,
                   min(opt_outs.occurred_at) as suppressed_at
            from opt_outs
            left join resubscribes
                on opt_outs.email = resubscribes.email
                and opt_outs.source = resubscribes.source
            where
                opt_outs.reason <> 'group_unsubscribe'
                or resubscribes.resubscribed_at is null
                or opt_outs.occurred_at > resubscribes.resubscribed_at
            group by 1, 2, 3
        )

        select email, reason, source, suppressed_at
        from in_force
        where not exists (
            select 1 from ops.email_suppressions as known
            where
                known.email = in_force.email
                and known.reason = in_force.reason
                and known.source = in_force.source
                and (known.lifted_at is null or known.lifted_at >= in_force.suppressed_at)
        )
        """,
        [load_id, load_id],
    )


def settle_from_events(connection: Connection) -> int:
    """Mark ``sent`` the pending ledger rows SendGrid says it processed or delivered.

    ``sent_at`` is the row's ``created_at``: the clock of the run that claimed it, so a
    settlement never depends on when it happens. Returns how many rows were settled.
    """
    settling = ", ".join(map(sql_text, SETTLING_EVENTS))
    return len(
        connection.execute(
            f"""
            update ops.email_sends as sends
            set status = 'sent', sent_at = sends.created_at
            where
                sends.status = 'pending'
                and exists (
                    select 1 from raw.email_provider_events as provider_events
                    where
                        provider_events.message_key = sends.message_key
                        and provider_events.event in ({settling})
                )
            returning sends.message_key
            """
        ).fetchall()
    )


def release_never_sent(connection: Connection, as_of: datetime, after: timedelta) -> int:
    """Mark ``failed``, so the next claim sends them, the pending sends that never reached the
    provider; returns how many.

    SendGrid has no idempotency key and cannot be asked about a request it never got: a run
    killed between a batch's claim and its request leaves that batch pending, with no event
    ever to come. The evidence that it never went out: pending longer than ``after`` at the
    run clock ``as_of`` with no event of any kind for it, while a send claimed after it (wall
    clock, same provider) was processed, so events were reaching us all along. Without that
    evidence the row stays pending and is reported (``stale_pending``), never re-sent blind.
    """
    settling = ", ".join(map(sql_text, SETTLING_EVENTS))
    return len(
        connection.execute(
            f"""
            update ops.email_sends as sends
            set
                status = 'failed',
                error = 'never reached ' || sends.provider || ': no event for it, while sends '
                    || 'claimed after it were processed',
                -- Not an attempt: the provider never got it (as dispatch's own release).
                attempts = coalesce(sends.attempts, 1) - 1
            where
                sends.status = 'pending'
                and sends.created_at <= ?
                and not exists (
                    select 1 from raw.email_provider_events as provider_events
                    where provider_events.message_key = sends.message_key
                )
                and exists (
                    select 1
                    from ops.email_sends as later
                    inner join raw.email_provider_events as provider_events
                        on provider_events.message_key = later.message_key
                    where
                        later.provider = sends.provider
                        and later.claimed_at > sends.claimed_at
                        and provider_events.event in ({settling})
                )
            returning sends.message_key
            """,
            [as_of - after],
        ).fetchall()
    )


@dataclass(frozen=True)
class StalePending:
    """A send claimed long ago that no provider event has settled: never re-sent blind."""

    message_key: str
    lead_id: str
    email: str
    track: str
    step: int
    created_at: datetime
    run_id: str


def stale_pending(
    connection: Connection, as_of: datetime, after: timedelta = timedelta(hours=24)
) -> list[StalePending]:
    """Ledger rows pending for longer than ``after`` at the run clock ``as_of`` (naive UTC) with
    no processed/delivered event (setting ``LEADFLOW_PENDING_UNKNOWN_AFTER_HOURS``), oldest
    first."""
    settling = ", ".join(map(sql_text, SETTLING_EVENTS))
    rows = connection.execute(
        f"""
        select message_key, lead_id, email, track, step, created_at, run_id
        from ops.email_sends as sends
        where
            status = 'pending'
            and created_at <= ?
            and not exists (
                select 1 from raw.email_provider_events as provider_events
                where
                    provider_events.message_key = sends.message_key
                    and provider_events.event in ({settling})
            )
        order by created_at, message_key
        """,
        [as_of - after],
    ).fetchall()
    return [StalePending(*row) for row in rows]
