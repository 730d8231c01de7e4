"""Nurture: send each lead the step of its track that is due, then a follow-up task for sales
where the step's policy says it helps (by default once the lead opened or clicked the email)."""

from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parseaddr

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.email.dispatch import (
    DispatchReport,
    Sender,
    SendLimits,
    dispatch_due_steps,
    settle_earlier_sends,
)
from flows.email.events import release_never_sent, settle_from_events, stale_pending
from flows.email.preflight import require_sending_ready
from flows.email.providers import email_sender
from flows.email.queue import count_deferred_for_quiet_hours
from flows.email.render import TemplateRenderer
from flows.email.templates import load_tracks
from flows.email.tracks import follow_up_policies
from flows.limits import email_provider_rate_limit
from flows.sales.delivery import task_sinks
from flows.sales.sinks import deliver_tasks
from flows.sales.tasks import create_follow_up_tasks
from flows.settings import load_settings
from flows.warehouse import open_warehouse


@task(cache_policy=NO_CACHE)
def send_due_steps(run_id: str, as_of: datetime) -> DispatchReport:
    settings = load_settings()
    tracks = load_tracks(settings.templates_dir)
    renderer = TemplateRenderer(settings.templates_dir)
    # A run that cannot send says so before it claims anything.
    require_sending_ready(settings, tracks, renderer)
    sender = email_sender(settings, throttle=email_provider_rate_limit(settings))
    sender.check()  # a wrong key or host fails here, before any ledger row is claimed
    with open_warehouse(settings.warehouse) as connection:
        # Sends a crash left pending: the provider's events say which went out, then the
        # sender itself (the outbox knows); those the events prove never reached the provider
        # go out again, and the rest stay pending, reported, never re-sent blind.
        settle_from_events(connection)
        settle_earlier_sends(connection, sender)
        unknown_after = timedelta(hours=settings.pending_unknown_after_hours)
        released = release_never_sent(connection, as_of, unknown_after)
        report = dispatch_due_steps(
            connection,
            tracks=tracks,
            renderer=renderer,
            email_sender=sender,
            sender=Sender(
                from_email=settings.email_from,
                name=parseaddr(settings.email_from)[0] or settings.email_from,
                address=settings.sender_address,
                unsubscribe_url=settings.unsubscribe_url,
            ),
            run_id=run_id,
            as_of=as_of,
            limits=SendLimits(settings.send_max_attempts, settings.daily_send_limit),
        )
        unknown = stale_pending(connection, as_of, unknown_after)
        return replace(
            report,
            released_never_sent=released,
            deferred_quiet_hours=count_deferred_for_quiet_hours(connection),
            unknown_pending=len(unknown),
        )


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2)
def create_follow_ups(run_id: str, as_of: datetime) -> int:
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        created = create_follow_up_tasks(
            connection, run_id, as_of, follow_up_policies(load_tracks(settings.templates_dir))
        )
        # Every sink at once, as the hand-off does: a follow-up reaches the rep's webhook now,
        # not with the next run.
        deliver_tasks(connection, task_sinks(settings), as_of)
    return created


@flow(name="nurture")
def nurture(run_id: str, as_of: datetime) -> tuple[DispatchReport, int]:
    report = send_due_steps(run_id, as_of)
    follow_ups = create_follow_ups(run_id, as_of)
    return report, follow_ups
