"""Can this run send email? Checked before a single ledger row is claimed.

A run that cannot send should say so at once, naming the setting or the file and the fix,
instead of claiming a batch of leads and failing every one of them at the provider (or, worse,
sending emails whose unsubscribe link is broken). ``check_sending`` lists every problem;
``require_sending_ready`` is what the nurture flow calls: it raises ``SendingConfigError``
(a ``ConfigError``, which the CLI prints without a traceback) listing them all.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from flows.email.outbox import EMAIL_ADDRESS
from flows.email.render import TemplateRenderer
from flows.email.templates import (
    PARTIALS_FOLDER,
    REQUIRED_PARTIALS,
    TemplateError,
    Track,
    context_for_step,
    load_sample_context,
)
from flows.settings import ConfigError, Settings

UNSUBSCRIBE_PLACEHOLDERS = frozenset({"message_key"})
# Stands in for a real message key when checking the unsubscribe URL's shape.
SAMPLE_MESSAGE_KEY = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class SendingProblem:
    """Why the run cannot send: where (a setting or a file under templates/) and the fix."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class SendingConfigError(ConfigError):
    """The run cannot send email as configured; nothing was claimed."""

    def __init__(self, problems: list[SendingProblem]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(
            f"Nurture email cannot be sent ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}); no email was claimed or sent:\n{listed}\n"
            "Fix them and run again; `leadflow templates lint` checks the templates."
        )


def from_address_problems(email_from: str) -> list[SendingProblem]:
    """``LEADFLOW_EMAIL_FROM`` must be ``Name <address>`` or a bare address."""
    address = parseaddr(email_from)[1]
    if "\r" in email_from or "\n" in email_from:
        reason = "contains a line break"
    elif not (address and address.isascii() and EMAIL_ADDRESS.fullmatch(address)):
        reason = "has no valid email address"
    else:
        return []
    return [
        SendingProblem(
            "LEADFLOW_EMAIL_FROM",
            f"{email_from!r} {reason}: set it to `Name <address@your-domain>` or a bare "
            "address, on a domain your email provider has verified",
        )
    ]


def unsubscribe_url_problems(unsubscribe_url: str) -> list[SendingProblem]:
    """``LEADFLOW_UNSUBSCRIBE_URL`` must be http(s) and may use only ``{message_key}``."""
    where = "LEADFLOW_UNSUBSCRIBE_URL"
    example = "e.g. https://your-domain.example/unsubscribe?key={message_key}"
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(unsubscribe_url) if field}
    except ValueError as error:
        return [
            SendingProblem(
                where,
                f"{unsubscribe_url!r} is not a valid pattern ({error}): write a literal brace "
                f"as {{{{ or }}}}, {example}",
            )
        ]
    unknown = sorted(fields - UNSUBSCRIBE_PLACEHOLDERS)
    if unknown:
        return [
            SendingProblem(
                where,
                f"{unsubscribe_url!r} uses {', '.join(f'{{{field}}}' for field in unknown)}: "
                f"the only placeholder is {{message_key}}, {example}",
            )
        ]
    url = urlsplit(unsubscribe_url.format(message_key=SAMPLE_MESSAGE_KEY))
    if url.scheme not in ("http", "https") or not url.netloc:
        return [
            SendingProblem(
                where,
                f"{unsubscribe_url!r} is not an http(s) address: recipients must be able to "
                f"open it in a browser, {example}",
            )
        ]
    return []


def template_problems(
    tracks: Mapping[str, Track], renderer: TemplateRenderer, context: Mapping[str, Any]
) -> list[SendingProblem]:
    """Required partials exist, and every step renders with the sample context."""
    problems = [
        SendingProblem(
            f"templates/{PARTIALS_FOLDER}/{partial}",
            "missing: every email includes it; restore it (see templates/README.md)",
        )
        for partial in REQUIRED_PARTIALS
        if not (renderer.templates_dir / PARTIALS_FOLDER / partial).is_file()
    ]
    for track in tracks.values():
        for step in track.steps:
            try:
                renderer.render(step, context_for_step(context, step))
            except TemplateError as error:
                problems += [
                    SendingProblem(
                        f"templates/{problem.file}" + (f":{problem.line}" if problem.line else ""),
                        problem.message,
                    )
                    for problem in error.problems
                ]
    return problems


def check_sending(
    settings: Settings, tracks: Mapping[str, Track], renderer: TemplateRenderer
) -> list[SendingProblem]:
    """Every reason this run could not send its nurture email; empty means ready."""
    url_problems = unsubscribe_url_problems(settings.unsubscribe_url)
    problems = from_address_problems(settings.email_from) + url_problems
    if not settings.sender_address.strip():
        problems.append(
            SendingProblem(
                "LEADFLOW_SENDER_ADDRESS",
                "is empty: set your postal address, which the law requires in every "
                "marketing email (the footer shows it)",
            )
        )
    context = {
        **load_sample_context(renderer.templates_dir),
        "unsubscribe_url": (
            "https://leadflow.invalid/unsubscribe"
            if url_problems
            else settings.unsubscribe_url.format(message_key=SAMPLE_MESSAGE_KEY)
        ),
        "sender": {
            "name": parseaddr(settings.email_from)[0] or settings.email_from,
            "address": settings.sender_address,
        },
    }
    return problems + template_problems(tracks, renderer, context)


def require_sending_ready(
    settings: Settings, tracks: Mapping[str, Track], renderer: TemplateRenderer
) -> None:
    """Raise ``SendingConfigError`` listing every problem, before anything is claimed."""
    problems = check_sending(settings, tracks, renderer)
    if problems:
        raise SendingConfigError(problems)
