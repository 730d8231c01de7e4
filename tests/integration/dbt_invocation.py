"""The `dbt build` the dbt integration tests run: the repository's project at a given clock,
its artifacts and logs in a folder of the test's own, and what failed in it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from dbt.cli.main import dbtRunner, dbtRunnerResult

from flows.dbt_runner import dbt_session

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
PASSED = {"success", "pass"}


def invoke_dbt_build(
    work_dir: Path, as_of: datetime, *options: str, project: Path = DBT_PROJECT
) -> dbtRunnerResult:
    """The build (of the repository's project, or a copy of it), with the warehouse closed
    afterwards as the pipeline closes it. On the DuckDB target unless ``options`` name one (an
    earlier run in this process may have left DBT_TARGET at postgres)."""
    target = () if "--target" in options else ("--target", "local")
    with dbt_session():
        return dbtRunner().invoke(
            [
                "build",
                "--project-dir", str(project),
                "--profiles-dir", str(project),
                "--target-path", str(work_dir / "target"),
                "--log-path", str(work_dir / "logs"),
                "--vars", json.dumps({"as_of": as_of.isoformat(sep=" ")}),
                *target,
                *options,
            ]
        )  # fmt: skip


def build_failures(result: dbtRunnerResult) -> list[str]:
    """One line per node that did not pass, or dbt's error when it ran none."""
    nodes = getattr(result.result, "results", None) or []
    failed = [
        f"{node.node.unique_id}: {node.status} {' '.join(str(node.message).split())}"
        for node in nodes
        if str(node.status) not in PASSED
    ]
    if not result.success and not failed:
        failed.append(str(result.exception or "dbt failed before running any node"))
    return failed
