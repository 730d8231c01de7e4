"""Hand-off: a sales task for every newly sales-ready lead, delivered to each rep's task file."""

from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.sales.sinks import write_rep_task_files
from flows.sales.tasks import create_handoff_tasks, queued_tasks_by_rep
from flows.settings import load_settings
from flows.warehouse import open_warehouse


@task(cache_policy=NO_CACHE)
def create_tasks_for_sales_ready_leads(run_id: str, as_of: datetime) -> int:
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        return create_handoff_tasks(connection, run_id, as_of, settings.crm_url_template)


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2)
def deliver_task_files() -> dict[str, int]:
    """Every rep's open tasks as a CSV; retried, and rewritten whole on the next run anyway."""
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        return write_rep_task_files(connection, settings.tasks_dir)


@task(cache_policy=NO_CACHE)
def count_task_overflow() -> dict[str, int]:
    """Per rep, the tasks waiting for room in their daily capacity (for the sales manager)."""
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        return queued_tasks_by_rep(connection)


@flow(name="handoff")
def handoff(run_id: str, as_of: datetime) -> int:
    created = create_tasks_for_sales_ready_leads(run_id, as_of)
    deliver_task_files()
    return created
