"""The reps' daily digest: one email per rep and day with their open tasks, most urgent first.

Rendered from ``templates/digest/daily.html`` (front matter with the subject, then a Jinja
body; the context is documented in ``templates/digest/CONTEXT.md``) in the nurture templates'
sandbox: autoescaped HTML, StrictUndefined, no access to Python internals. Each task shows its
why-now and, when the lead's source has a CRM link template (its leads profile's
``crm_url_template``, else ``LEADFLOW_CRM_URL_TEMPLATE``), a link to the lead in the CRM.

Sent through the configured email provider (the local outbox, or SendGrid when keyed), once
per rep and day at most: the day is the run's clock in ``LEADFLOW_SCHEDULE_TIMEZONE``, and
``ops.digest_sends`` holds a row per (rep, day), written ``pending`` before the provider call
and settled after it. A row a crash left pending is settled by asking the provider (the outbox
knows; SendGrid cannot say, so the row stays pending and that day's digest is not sent
again). A failed send is tried again by the next call the same day. A rep with no open task
gets no digest; an inactive rep (``dim_reps.is_active``) gets none either.

On PostgreSQL, where runs may overlap, a rep's day is claimed in one statement that takes it
only if no row holds it or its send failed, and the runs take turns (``DIGEST_LOCK``): a run
never settles a row as interrupted while another is sending it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml

from flows.crm_links import CrmLinks, crm_url_sql
from flows.email.context import clean_text
from flows.email.message import EmailSender, OutgoingBatch, Recipient, SendResult
from flows.email.plaintext import html_to_text
from flows.email.render import explain, make_environment
from flows.email.tracks import LintProblem, TemplateError, split_front_matter
from flows.sales.sinks import SinkResult, rep_queue_order
from flows.warehouse import Connection, one_writer_at_a_time

DIGEST_TEMPLATE = "digest/daily.html"
DIGEST_CONTEXT_DOC = "digest/CONTEXT.md"
DIGEST_TRACK = "digest"  # the track name the provider's categories and custom args carry
DIGEST_CATEGORY = "leadflow-digest"
SINK_NAME = "digest"
DIGEST_LOCK = "digest_sends"

# Each open task of an active rep, with the rep and the link into the CRM (the lead's most
# trusted record in its source's template, URL-encoded; null when there is no template).
DIGEST_TASKS_SQL = f"""
    select
        tasks.owner_rep_id as rep_id,
        coalesce(reps.rep_name, tasks.owner_rep_id) as rep_name,
        coalesce(reps.rep_email, tasks.owner_email) as rep_email,
        tasks.task_id,
        tasks.title,
        tasks.why_now,
        tasks.reason,
        tasks.priority,
        tasks.due_at,
        tasks.due_at < $as_of as is_overdue,
        tasks.email,
        tasks.phone,
        {crm_url_sql("leads.source", "leads.source_lead_id")} as crm_url
    from ops.sales_tasks as tasks
    left join main.dim_reps as reps on tasks.owner_rep_id = reps.rep_id
    left join main.dim_leads as leads on tasks.lead_id = leads.lead_id
    where tasks.status = 'open' and reps.is_active is not false
    order by tasks.owner_rep_id, {rep_queue_order("$as_of")}
"""

QUEUED_SQL = """
    select owner_rep_id, count(*) from ops.sales_tasks where status = 'queued' group by all
"""


class DigestUnavailableError(Exception):
    """The warehouse has no marts to read the reps and leads from."""


@dataclass(frozen=True)
class DigestTemplate:
    """The digest's subject line and body, loaded once per run."""

    subject: jinja2.Template
    body: jinja2.Template


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    html: str
    text: str


def _template_problem(error: jinja2.TemplateError) -> LintProblem:
    return LintProblem(
        DIGEST_TEMPLATE,
        getattr(error, "lineno", None),
        f"{explain(error)} (the digest's: templates/{DIGEST_CONTEXT_DOC})",
    )


