"""Hand-off: a sales task for every newly sales-ready lead, delivered to each rep's task file."""

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.sales.delivery import crm_links, task_sinks
from flows.sales.outcomes import close_tasks_for_outcomes
from flows.sales.sinks import SinkResult, deliver_tasks
from flows.sales.tasks import create_handoff_tasks, queued_tasks_by_rep
from flows.settings import load_settings
from flows.warehouse import open_warehouse


@task(cache_policy=NO_CACHE)
def create_tasks_for_sales_ready_leads(run_id: str, as_of: datetime) -> int:
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        close_tasks_for_outcomes(connection, as_of)  # sales' word ends tasks before new ones
        return create_handoff_tasks(connection, run_id, as_of, crm_links(settings))


@task(cache_policy=NO_CACHE)
def deliver_to_sinks(as_of: datetime) -> list[SinkResult]:
    """Every configured sink brought up to date with ops.sales_tasks. No Prefect retries: the
    webhook retries at the network boundary, and what a sink could not take waits for the next
    run (each sink delivers from the table, by idempotency key)."""
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        results = deliver_tasks(connection, task_sinks(settings), as_of)
    logger = get_run_logger()
    for result in results:
        if result.pending:
            logger.warning(
                "%s: %d left for the next run (%s)", result.sink, result.pending, result.problem
            )
    return results


@task(cache_policy=NO_CACHE)
def count_task_overflow() -> dict[str, int]:
    """Per rep, the tasks waiting for room in their daily capacity (for the sales manager)."""
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        return queued_tasks_by_rep(connection)


@flow(name="handoff")
def handoff(run_id: str, as_of: datetime) -> int:
    created = create_tasks_for_sales_ready_leads(run_id, as_of)
    deliver_to_sinks(as_of)
    return created
