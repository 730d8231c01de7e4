"""Run the dbt project in-process and turn a failed build into a readable error.

A build covers what can have changed since the last successful one (``flows.dbt_selection``);
the project is parsed once and the manifest shared by the freshness check and the build. dbt
keeps the DuckDB warehouse open from the first invocation to the last (``dbt_session``).

Two ways to run it, chosen by ``LEADFLOW_DBT_NODE_TASKS``:
- off (default): dbt's own programmatic runner inside one Prefect task. Fast: the build costs
  what dbt costs.
- on: prefect-dbt's ``PrefectDbtRunner``, which makes every model, seed and test a Prefect task
  with its asset, visible one by one in the Prefect UI. Each node then costs a few API round
  trips (measured here: ~55 s more for ~200 nodes on the local server), so it is for teams
  that want that view.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.dbt_selection import (
    DEFINITION_TYPES,
    SourceTable,
    build_selection,
    clock_readers,
    definitions_fingerprint,
    earlier_build,
    forget_build,
    forget_inputs,
    inputs_fingerprint,
    nothing_new,
    quiet_selection,
    save_build,
    save_inputs,
    saved_inputs,
    source_watermarks,
)
from flows.settings import PostgresTarget, Settings
from flows.warehouse import open_warehouse

FAILED_STATUSES = {"error", "fail", "runtime error"}


class DbtBuildError(Exception):
    """dbt build failed: names the failing models or tests and where the full log is."""


@dataclass(frozen=True)
class DbtBuildResult:
    nodes: int
    seconds: float
    rebuilt: str


def dbt_environment(settings: Settings) -> None:
    """The profile in dbt_project/profiles.yml reads the warehouse from the environment: the
    DuckDB file (target ``local``), or the PostgreSQL database of LEADFLOW_WAREHOUSE_URL
    (target ``postgres``, its connection settings taken apart from the URL)."""
    os.environ["LEADFLOW_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    os.environ["LEADFLOW_DBT_THREADS"] = str(settings.dbt_threads)
    os.environ.update(dbt_target_environment(settings.warehouse))
    os.environ.setdefault("DBT_LOG_PATH", str(settings.data_root / "dbt" / "logs"))


def dbt_target_environment(warehouse: Path | PostgresTarget) -> dict[str, str]:
    """The profile's target and, for PostgreSQL, the settings it reads (DBT_TARGET is dbt's
    own variable for ``--target``, so every invocation, prefect-dbt's included, follows)."""
    if not isinstance(warehouse, PostgresTarget):
        return {"DBT_TARGET": "local"}
    from psycopg2.extensions import parse_dsn

    parts = parse_dsn(warehouse.url)
    return {
        "DBT_TARGET": "postgres",
        "LEADFLOW_PG_HOST": parts.get("host", "localhost"),
        "LEADFLOW_PG_PORT": parts.get("port", "5432"),
        "LEADFLOW_PG_USER": parts.get("user", ""),
        "LEADFLOW_PG_PASSWORD": parts.get("password", ""),
        "LEADFLOW_PG_DATABASE": parts.get("dbname", ""),
        "LEADFLOW_PG_SSLMODE": parts.get("sslmode", "prefer"),  # libpq's own default
        # LeadFlow's own SQL reads the models in `main`: a schema set for a build by hand
        # (docs/operating.md) must not send a run's models elsewhere.
        "LEADFLOW_PG_SCHEMA": "main",
    }


@contextmanager
def dbt_session() -> Iterator[None]:
    """dbt invocations that share one open DuckDB warehouse, closed when they are done.

    dbt-duckdb closes the file whenever no node holds a connection, unless the profile says
    ``keep_open``: with two threads that is every moment both are between nodes, each close a
    checkpoint and each reopening a cold cache (about fifty per incremental build at 1M leads;
    in paired runs, 4 to 10 s of a 40 to 50 s transform with no new data, 3.6 s with 1% new
    events). So the profile keeps it open, and this closes it afterwards: the
    pipeline goes on to open the file itself, sometimes read-only, which DuckDB refuses while
    the same process holds it with another configuration.
    """
    try:
        yield
    finally:
        close_dbt_warehouse()