def load_digest_template(templates_dir: Path) -> DigestTemplate:
    """Raises ``TemplateError`` naming the file and the fix."""
    path = templates_dir / DIGEST_TEMPLATE
    if not path.is_file():
        raise TemplateError.from_problems(
            LintProblem(DIGEST_TEMPLATE, None, "missing: restore it from the LeadFlow checkout")
        )
    front_matter, _ = split_front_matter(path.read_text(encoding="utf-8-sig"), DIGEST_TEMPLATE)
    try:
        subject = (yaml.safe_load(front_matter) or {}).get("subject")
    except yaml.YAMLError as error:
        raise TemplateError.from_problems(
            LintProblem(DIGEST_TEMPLATE, None, f"front matter is not valid YAML: {error}")
        ) from None
    if not isinstance(subject, str) or not subject.strip():
        raise TemplateError.from_problems(
            LintProblem(DIGEST_TEMPLATE, 2, "front matter needs `subject:` (one line of text)")
        )
    environment = make_environment(templates_dir)
    try:
        return DigestTemplate(
            environment.from_string(subject), environment.get_template(DIGEST_TEMPLATE)
        )
    except jinja2.TemplateError as error:
        raise TemplateError.from_problems(_template_problem(error)) from None


def render_digest(template: DigestTemplate, context: Mapping[str, Any]) -> RenderedDigest:
    try:
        subject = clean_text(template.subject.render(context))
        html = template.body.render({**context, "email": {"subject": subject}}).lstrip()
    except jinja2.TemplateError as error:  # the sandbox's SecurityError included
        raise TemplateError.from_problems(_template_problem(error)) from None
    return RenderedDigest(subject, html, html_to_text(html))


def digest_day(as_of: datetime, timezone: str) -> date:
    """The day a digest is for: the run's clock (naive UTC) in the schedule's time zone."""
    return as_of.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date()


def digest_key(rep_id: str, day: date) -> str:
    """The ledger's key and the email's message key: one per rep and day."""
    return "digest-" + hashlib.md5(f"{rep_id}|{day.isoformat()}".encode()).hexdigest()


def digest_context(
    rep: Mapping[str, Any],
    tasks: list[dict[str, Any]],
    *,
    day: date,
    queued: int,
    sender_name: str,
) -> dict[str, Any]:
    """What the template may use (templates/digest/CONTEXT.md lists it)."""
    return {
        "rep": {"id": rep["rep_id"], "name": rep["rep_name"], "email": rep["rep_email"]},
        "digest": {
            "date": day.isoformat(),
            "day_label": f"{day:%A} {day.day} {day:%B %Y}",
            "open_count": len(tasks),
            "overdue_count": sum(1 for task in tasks if task["is_overdue"]),
            "queued_count": queued,
        },
        "tasks": [
            {
                "title": task["title"],
                "why_now": task["why_now"],
                "reason": task["reason"],
                "priority": task["priority"],
                "due": f"{task['due_at']:%Y-%m-%d %H:%M} UTC",
                "is_overdue": bool(task["is_overdue"]),
                "email": task["email"] or "",
                "phone": task["phone"] or "",
                "crm_url": task["crm_url"] or "",
            }
            for task in tasks
        ],
        "sender": {"name": sender_name},
    }


@dataclass(frozen=True)
class DigestSettings:
    """What the digest takes from the settings (chosen in flows/sales/delivery.py)."""

    templates_dir: Path
    timezone: str
    from_email: str
    sender_name: str
    unsubscribe_url: str  # may contain {message_key}
    unsubscribe_group: int | None
    crm_links: CrmLinks


def settle_earlier_digests(connection: Connection, sender: EmailSender, day: date) -> None:
    """A row a crash left pending: sent if the provider has it, failed (sent again) if it
    certainly has not, left pending (never sent twice) if it cannot tell."""
    pending = connection.execute(
        "select digest_key from ops.digest_sends where status = 'pending' and digest_date = ?",
        [day],
    ).fetchall()
    for (key,) in pending:
        delivered = sender.was_delivered(key)
        if delivered is not None:
            connection.execute(
                "update ops.digest_sends set status = ?, sent_at = case when ? then created_at "
                "end, error = case when ? then null else 'interrupted before the provider "
                "call' end where digest_key = ?",
                ["sent" if delivered else "failed", delivered, delivered, key],
            )


