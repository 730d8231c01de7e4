"""What the nurture flow hands to an email provider, and what it gets back.

Every sender (the local outbox, SendGrid) implements ``EmailSender``; the flow writes a
``pending`` ledger row per ``message_key`` before ``send`` and settles it from the results.
After a crash between the two, ``was_delivered`` tells whether a pending message went out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class OutgoingEmail:
    message_key: str  # md5(lead_id|track|step): the ledger key, sent along to match events back
    to_email: str
    to_name: str
    from_email: str  # "Name <address>" or a bare address
    subject: str
    html: str
    text: str
    preheader: str
    track: str
    step: int
    unsubscribe_group: int | None
    custom_args: Mapping[str, str] = field(default_factory=dict)
    # The lead's own unsubscribe link (the one in the footer), for the List-Unsubscribe header;
    # without it, senders offer a mailto: reply to the sender instead.
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class SendResult:
    message_key: str
    status: Literal["sent", "failed"]
    provider_message_id: str | None
    error: str | None


class EmailSender(Protocol):
    provider: str

    def send(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        """One result per message, in the order given."""
        ...

    def was_delivered(self, message_key: str) -> bool | None:
        """Whether the provider already has this message (settles ledger rows after a crash);
        None when the provider cannot tell, and the ledger row then stays pending."""
        ...
