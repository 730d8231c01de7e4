"""Transform: publish the nurture tracks, then build the dbt project (models and their tests)."""

from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.dbt_runner import DbtBuildResult, run_dbt_build
from flows.email.templates import load_tracks, publish_tracks
from flows.settings import load_settings
from flows.warehouse import ensure_schema, open_warehouse


@task(cache_policy=NO_CACHE)
def publish_nurture_tracks() -> int:
    """Copy the tracks marketing authored in templates/ into ops.nurture_steps for dbt."""
    settings = load_settings()
    tracks = load_tracks(settings.templates_dir)
    with open_warehouse(settings.warehouse) as connection:
        ensure_schema(connection)
        return publish_tracks(connection, tracks)


@task(cache_policy=NO_CACHE)
def build_models(as_of: datetime, full_refresh: bool = False) -> DbtBuildResult:
    """``dbt build`` of what can have changed since the last build (everything from scratch
    with ``full_refresh``), with its tests; a failing test fails the run."""
    result = run_dbt_build(load_settings(), as_of, full_refresh=full_refresh)
    get_run_logger().info(
        "dbt build: %d nodes in %.1f s; rebuilt %s", result.nodes, result.seconds, result.rebuilt
    )
    return result


@task(cache_policy=NO_CACHE)
def count_stages() -> dict[str, int]:
    settings = load_settings()
    with open_warehouse(settings.warehouse) as connection:
        rows = connection.execute(
            "select stage, count(*) from main.dim_leads group by stage order by stage"
        ).fetchall()
    return {stage: int(count) for stage, count in rows}


@flow(name="transform")
def transform(as_of: datetime, full_refresh: bool = False) -> dict[str, int]:
    publish_nurture_tracks()
    build_models(as_of, full_refresh)
    return count_stages()