class DigestSink:
    """Sends each rep's digest for the day of ``as_of``; ``deliver`` is safe to call again."""

    name = SINK_NAME

    def __init__(self, settings: DigestSettings, sender: EmailSender) -> None:
        self.settings = settings
        self.sender = sender
        self.template = load_digest_template(settings.templates_dir)

    def deliver(self, connection: Connection, as_of: datetime) -> SinkResult:
        built = connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'main' "
            "and table_name in ('dim_reps', 'dim_leads')"
        ).fetchone()
        if not built or built[0] < 2:
            raise DigestUnavailableError(
                "no pipeline run has built dim_reps and dim_leads yet: run `leadflow run` "
                "first, then the digest"
            )
        day = digest_day(as_of, self.settings.timezone)
        sent, failed, problems = 0, 0, []
        with one_writer_at_a_time(connection, DIGEST_LOCK):
            settle_earlier_digests(connection, self.sender, day)
            done = {
                rep_id
                for (rep_id,) in connection.execute(
                    "select rep_id from ops.digest_sends where digest_date = ? "
                    "and status in ('sent', 'pending')",
                    [day],
                ).fetchall()
            }
            queued = dict(connection.execute(QUEUED_SQL).fetchall())
            cursor = connection.execute(
                DIGEST_TASKS_SQL,
                {"as_of": as_of, **self.settings.crm_links.sql_parameters()},
            )
            names = [column[0] for column in cursor.description or ()]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            for rep_id, rep_rows in groupby(rows, key=lambda row: row["rep_id"]):
                if rep_id in done:
                    continue
                tasks = list(rep_rows)
                context = digest_context(
                    tasks[0],
                    tasks,
                    day=day,
                    queued=int(queued.get(rep_id, 0)),
                    sender_name=self.settings.sender_name,
                )
                result = self._send(connection, context, day, as_of)
                if result is None:  # another run has the rep's day
                    continue
                if result.status == "sent":
                    sent += 1
                else:
                    failed += 1
                    problems.append(result.error or "not sent")
        problem = "; ".join(sorted(set(problems))) or None
        return SinkResult(self.name, sent, failed, problem)

    def _send(
        self,
        connection: Connection,
        context: Mapping[str, Any],
        day: date,
        as_of: datetime,
    ) -> SendResult | None:
        """Send one rep's digest; None when the ledger holds the rep's day already."""
        rep = context["rep"]
        key = digest_key(rep["id"], day)
        rendered = render_digest(self.template, context)
        # Claimed before the provider call: a crash after it never sends the day twice. One
        # statement claims a day no row holds or whose send failed, and nothing else.
        claimed = connection.execute(
            """
            insert into ops.digest_sends (digest_key, rep_id, digest_date, email, task_count,
                status, provider, attempts, created_at)
            values (?, ?, ?, ?, ?, 'pending', ?, 1, ?)
            on conflict (digest_key) do update set status = 'pending', error = null,
                email = excluded.email, task_count = excluded.task_count,
                provider = excluded.provider, attempts = ops.digest_sends.attempts + 1
            where ops.digest_sends.status = 'failed'
            returning digest_key
            """,
            [key, rep["id"], day, rep["email"], context["digest"]["open_count"],
             self.sender.provider, as_of],
        ).fetchall()  # fmt: skip
        if not claimed:
            return None
        unsubscribe_url = self.settings.unsubscribe_url.format(message_key=key)
        batch = OutgoingBatch(
            track=DIGEST_TRACK,
            step=0,
            from_email=self.settings.from_email,
            reply_to=None,
            html=rendered.html,
            text=rendered.text,
            unsubscribe_group=self.settings.unsubscribe_group,
            categories=(DIGEST_CATEGORY,),
            recipients=(
                Recipient(
                    message_key=key,
                    lead_id=rep["id"],
                    to_email=rep["email"],
                    to_name=rep["name"],
                    subject=rendered.subject,
                    substitutions={},
                    unsubscribe_url=unsubscribe_url,
                    custom_args={"rep_id": rep["id"], "digest_date": day.isoformat()},
                ),
            ),
        )
        [result] = self.sender.send(batch)
        connection.execute(
            "update ops.digest_sends set status = ?, provider_message_id = ?, error = ?, "
            "sent_at = case when ? = 'sent' then ? end where digest_key = ?",
            [result.status, result.provider_message_id, result.error, result.status, as_of, key],
        )
        return result
