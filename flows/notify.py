"""Tell the data engineer when a run failed or the gate blocked a queue: a JSON POST to the
webhook in ``LEADFLOW_NOTIFY_WEBHOOK_URL`` (Slack/Teams/Mattermost incoming webhooks, a
paging service, or anything that takes JSON).

A blocked gate is a completed run, so Prefect's state hooks never see it: the flow calls
:func:`notify` itself. Failures and crashes reach :func:`notify_failed_run`, which every
deployed flow lists in ``on_failure`` and ``on_crashed``.
"""

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from flows.settings import Settings, load_settings

logger = logging.getLogger(__name__)

ATTEMPTS = 3


@dataclass(frozen=True)
class Notification:
    """What the receiver gets, as JSON."""

    event: str  # "run_failed", "run_crashed" or "gate_blocked"
    flow: str
    run: str  # the Prefect flow run's name
    flow_run_id: str
    reason: str
    url: str | None = None  # the run in the Prefect UI, when a UI is configured
    deployment: str | None = None

    @property
    def text(self) -> str:
        """One line for chat webhooks that show a ``text`` field."""
        where = f" {self.url}" if self.url else ""
        event = self.event.replace("_", " ")
        return f"LeadFlow {event}: {self.flow} run {self.run}: {self.reason}{where}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


def post_notification(url: str, notification: Notification, *, backoff_s: float = 1.0) -> bool:
    """POST the notification, retried on network errors and 5xx/429; False when it could not
    be delivered (logged without the URL, which may hold a token): a lost notification must
    not fail the run it reports on."""
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = httpx.post(url, json=notification.to_json(), timeout=10)
        except httpx.HTTPError as error:
            problem = type(error).__name__
        else:
            if response.status_code < 400:
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break  # the receiver refused it: retrying will not help
        if attempt < ATTEMPTS:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    logger.warning(
        "Could not deliver the %s notification for %s to LEADFLOW_NOTIFY_WEBHOOK_URL (%s)",
        notification.event,
        notification.run,
        problem,
    )
    return False


def notify(settings: Settings, event: str, reason: str) -> bool:
    """Notify about the flow run in progress (no-op without a webhook URL)."""
    if settings.notify_webhook_url is None:
        return False
    from prefect.runtime import deployment, flow_run

    notification = Notification(
        event=event,
        flow=flow_run.flow_name,
        run=flow_run.name,
        flow_run_id=flow_run.id,
        reason=reason,
        url=flow_run.ui_url,
        deployment=deployment.name,
    )
    return post_notification(settings.notify_webhook_url.get_secret_value(), notification)


def notify_failed_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure``/``on_crashed`` hook: the run, the flow and the state's message."""
    settings = load_settings()
    if settings.notify_webhook_url is None:
        return
    from prefect.runtime import deployment
    from prefect.utilities.urls import url_for

    notification = Notification(
        event="run_crashed" if state.is_crashed() else "run_failed",
        flow=flow.name,
        run=flow_run.name,
        flow_run_id=str(flow_run.id),
        reason=state.message or state.name,
        url=url_for(flow_run),
        deployment=deployment.name,
    )
    post_notification(settings.notify_webhook_url.get_secret_value(), notification)