def close_dbt_warehouse() -> None:
    """Close the warehouse connection dbt-duckdb keeps for this process (it has no public call
    for this: its one environment per process holds the connection); a no-op on Postgres."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


def run_clock_environment(as_of: datetime) -> dict[str, str]:
    """The run clock for the as_of() macro. An environment variable rather than ``--vars``: a
    changed var makes dbt parse the whole project again, while the macro reads this variable
    only when executing, so a new clock changes nothing dbt parsed (partial parsing)."""
    return {"LEADFLOW_AS_OF": as_of.isoformat(sep=" ")}


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
    with dbt_session():
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


def run_dbt_build(
    settings: Settings, as_of: datetime, *, full_refresh: bool = False
) -> DbtBuildResult:
    """``dbt build`` of what can have changed since the last successful build (dbt_selection);
    a failed build raises DbtBuildError and leaves the last successful one as the reference.
    ``full_refresh``: forget the last build and rebuild every model from scratch, incremental
    ones included (``--full-refresh``)."""
    from dbt.cli.main import dbtRunner
    from dbt.contracts.graph.manifest import Manifest

    dbt_environment(settings)
    os.environ.update(run_clock_environment(as_of))
    project_dir = settings.dbt_project_dir
    locations = {
        "project_dir": project_dir,
        "profiles_dir": project_dir,
        "target_path": settings.dbt_target_dir,
    }
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in locations.items()]
    quiet = "--log-level=none"

    if full_refresh:
        forget_build(settings.dbt_state_dir)
    with dbt_session():
        parsed = dbtRunner().invoke(["parse", *flags, quiet])
        if not parsed.success or not isinstance(parsed.result, Manifest):
            raise DbtBuildError(
                f"dbt could not parse {project_dir}: {parsed.exception or 'see dbt.log'}. Full "
                f"log: {os.environ['DBT_LOG_PATH']}/dbt.log; reproduce with "
                "`cd dbt_project && dbt parse`."
            )
        manifest = parsed.result
        runner = dbtRunner(manifest=manifest)
        clock_nodes = clock_readers(*manifest_macro_calls(manifest))
        state_dir = settings.dbt_state_dir
        earlier = earlier_build(state_dir, project_dir)
        inputs = read_inputs(settings, manifest)
        clock_only = nothing_new(earlier, clock_nodes, saved_inputs(state_dir), inputs)
        forget_inputs(state_dir)
        if clock_only and earlier is not None:
            # The raw tables hold what they held: the earlier freshness result still says so.
            settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(earlier / "sources.json", settings.dbt_target_dir / "sources.json")
            fresh = True
            selection = quiet_selection(earlier, clock_nodes)
        else:
            # What the raw tables hold now, for this build's selection and the next one's
            # comparison.
            fresh = runner.invoke(["source", "freshness", *flags, quiet]).success
            earlier = earlier if fresh else None
            changed = changed_definitions(runner, earlier, flags) if earlier else None
            selection = build_selection(
                earlier,
                clock_nodes,
                changed=changed,
                materializations=manifest_materializations(manifest),
                parents=manifest_parents(manifest),
            )
        os.environ.update(selection.environment)

        build = ["build", *selection.arguments, *(["--full-refresh"] if full_refresh else [])]
        if settings.dbt_node_tasks:
            from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

            result = PrefectDbtRunner(
                settings=PrefectDbtSettings(**locations), manifest=manifest, raise_on_failure=False
            ).invoke(build)
        else:
            result = runner.invoke([*build, *flags, quiet])
    failures = describe_failures(result.result)
    if not result.success or failures:
        detail = "; ".join(failures[:5]) or str(result.exception or "no node results")
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise DbtBuildError(
            f"dbt build failed: {detail}{more}. Full log: "
            f"{os.environ['DBT_LOG_PATH']}/dbt.log; reproduce with `cd dbt_project && dbt build`."
        )
    if fresh:
        save_build(settings.dbt_target_dir, state_dir, project_dir)
        if inputs is not None:
            save_inputs(state_dir, inputs)
    else:
        forget_build(state_dir)
    nodes = getattr(result.result, "results", None) or []
    return DbtBuildResult(
        nodes=len(nodes),
        seconds=float(getattr(result.result, "elapsed_time", 0)),
        rebuilt=selection.description,
    )


def changed_definitions(runner: Any, earlier: Path, flags: list[str]) -> list[str] | None:
    """Names of the models, seeds, snapshots and unit tests that differ from the earlier
    build's, as dbt's ``state:modified`` sees them (macros included); None when dbt could not
    tell, which counts as everything changed."""
    resource_types = [f"--resource-type={name}" for name in DEFINITION_TYPES]
    listed = runner.invoke(
        ["ls", "--select=state:modified", f"--state={earlier}", *resource_types, "--quiet",
         "--output=name", *flags, "--log-level=none"]
    )  # fmt: skip
    return [str(name) for name in listed.result or []] if listed.success else None


def node_type(node: Any) -> str:
    """A manifest node's resource type as a string ("model", "seed", "snapshot", ...)."""
    return str(getattr(node.resource_type, "value", node.resource_type))


def manifest_materializations(manifest: Any) -> dict[str, str]:
    """Model name -> its materialization (table, view, incremental, ...)."""
    return {
        node.name: str(node.config.materialized)
        for node in manifest.nodes.values()
        if node_type(node) == "model"
    }


def manifest_parents(manifest: Any) -> dict[str, list[str]]:
    """Model name -> the names of the models, seeds and snapshots it reads."""
    names = {unique_id: node.name for unique_id, node in manifest.nodes.items()}
    return {
        node.name: [names[parent] for parent in node.depends_on.nodes if parent in names]
        for node in manifest.nodes.values()
        if node_type(node) == "model"
    }


def read_inputs(settings: Settings, manifest: Any) -> str | None:
    """The fingerprint of what a build reads: the project's definitions and its source tables
    (None before the warehouse exists). Read before dbt opens the warehouse, which it then
    keeps open."""
    if not settings.has_warehouse():
        return None
    with open_warehouse(settings.warehouse, read_only=True) as connection:
        watermarks = source_watermarks(connection, manifest_sources(manifest))
    return inputs_fingerprint(definitions_fingerprint(settings.dbt_project_dir), watermarks)


def manifest_sources(manifest: Any) -> list[SourceTable]:
    """The tables the project reads with ``source()``."""
    return [
        SourceTable(source.schema, source.identifier, source.loaded_at_field or None)
        for source in manifest.sources.values()
    ]


def manifest_macro_calls(manifest: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(model or snapshot name -> macros it calls, macro id -> macros it calls)."""
    node_macros = {
        node.name: list(node.depends_on.macros)
        for node in manifest.nodes.values()
        if node_type(node) in ("model", "snapshot")
    }
    macro_macros = {
        macro_id: list(macro.depends_on.macros) for macro_id, macro in manifest.macros.items()
    }
    return node_macros, macro_macros
