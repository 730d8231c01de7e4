"""What is measured: the product's stages, their lower bounds and the fixed costs.

Each probe does its set-up (imports, reading inputs) untimed, times exactly one section with
``context.timed()``, and returns the rows that section processed. Product stages call the
stage flows the pipeline calls (``flows/pipeline.py``), so they pay what a real run pays:
Prefect flow and task runs against the temporary server, the GX context load and dbt's parse.
Only imports are paid before the clock starts, because a real run pays them once per process
and the bench lists them apart.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.child import ProbeContext
from flows.settings import Settings, load_settings
from flows.warehouse import open_warehouse

TRANSFORM_LOWER_BOUND_SQL = Path(__file__).with_name("transform_lower_bound.sql")
RAW_ENTITIES = ("leads", "events", "outcomes", "reps")
QUEUE_TABLES = {
    "handoff_queue": "main.fct_handoff_queue",
    "nurture_queue": "main.fct_nurture_queue",
}
# Stage counts of the hand-written transform may differ from dim_leads by this share of leads
# (float rounding at the MQL thresholds) before the report flags the comparison.
STAGE_COUNT_TOLERANCE = 0.005


@dataclass(frozen=True)
class Outcome:
    rows: int
    details: dict[str, Any] = field(default_factory=dict)


Probe = Callable[[ProbeContext], Outcome]


def warm_prefect_client() -> None:
    """Connect to the temporary server before the clock starts, as the pipeline's flow has."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()


def raw_row_count(settings: Settings) -> int:
    with open_warehouse(settings.warehouse_path, read_only=True) as connection:
        return sum(
            connection.execute(f"select count(*) from raw.{entity}").fetchone()[0]  # type: ignore[index]
            for entity in RAW_ENTITIES
        )


# --- product stages -----------------------------------------------------------------------


def extract_stage(context: ProbeContext) -> Outcome:
    from flows.extract import extract

    warm_prefect_client()
    with context.timed():
        result = extract(context.run_id, context.as_of)
    return Outcome(
        rows=sum(result.rows_loaded.values()) + result.rows_quarantined,
        details={"files_loaded": result.files_loaded, "rows_quarantined": result.rows_quarantined},
    )


def transform_stage(context: ProbeContext) -> Outcome:
    importlib.import_module("dbt.cli.main")
    from flows.transform import transform

    settings = load_settings()
    rows = raw_row_count(settings)
    warm_prefect_client()
    with context.timed():
        stage_counts = transform(context.as_of)
    return Outcome(rows=rows, details={"stage_counts": stage_counts})


def gate_stage(context: ProbeContext) -> Outcome:
    importlib.import_module("great_expectations")
    from flows.quality import gate

    warm_prefect_client()
    with context.timed():
        report = gate(context.run_id, context.as_of)
    return Outcome(
        rows=sum(result.evaluated_rows for result in report.assets.values()),
        details={"passed": report.passed},
    )


def handoff_stage(context: ProbeContext) -> Outcome:
    from flows.handoff import handoff

    settings = load_settings()
    with open_warehouse(settings.warehouse_path, read_only=True) as connection:
        queued = connection.execute(f"select count(*) from {QUEUE_TABLES['handoff_queue']}")
        rows = int(queued.fetchone()[0])  # type: ignore[index]
    warm_prefect_client()
    with context.timed():
        created = handoff(context.run_id, context.as_of)
    return Outcome(rows=rows, details={"tasks_created": created})


def nurture_stage(context: ProbeContext) -> Outcome:
    from flows.nurture import nurture

    warm_prefect_client()
    with context.timed():
        report, follow_ups = nurture(context.run_id, context.as_of)
    return Outcome(
        rows=report.due,
        details={"sent": report.sent, "failed": report.failed, "follow_ups": follow_ups},
    )


# --- lower bounds -------------------------------------------------------------------------


