"""The email provider a run uses, chosen from the settings in one place.

Minimal until the SendGrid sender lands: with or without ``SENDGRID_API_KEY``, the local
outbox.
"""

from __future__ import annotations

from flows.email.message import EmailSender
from flows.email.outbox import OutboxSender
from flows.settings import Settings


def email_sender(settings: Settings) -> EmailSender:
    """The local outbox: the embedded default that shows every email a run would send."""
    # The outbox takes OutgoingBatch once it moves to batches (the EmailSender interface).
    return OutboxSender(settings.outbox_dir)  # type: ignore[return-value]
