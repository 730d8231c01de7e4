"""The email provider a run uses, chosen from the settings in this one place.

``SENDGRID_API_KEY`` set: SendGrid (at ``LEADFLOW_SENDGRID_HOST``, in sandbox mode when
``LEADFLOW_SENDGRID_SANDBOX`` is true). Unset: the local outbox, so ``make demo`` needs no
account and shows every email a run would send.
"""

from __future__ import annotations

from collections.abc import Callable

from flows.email.message import EmailSender
from flows.email.outbox import OutboxSender
from flows.email.sendgrid import RetryPolicy, SendGridSender
from flows.settings import Settings


def email_sender(settings: Settings, *, throttle: Callable[[], None] = lambda: None) -> EmailSender:
    """The configured sender; ``throttle`` runs before every provider request (the nurture flow
    passes the rate limit shared by all runs; the outbox needs none)."""
    if settings.sendgrid_api_key is None:
        return OutboxSender(settings.outbox_dir)
    return SendGridSender(
        settings.sendgrid_api_key,
        host=settings.sendgrid_host,
        sandbox=settings.sendgrid_sandbox,
        policy=RetryPolicy(
            max_wait_seconds=settings.sendgrid_max_wait_seconds,
            retry_seconds=settings.sendgrid_retry_seconds,
        ),
        throttle=throttle,
    )