def extract_lower_bound(context: ProbeContext) -> Outcome:
    """A plain DuckDB ``read_csv`` of the inbox files into a table of a scratch database file."""
    import duckdb

    files = sorted(load_settings().inbox_dir.glob("*.csv"))
    scratch = context.work_dir / "lower_bound_extract.duckdb"
    scratch.unlink(missing_ok=True)
    with context.timed(), duckdb.connect(str(scratch)) as connection:
        rows = 0
        for index, path in enumerate(files):
            table = f"file_{index}"
            connection.execute(f"create table {table} as select * from read_csv(?)", [str(path)])
            rows += connection.execute(f"select count(*) from {table}").fetchone()[0]  # type: ignore[index]
    scratch.unlink()
    return Outcome(rows=rows, details={"files": len(files)})


def transform_parameters(settings: Settings, as_of: Any) -> dict[str, Any]:
    """The dbt vars and seed files the hand-written statement uses, read from the dbt project."""
    project = settings.dbt_project_dir
    variables = yaml.safe_load((project / "dbt_project.yml").read_text())["vars"]
    seeds = project / "seeds"
    return {
        "as_of": as_of,
        "fit_threshold": variables["mql_fit_threshold"],
        "engagement_threshold": variables["mql_engagement_threshold"],
        "half_life_days": variables["engagement_half_life_days"],
        "fallback_region": variables["fallback_region"],
        **{
            name: str(seeds / f"{name}.csv")
            for name in (
                "fit_rules",
                "engagement_points",
                "lifecycle_reasons",
                "country_regions",
                "source_priority",
            )
        },
    }


def transform_lower_bound(context: ProbeContext) -> Outcome:
    """One hand-written SQL statement for fit, decayed engagement and stage; checked against
    dim_leads afterwards (the check is not timed)."""
    settings = load_settings()
    rows = raw_row_count(settings)
    statement = TRANSFORM_LOWER_BOUND_SQL.read_text()
    parameters = transform_parameters(settings, context.as_of)
    with open_warehouse(settings.warehouse_path, read_only=True) as connection:
        with context.timed():
            connection.execute(statement, parameters)
        agreement = stage_agreement(connection)
    return Outcome(rows=rows, details={"agreement": agreement})


def stage_agreement(connection: Any) -> dict[str, Any]:
    """How the hand-written stages compare with dim_leads: per stage and lead by lead."""
    per_stage = connection.execute("""
        select coalesce(dbt.stage, hand.stage) as stage,
               count(dbt.lead_id) as dbt_leads, count(hand.lead_id) as hand_leads
        from (select stage, lead_id from main.dim_leads) as dbt
        full join (select stage, lead_id from lower_bound_leads) as hand using (stage, lead_id)
        group by all order by all
    """).fetchall()
    leads, same_stage = connection.execute("""
        select count(*), count(*) filter (where dim_leads.stage = hand.stage)
        from main.dim_leads join lower_bound_leads as hand using (lead_id)
    """).fetchone()
    dbt_counts = dict(
        connection.execute("select stage, count(*) from main.dim_leads group by all").fetchall()
    )
    hand_counts = dict(
        connection.execute("select stage, count(*) from lower_bound_leads group by all").fetchall()
    )
    stages = sorted({stage for stage, _, _ in per_stage})
    counts = {stage: [dbt_counts.get(stage, 0), hand_counts.get(stage, 0)] for stage in stages}
    total = max(sum(dbt_counts.values()), 1)
    largest = max((abs(dbt - hand) for dbt, hand in counts.values()), default=0) / total
    return {
        "stage_counts": counts,
        "same_stage_share": same_stage / max(leads, 1),
        "largest_count_difference_share": largest,
        "tolerance_share": STAGE_COUNT_TOLERANCE,
        "within_tolerance": largest <= STAGE_COUNT_TOLERANCE,
    }


