"""Prefect global concurrency limits LeadFlow relies on, created before anything takes them.

Prefect silently skips a limit that does not exist, so whatever takes one (the pipeline, the
nurture send, ``leadflow serve``) ensures first that both exist with the configured size.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from flows.settings import Settings

WAREHOUSE_WRITER = "leadflow-warehouse-writer"
EMAIL_PROVIDER = "leadflow-email-provider"


class WarehouseBusyError(Exception):
    """Another run held the warehouse longer than this one was willing to wait."""


@dataclass(frozen=True)
class ConcurrencyLimit:
    name: str
    slots: int
    slot_decay_per_second: float | None = None


def concurrency_limits(settings: Settings) -> list[ConcurrencyLimit]:
    """The limits with their configured size."""
    return [
        # DuckDB allows one writer process: one run writes the warehouse at a time.
        ConcurrencyLimit(WAREHOUSE_WRITER, 1),
        # The provider's rate limit holds across runs: slots free at the decay rate.
        ConcurrencyLimit(
            EMAIL_PROVIDER,
            settings.email_provider_slots,
            settings.email_provider_slot_decay_per_second,
        ),
    ]


def ensure_concurrency_limits(settings: Settings) -> list[ConcurrencyLimit]:
    """Create (or resize) every limit on the Prefect server in use; returns them."""
    from prefect import get_client

    limits = concurrency_limits(settings)
    with get_client(sync_client=True) as client:
        for limit in limits:
            client.upsert_global_concurrency_limit_by_name(
                limit.name, limit.slots, limit.slot_decay_per_second
            )
    return limits


@contextmanager
def warehouse_writer(settings: Settings) -> Iterator[None]:
    """Hold the warehouse's single writer slot; a second run waits for the first.

    Only a DuckDB warehouse has one writer: PostgreSQL takes concurrent writers (pipelines
    still go one at a time there, under the pipeline lock of flows/runs.py)."""
    if settings.warehouse_url is not None:
        yield
        return
    from prefect.concurrency.sync import concurrency

    ensure_concurrency_limits(settings)
    timeout = settings.warehouse_writer_timeout_seconds
    held = ExitStack()
    try:
        # strict: a limit that vanished must not let two writers in silently.
        held.enter_context(
            concurrency(WAREHOUSE_WRITER, occupy=1, timeout_seconds=timeout, strict=True)
        )
    except TimeoutError:
        raise WarehouseBusyError(
            f"another run has been writing the warehouse for more than {timeout:.0f} s; see "
            "its state in the Prefect UI, or raise LEADFLOW_WAREHOUSE_WRITER_TIMEOUT_SECONDS"
        ) from None
    with held:
        yield


def email_provider_rate_limit(settings: Settings) -> Callable[[], None]:
    """Wait for a slot of the email provider's rate limit, shared by every run (one per request).

    The limit is created first: Prefect would silently skip a missing one and let concurrent
    runs exceed the provider's rate.
    """
    from prefect.concurrency.sync import rate_limit
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        # Called as a plain function (tests, a one-off script): no runs to share a limit with,
        # and asking for one would start a temporary Prefect server per process.
        return lambda: None
    ensure_concurrency_limits(settings)
    return lambda: rate_limit(EMAIL_PROVIDER, occupy=1, strict=True)
