"""Run the dbt project in-process and turn a failed build into a readable error.

Two ways to run it, chosen by ``LEADFLOW_DBT_NODE_TASKS``:
- off (default): dbt's own programmatic runner inside one Prefect task. Fast: the build costs
  what dbt costs.
- on: prefect-dbt's ``PrefectDbtRunner``, which makes every model, seed and test a Prefect task
  with its asset, visible one by one in the Prefect UI. Each node then costs a few API round
  trips (measured here: ~55 s more for ~200 nodes on the local server), so it is for teams
  that want that view.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.settings import Settings

FAILED_STATUSES = {"error", "fail", "runtime error"}


class DbtBuildError(Exception):
    """dbt build failed: names the failing models or tests and where the full log is."""


@dataclass(frozen=True)
class DbtBuildResult:
    nodes: int
    seconds: float


def dbt_environment(settings: Settings) -> None:
    """The profile in dbt_project/profiles.yml reads the warehouse path from the environment."""
    os.environ["LEADFLOW_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    os.environ["LEADFLOW_DBT_THREADS"] = str(settings.dbt_threads)
    os.environ.setdefault("DBT_LOG_PATH", str(settings.data_root / "dbt" / "logs"))


def build_args(as_of: datetime) -> list[str]:
    return ["build", "--vars", json.dumps({"as_of": as_of.isoformat(sep=" ")})]


def describe_failures(results: Any) -> list[str]:
    """One line per failed node of a dbt ``RunExecutionResult``."""
    lines = []
    for result in getattr(results, "results", None) or []:
        status = str(getattr(result.status, "value", result.status)).lower()
        if status in FAILED_STATUSES:
            message = " ".join(str(result.message or status).split())
            lines.append(f"{result.node.resource_type} {result.node.name}: {message}")
    return lines


def generate_docs(settings: Settings) -> Path:
    """``dbt docs generate`` into the data folder; returns the site's index.html."""
    from dbt.cli.main import dbtRunner

    dbt_environment(settings)
    result = dbtRunner().invoke(
        [
            "docs",
            "generate",
            f"--project-dir={settings.dbt_project_dir}",
            f"--profiles-dir={settings.dbt_project_dir}",
            f"--target-path={settings.dbt_target_dir}",
            "--log-level=none",
        ]
    )
    if not result.success:
        raise DbtBuildError(f"dbt docs generate failed: {result.exception or 'see dbt.log'}")
    return settings.dbt_target_dir / "index.html"


def run_dbt_build(settings: Settings, as_of: datetime) -> DbtBuildResult:
    dbt_environment(settings)
    locations = {
        "project_dir": settings.dbt_project_dir,
        "profiles_dir": settings.dbt_project_dir,
        "target_path": settings.dbt_target_dir,
    }
    if settings.dbt_node_tasks:
        from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

        result = PrefectDbtRunner(
            settings=PrefectDbtSettings(**locations), raise_on_failure=False
        ).invoke(build_args(as_of))
    else:
        from dbt.cli.main import dbtRunner

        flags = [f"--{name.replace('_', '-')}={value}" for name, value in locations.items()]
        result = dbtRunner().invoke([*build_args(as_of), *flags, "--log-level=none"])
    failures = describe_failures(result.result)
    if not result.success or failures:
        detail = "; ".join(failures[:5]) or str(result.exception or "no node results")
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise DbtBuildError(
            f"dbt build failed: {detail}{more}. Full log: "
            f"{os.environ['DBT_LOG_PATH']}/dbt.log; reproduce with `cd dbt_project && dbt build`."
        )
    nodes = getattr(result.result, "results", None) or []
    return DbtBuildResult(
        nodes=len(nodes), seconds=float(getattr(result.result, "elapsed_time", 0))
    )
