"""What the nurture flow hands to an email provider, and what it gets back.

A step is rendered once per batch: one ``OutgoingBatch`` carries the HTML and text bodies
with substitution tags (``-lf_first_name-``), and one ``Recipient`` per lead carries that
lead's values for the tags (escaped for HTML where the tag sits in the HTML part), its own
subject, message key and unsubscribe link. That is the shape of a SendGrid v3 mail/send
request (one content, up to 1,000 personalizations), and the local outbox substitutes the same
way, so both providers send the same bytes.

Every sender (the local outbox, SendGrid) implements ``EmailSender``; the flow writes a
``pending`` ledger row per ``message_key`` before ``send`` and settles it from the results.
After a crash between the two, ``was_delivered`` tells whether a pending message went out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class Recipient:
    """One lead in a batch: a SendGrid personalization."""

    message_key: str  # md5(lead_id|track|step): the ledger key, sent along to match events back
    lead_id: str
    to_email: str
    to_name: str
    subject: str  # already rendered for this lead (plain text, one line)
    # tag -> value; values for tags in the HTML part are already HTML-escaped.
    substitutions: Mapping[str, str]
    # The lead's own unsubscribe link (the one in the footer), also the List-Unsubscribe header.
    unsubscribe_url: str
    custom_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutgoingBatch:
    """One step of one track, rendered once, for up to 1,000 recipients (distinct addresses)."""

    track: str
    step: int
    from_email: str  # "Name <address>" or a bare address
    reply_to: str | None  # the owning rep's address when known
    html: str  # with substitution tags
    text: str  # with substitution tags
    unsubscribe_group: int | None
    categories: tuple[str, ...]
    recipients: tuple[Recipient, ...]
    is_test: bool = False  # `templates send-test`: outside the ledger, marked as a test


@dataclass(frozen=True)
class SendResult:
    message_key: str
    status: Literal["sent", "failed"]
    provider_message_id: str | None
    error: str | None


class EmailSender(Protocol):
    provider: str

    def check(self) -> None:
        """Raise ``EmailProviderError`` naming the setting and the fix if this sender cannot
        work (a malformed key, a host that does not answer); called before any ledger claim."""
        ...

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        """One result per recipient, in the order given."""
        ...

    def was_delivered(self, message_key: str) -> bool | None:
        """Whether the provider already has this message (settles ledger rows after a crash);
        None when the provider cannot tell, and the ledger row then stays pending."""
        ...


class EmailProviderError(Exception):
    """The email provider cannot be used as configured; the message says which setting to fix."""


def substitute(content: str, substitutions: Mapping[str, str]) -> str:
    """Replace each tag by its value, as SendGrid does with a personalization's substitutions."""
    for tag, value in substitutions.items():
        content = content.replace(tag, value)
    return content