def gate_lower_bound(context: ProbeContext) -> Outcome:
    """The same suites on the same frames through bare GX: an ephemeral context, a pandas
    dataframe asset, ``batch.validate`` -- no checkpoint, no LeadFlow wrapper."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    settings = load_settings()
    with open_warehouse(settings.warehouse_path, read_only=True) as connection:
        frames = {
            asset: connection.execute(f"select * from {table}").df()
            for asset, table in QUEUE_TABLES.items()
        }
    gx_context = gx.get_context(mode="ephemeral")
    source = gx_context.data_sources.add_pandas("bench")
    suites_dir = settings.expectations_dir / "gx" / "expectations"
    plans = []
    for asset, frame in frames.items():
        definition = source.add_dataframe_asset(asset).add_batch_definition_whole_dataframe("all")
        for suite_file in sorted((suites_dir / asset).glob("*.json")):
            stored = json.loads(suite_file.read_text())
            suite = gx.ExpectationSuite(
                name=stored["name"],
                expectations=[
                    ExpectationConfiguration(
                        type=item["type"], kwargs=item["kwargs"]
                    ).to_domain_obj()
                    for item in stored["expectations"]
                ],
            )
            plans.append((definition, suite, frame))
    with context.timed():
        for definition, suite, frame in plans:
            batch = definition.get_batch(batch_parameters={"dataframe": frame})
            batch.validate(suite, result_format="SUMMARY")
    return Outcome(
        rows=sum(len(frame) for frame in frames.values()), details={"suites": len(plans)}
    )


def nurture_lower_bound(context: ProbeContext) -> Outcome:
    """Render-only: the due nurture rows rendered as the nurture stage does (once per shape,
    personalized per lead), nothing claimed, written or sent."""
    from email.utils import parseaddr

    from bench.send import render_due_rows
    from flows.email.dispatch import Sender
    from flows.email.templates import load_tracks

    settings = load_settings()
    sender = Sender(
        from_email=settings.email_from,
        name=parseaddr(settings.email_from)[0] or settings.email_from,
        address=settings.sender_address,
        unsubscribe_url=settings.unsubscribe_url,
    )
    tracks = load_tracks(settings.templates_dir)
    with open_warehouse(settings.warehouse_path, read_only=True) as connection, context.timed():
        rendered, shapes = render_due_rows(
            connection, tracks, settings.templates_dir, sender, context.run_id
        )
    return Outcome(rows=rendered, details={"shapes": shapes})


# --- fixed costs --------------------------------------------------------------------------


def gx_context_load(context: ProbeContext) -> Outcome:
    from flows.checks.gx_project import load_context

    importlib.import_module("great_expectations")
    expectations_dir = load_settings().expectations_dir
    with context.timed():
        load_context(expectations_dir)
    return Outcome(rows=0)


def dbt_parse(context: ProbeContext) -> Outcome:
    """A full ``dbt parse`` of the project (no partial parse), as a fresh checkout pays it."""
    from dbt.cli.main import dbtRunner

    from flows.dbt_runner import dbt_environment

    settings = load_settings()
    dbt_environment(settings)
    project = settings.dbt_project_dir
    arguments = [
        "parse",
        f"--project-dir={project}",
        f"--profiles-dir={project}",
        f"--target-path={context.work_dir / 'dbt-parse-target'}",
        "--no-partial-parse",
        "--log-level=none",
    ]
    with context.timed():
        result = dbtRunner().invoke(arguments)
    if not result.success:
        raise RuntimeError(f"dbt parse failed: {result.exception}")
    return Outcome(rows=0)


PROBES: dict[str, Probe] = {
    "extract": extract_stage,
    "transform": transform_stage,
    "gate": gate_stage,
    "handoff": handoff_stage,
    "nurture": nurture_stage,
    "extract_read_csv": extract_lower_bound,
    "transform_one_sql": transform_lower_bound,
    "gate_raw_gx": gate_lower_bound,
    "nurture_render_only": nurture_lower_bound,
    "gx_context_load": gx_context_load,
    "dbt_parse": dbt_parse,
}
