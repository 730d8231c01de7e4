"""Transform: publish the nurture tracks, then build the dbt project (models and their tests)."""

from __future__ import annotations

import json
import os
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from flows.email.templates import load_tracks, publish_tracks
from flows.settings import Settings, load_settings
from flows.warehouse import ensure_schema, open_warehouse


@task(cache_policy=NO_CACHE)
def publish_nurture_tracks() -> int:
    """Copy the tracks marketing authored in templates/ into ops.nurture_steps for dbt."""
    settings = load_settings()
    tracks = load_tracks(settings.templates_dir)
    with open_warehouse(settings.warehouse_path) as connection:
        ensure_schema(connection)
        return publish_tracks(connection, tracks)


def dbt_environment(settings: Settings) -> None:
    """The profile in dbt_project/profiles.yml reads the warehouse path from the environment."""
    os.environ["LEADFLOW_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    os.environ["LEADFLOW_DBT_THREADS"] = str(settings.dbt_threads)
    os.environ.setdefault("DBT_LOG_PATH", str(settings.data_root / "dbt" / "logs"))


@task(cache_policy=NO_CACHE)
def build_models(as_of: datetime) -> None:
    """``dbt build``: run every model and its tests; a failing test fails the run."""
    settings = load_settings()
    dbt_environment(settings)
    runner = PrefectDbtRunner(
        settings=PrefectDbtSettings(
            project_dir=settings.dbt_project_dir,
            profiles_dir=settings.dbt_project_dir,
            target_path=settings.dbt_target_dir,
        ),
        raise_on_failure=True,
    )
    runner.invoke(["build", "--vars", json.dumps({"as_of": as_of.isoformat(sep=" ")})])


@task(cache_policy=NO_CACHE)
def count_stages() -> dict[str, int]:
    settings = load_settings()
    with open_warehouse(settings.warehouse_path) as connection:
        rows = connection.execute(
            "select stage, count(*) from main.dim_leads group by all order by all"
        ).fetchall()
    return {stage: int(count) for stage, count in rows}


@flow(name="transform")
def transform(as_of: datetime) -> dict[str, int]:
    publish_nurture_tracks()
    build_models(as_of)
    return count_stages()
