"""The task sinks a run delivers to, chosen from the settings in this one place.

Always the warehouse table (the system of record) and a CSV per rep; the signed webhook when
``LEADFLOW_TASK_WEBHOOK_URL`` is set. The daily digest is a sink of its own flow
(``flows/digest.py``), on when ``LEADFLOW_DIGEST_ENABLED`` is true (the default), through the
email provider ``flows/email/providers.py`` chooses. The links into the CRM that tasks and the
digest carry come from the mapping profiles and ``LEADFLOW_CRM_URL_TEMPLATE``, also here.
"""

from __future__ import annotations

from email.utils import parseaddr

from flows.crm_links import CrmLinks
from flows.email.message import EmailSender
from flows.email.outbox import OutboxSender
from flows.sales.digest import DigestSettings, DigestSink
from flows.sales.sinks import RepCsvSink, TaskSink, WarehouseSink
from flows.sales.webhook_sink import WebhookPolicy, WebhookSink
from flows.settings import ConfigError, Settings
from flows.sources.mapping import crm_url_templates, load_mappings


def crm_links(settings: Settings) -> CrmLinks:
    """Each source's link template from its leads profile, LEADFLOW_CRM_URL_TEMPLATE for the
    others. Raises ``MappingError`` naming the profile and the fix."""
    return CrmLinks(
        settings.crm_url_template, crm_url_templates(load_mappings(settings.mapping_folders))
    )


def task_sinks(settings: Settings) -> list[TaskSink]:
    """The sinks every hand-off delivers to, in order."""
    sinks: list[TaskSink] = [WarehouseSink(), RepCsvSink(settings.tasks_dir)]
    # The settings refuse a webhook URL without a secret.
    if settings.task_webhook_url is not None and settings.task_webhook_secret is not None:
        policy = WebhookPolicy(
            max_attempts=settings.task_webhook_max_attempts,
            max_wait_seconds=settings.task_webhook_max_wait_seconds,
        )
        sinks.append(WebhookSink(settings.task_webhook_url, settings.task_webhook_secret, policy))
    return sinks


def digest_sink(settings: Settings, sender: EmailSender) -> DigestSink | None:
    """The daily digest through ``sender``, or None when it is turned off.

    Raises ``ConfigError`` when SendGrid would refuse it, ``TemplateError`` when the
    digest template cannot be used, and ``MappingError`` when a profile cannot.
    """
    if not settings.digest_enabled:
        return None
    if not isinstance(sender, OutboxSender) and settings.digest_unsubscribe_group is None:
        raise ConfigError(
            "LEADFLOW_DIGEST_UNSUBSCRIBE_GROUP: SendGrid needs an unsubscribe group for every "
            "email, the reps' digest too; create one in SendGrid > Suppressions > Unsubscribe "
            "Groups and set its id, or set LEADFLOW_DIGEST_ENABLED=false"
        )
    digest_settings = DigestSettings(
        templates_dir=settings.templates_dir,
        timezone=settings.schedule_timezone,
        from_email=settings.email_from,
        sender_name=parseaddr(settings.email_from)[0] or settings.email_from,
        unsubscribe_url=settings.unsubscribe_url,
        unsubscribe_group=settings.digest_unsubscribe_group,
        crm_links=crm_links(settings),
    )
    return DigestSink(digest_settings, sender)
