"""Sales outcomes in, three ways, and an outcome closing the lead's pending tasks.

Sales records an outcome with ``leadflow outcome`` (one task), an upload (``leadflow outcomes
load``, a CSV or JSON-lines file) or a signed callback (``POST /sales/outcomes`` on
``leadflow webhook serve``). None of them opens the warehouse for writing: a run may hold it
(DuckDB has one writer). The command and the callback append JSON lines to files of their own
under ``landing/sales_outcomes/`` (``LandingWriter``: flushed and fsynced before they answer);
each extract first seals the complete lines that are new into a closed file of the landing
folder (``seal_landed_outcomes``), and an upload is copied there whole. From there the
ordinary extract loads them as the ``outcomes`` entity: validated, bad rows quarantined with a
reason, and an ``outcome_id`` its source loaded before quarantined as a resend
(``loaded_before``), so a retried callback or a twice-run upload adds nothing.

dbt resolves each outcome to its lead (``int_lead_outcomes_resolved``) and re-stages the lead;
then, before the hand-off creates tasks, ``close_tasks_for_outcomes`` ends the lead's pending
tasks: accepted, opportunity or won → ``done``; rejected, lost or no response → ``closed``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flows.email.events import complete_lines
from flows.files import write_atomically
from flows.sales.tasks import PENDING_TASK_STATUSES
from flows.sources.catalog import OUTCOME_REASONS
from flows.sources.inbox import file_sha256
from flows.sources.mapping import sql_text
from flows.warehouse import Connection

# The source system of outcomes recorded by the command and the callback (raw.outcomes.source).
SOURCE = "sales"
LANDING_PREFIX = "outcomes"
# What each outcome makes of the lead's pending tasks.
TASK_STATUS_AFTER: dict[str, str] = {
    "accepted": "done",
    "opportunity": "done",
    "won": "done",
    "rejected": "closed",
    "lost": "closed",
    "no_response": "closed",
}
# What `leadflow outcome` records (the upload and the callback take every outcome).
COMMAND_OUTCOMES = ("accepted", "rejected", "won", "lost")
UPLOAD_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".csv.gz", ".jsonl.gz", ".ndjson.gz")

SLICE_NAME = re.compile(r"\.L(?P<first>\d+)-(?P<last>\d+)\.jsonl$")


class OutcomeError(Exception):
    """An outcome that cannot be recorded; the message says why and what to do."""


def outcome_reasons(dbt_project_dir: Path) -> dict[str, str]:
    """The reasons an outcome may give, with their descriptions: the codes of seed
    ``lifecycle_reasons`` that the outcomes entity accepts (flows/sources/catalog.py)."""
    seed = dbt_project_dir / "seeds" / "lifecycle_reasons.csv"
    with seed.open(newline="") as handle:
        described = {row["reason_code"]: row["description"] for row in csv.DictReader(handle)}
    return {code: described[code] for code in OUTCOME_REASONS if code in described}


def checked_reason(reason: str | None, reasons: dict[str, str]) -> str | None:
    """The reason, normalised, if the seed knows it (else an OutcomeError listing them)."""
    if reason is None:
        return None
    code = reason.strip().lower()
    if code not in reasons:
        listed = "\n".join(f"  {known}: {text}" for known, text in reasons.items())
        raise OutcomeError(f"{reason!r} is not a reason an outcome can give; one of:\n{listed}")
    return code


@dataclass(frozen=True)
class TaskOnRecord:
    """The sales task an outcome answers, as the warehouse has it."""

    task_id: str
    lead_id: str
    owner_rep_id: str
    status: str
    title: str


def find_task(connection: Connection, task_id: str) -> TaskOnRecord:
    row = connection.execute(
        "select task_id, lead_id, owner_rep_id, status, title from ops.sales_tasks "
        "where task_id = ?",
        [task_id.strip()],
    ).fetchone()
    if row is None:
        raise OutcomeError(
            f"no sales task {task_id!r}; task ids are in the rep's task file (task_id column) "
            "and in `leadflow tasks`"
        )
    return TaskOnRecord(*row)


def command_outcome(
    task: TaskOnRecord, outcome: str, reason: str | None, note: str | None, occurred_at: datetime
) -> dict[str, str | None]:
    """The outcome record `leadflow outcome` lands: its id is what it says about the task, so
    recording the same outcome twice loads it once."""
    digest = hashlib.md5(f"{task.task_id}|{outcome}|{reason or ''}".encode()).hexdigest()
    return {
        "outcome_id": f"cli-{digest}",
        "task_id": task.task_id,
        "lead_id": task.lead_id,
        "outcome": outcome,
        "reason": reason,
        "rep_id": task.owner_rep_id,
        "note": note,
        "occurred_at": occurred_at.isoformat(sep=" "),
    }


def close_tasks_for_outcomes(connection: Connection, as_of: datetime) -> int:
    """End every pending task of a lead that sales gave an outcome since the task was created.

    Reads the resolved outcomes dbt built (``int_lead_outcomes_resolved``); a task ends with
    the first outcome at or after its creation and not after the run clock ``as_of``:
    ``closed_at`` is the outcome's time, ``close_reason`` its reason (else the outcome itself).
    Set-based and idempotent: an ended task is never touched again. Returns how many ended.
    """
    pending = ", ".join(map(sql_text, PENDING_TASK_STATUSES))
    status_after = " ".join(
        f"when {sql_text(outcome)} then {sql_text(status)}"
        for outcome, status in TASK_STATUS_AFTER.items()
    )
    return len(
        connection.execute(
            f"""
            update ops.sales_tasks as tasks
            set
                status = ending.status,
                closed_at = ending.occurred_at,
                close_reason = ending.close_reason
            from (
                select
                    pending_tasks.task_id,
                    case outcomes.outcome {status_after} end as status,
                    outcomes.occurred_at,
                    coalesce(outcomes.reason, outcomes.outcome) as close_reason
                from ops.sales_tasks as pending_tasks
                inner join main.int_lead_outcomes_resolved as outcomes
                    on pending_tasks.lead_id = outcomes.lead_id
                where
                    pending_tasks.status in ({pending})
                    and outcomes.outcome in ({", ".join(map(sql_text, TASK_STATUS_AFTER))})
                    and outcomes.occurred_at >= pending_tasks.created_at
                    and outcomes.occurred_at <= ?
                qualify row_number() over (
                    partition by pending_tasks.task_id
                    order by outcomes.occurred_at, outcomes.outcome_id
                ) = 1
            ) as ending
            -- Pending still when the row is written: a worker that closed it meanwhile wins.
            where tasks.task_id = ending.task_id and tasks.status in ({pending})
            returning tasks.task_id
            """,
            [as_of],
        ).fetchall()
    )


def seal_landed_outcomes(landing: Path, drop_folder: Path) -> int:
    """Copy the complete lines each outcome landing file gained since it was last sealed into
    a closed file ``outcomes__sales__<file>.L<first>-<last>.jsonl`` of ``drop_folder``, which
    the extract then loads. Returns how many lines were sealed.

    What was sealed is read from the sealed files' names; had they been removed, the lines are
    sealed again, and their outcome ids, loaded before, are quarantined as resends. A line not
    yet ended by a newline is a write in progress: it is sealed once complete.
    """
    sealed_lines = 0
    for path in sorted(landing.glob(f"{LANDING_PREFIX}-*.jsonl")) if landing.is_dir() else []:
        stem = f"{LANDING_PREFIX}__{SOURCE}__{path.stem}"
        done = max(
            (
                int(match["last"])
                for sealed in drop_folder.glob(f"{stem}.L*.jsonl")
                if (match := SLICE_NAME.search(sealed.name))
            ),
            default=0,
        )
        lines = complete_lines(path, done)
        if not lines:
            continue
        drop_folder.mkdir(parents=True, exist_ok=True)
        content = "".join(_loadable(line) + "\n" for line in lines).encode()
        write_atomically(
            drop_folder / f"{stem}.L{done + 1}-{done + len(lines)}.jsonl", content, durable=True
        )
        sealed_lines += len(lines)
    return sealed_lines


def _loadable(line: str) -> str:
    """A landed line as a JSON object the extract reads: a line a crash cut short (or any
    non-object) is kept whole under ``landed_line``, so that it alone is quarantined (it has no
    outcome_id) rather than making the sealed file unreadable."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return line
    return json.dumps({"landed_line": line}, ensure_ascii=False)


def upload_target(path: Path, source: str, landing_dir: Path) -> Path:
    """Where an upload goes in the landing folder: named for the outcomes entity and its source,
    with its content hash, so the same file uploaded twice is one file (loaded once)."""
    if not re.fullmatch(r"[a-z0-9_]+", source):
        raise OutcomeError(
            f"source {source!r}: use lower-case letters, digits and _ (the leads' source "
            "system, e.g. crm, when the file names leads by source_lead_id)"
        )
    name = path.name.lower()
    suffix = next((s for s in UPLOAD_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise OutcomeError(
            f"{path}: upload a CSV or JSON-lines file (.csv, .jsonl or .ndjson, gzip too)"
        )
    stem = re.sub(r"[^\w.-]+", "_", path.name[: -len(suffix)]) or "upload"
    digest = file_sha256(path)[:12]
    return landing_dir / f"{LANDING_PREFIX}__{source}__{stem}-{digest}{suffix}"


def place_upload(path: Path, target: Path) -> bool:
    """Copy an upload into the landing folder; False when that content is already there."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, path.read_bytes(), durable=True)
    return True


def callback_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-LeadFlow-Signature`` value: HMAC-SHA256 over ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"
