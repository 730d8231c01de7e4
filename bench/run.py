"""``make bench SIZE=...``: generate a data set, run the pipeline stage by stage against its
lower bounds, run it again with 1% new events, and record it all in docs/benchmarks.*.

Every stage, lower bound and fixed cost runs in its own fresh process (see ``bench.child``
for why); they share one Prefect temporary server started here, as the stages of one
``leadflow run`` share theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.events import append_new_events
from bench.machine import describe_machine
from bench.results import merge_size, render_markdown, size_section, with_sections_kept
from bench.send import with_section
from flows.demo.generate import generate_dataset
from flows.runs import new_run_id

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = PROJECT_ROOT / "docs"
# A fixed clock: the same seed and size give the same files and the same stages on every run.
AS_OF = datetime(2026, 3, 2)
INCREMENTAL_SHARE = 0.01
INCREMENTAL_AS_OF = AS_OF + timedelta(hours=1)
# The full build at 1M varies by a third from one run to the next on a shared machine, and the
# incremental / full ratio with it: the full transform (with its lower bound) and the
# incremental one are measured this many times, in turn, each from its saved state, and the
# medians reported.
TRANSFORM_SAMPLES = 3
# What a transform reads and writes under the data folder, saved before it and restored for
# each sample.
TRANSFORM_STATE = ("warehouse.duckdb", "warehouse.duckdb.wal", "dbt")
# (product stage, its lower bound); each bound runs right after its stage, on the state that
# stage left (the transform bound must see the warehouse before hand-off writes sales tasks).
STAGES: tuple[tuple[str, str | None], ...] = (
    ("extract", "extract_read_csv"),
    ("transform", "transform_one_sql"),
    ("gate", "gate_raw_gx"),
    ("handoff", None),
    ("nurture", "nurture_render_only"),
)
# --transform-only: what the transform needs, for quick comparisons of the dbt project alone.
TRANSFORM_STAGES = STAGES[:2]
IMPORTS = {"prefect": "prefect", "dbt": "dbt.cli.main", "Great Expectations": "great_expectations"}
QUIET_TOOLS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}

METHOD = """\
# Benchmarks

`make bench SIZE=<leads>` (default 10,000) generates a seeded data set with about ten events per
lead (`flows/demo/generate.py`), runs the pipeline's stage flows one by one (the functions
`flows/pipeline.py` calls), runs each stage's lower bound on the same data right after it, then
transforms once more at the same clock (taking in the sales tasks and sends the first hand-off
and nurture wrote), appends 1% new events to the inbox and runs the stages again one hour later
(incremental). Code: `bench/`.

- **time**: wall time of the stage flow, Prefect flow/task runs against the temporary server
  included. Each stage runs in a fresh process: Python start-up and the imports of Prefect, dbt
  and GX are paid before the clock starts and are listed apart as fixed costs; the GX context
  load and dbt's parse are paid inside the stage (every run pays them) and also listed apart.
- **rows**: extract: rows read from the inbox files; transform: rows in `raw.*`; gate: rows of
  the two queues validated; handoff: rows of `fct_handoff_queue`; nurture: due emails.
- **lower bounds**: extract: a plain DuckDB `read_csv` of the same files into a table;
  transform: one hand-written DuckDB statement (`bench/transform_lower_bound.sql`) computing fit
  score, decayed engagement score and stage from the same seeds and vars (checked against
  `dim_leads` below each table); gate: the same suites on the same frames through bare GX
  (ephemeral context, `batch.validate`, no checkpoint); nurture: render only (each step once
  per shape, personalized per lead, as the stage does; nothing claimed, written or sent; until
  2026-12-07 it rendered each lead on its own). Handoff has none.
- **peak RSS**: the stage process's high-water mark (`VmHWM`), imports included.
- **incremental / full**: the incremental run's stage time over the full run's. The incremental
  transform sees the new events and the later clock only: as in an hourly schedule, the run
  before it took in what the previous hand-off and nurture wrote. That run's own time is given
  below each table ("after the first hand-off and nurture"): the first nurture of a data set
  mails nearly every nurtured lead at once, so it rebuilds more than a later hour's does.
- **transform samples**: after both passes, the full transform with its lower bound and the
  incremental transform are measured again in turn, a full then an incremental sample, several
  times (`--transform-samples`, default 3), each from its saved state (the warehouse file and
  dbt's folder as they were just before that transform ran in its pass). Taken side by side,
  both feel the same drift in the machine's speed. The table shows each one's median; the
  samples and each pair's ratio are listed below it.
"""


class BenchError(RuntimeError):
    """A probe failed: the message names it and shows the end of its error output."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10_000, help="leads to generate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep data/bench/<size> afterwards")
    parser.add_argument(
        "--transform-samples",
        type=int,
        default=TRANSFORM_SAMPLES,
        help="times the full and the incremental transform are measured (median reported)",
    )
    parser.add_argument(
        "--transform-only",
        action="store_true",
        help="extract and transform only, printed and not recorded in docs/ (no hand-off or "
        "nurture, so the incremental transform also takes in nothing they would write)",
    )
    args = parser.parse_args(argv)
    if args.transform_samples < 1:
        parser.error(f"--transform-samples must be 1 or more, not {args.transform_samples}")
    try:
        result = run_benchmark(
            args.size,
            args.seed,
            keep=args.keep,
            transform_samples=args.transform_samples,
            stages=TRANSFORM_STAGES if args.transform_only else STAGES,
        )
    except BenchError as error:
        sys.exit(f"bench: {error}")
    if args.transform_only:
        print("\n".join(size_section(result)))
        return
    record(result)
    print((DOCS_DIR / "benchmarks.md").read_text())


def run_benchmark(
    size: int,
    seed: int,
    *,
    keep: bool,
    transform_samples: int,
    stages: Sequence[tuple[str, str | None]] = STAGES,
) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    work_dir = PROJECT_ROOT / "data" / "bench" / str(size)
    shutil.rmtree(work_dir, ignore_errors=True)
    inbox = work_dir / "data" / "inbox"
    environment = {
        **os.environ,
        **QUIET_TOOLS,
        "LEADFLOW_DATA_DIR": str(work_dir / "data"),
        "PREFECT_HOME": str(work_dir / "prefect"),
    }
    os.environ.update(environment)

    progress(f"generating {size:,} leads")
    started = time.perf_counter()
    dataset = generate_dataset(inbox, leads=size, seed=seed, as_of=AS_OF)
    generate_seconds = time.perf_counter() - started
    rows_by_entity = {
        entity: sum(rows for name, rows in dataset.files.items() if name.startswith(entity))
        for entity in ("leads", "events", "outcomes", "reps")
    }

    fixed_costs = [
        {"name": f"Python import of {label}", "seconds": import_seconds(module, environment)}
        for label, module in IMPORTS.items()
    ]
    for probe, name in (("gx_context_load", "GX context load"), ("dbt_parse", "dbt parse")):
        fixed_costs.append(
            {"name": name, "seconds": run_probe(probe, AS_OF, work_dir, environment)["seconds"]}
        )

    from prefect.server.api.server import SubprocessASGIServer

    progress("starting the Prefect temporary server")
    server = SubprocessASGIServer()
    started = time.perf_counter()
    server.start()
    fixed_costs.append(
        {"name": "Prefect temporary server start", "seconds": time.perf_counter() - started}
    )
    environment["PREFECT_API_URL"] = server.api_url
    transform_bound = dict(stages).get("transform")
    transform_index = [stage for stage, _ in stages].index("transform")
    full_state, incremental_state = work_dir / "full-state", work_dir / "incremental-state"
    try:
        full = run_stages(
            stages, AS_OF, work_dir, environment, with_lower_bounds=True, transform_state=full_state
        )
        # The first hand-off and nurture wrote tasks and sends for most leads: a transform at the
        # same clock takes them in, so the incremental run below measures what new events cost.
        after_first_cycle = (
            run_probe("transform", AS_OF, work_dir, environment, "after-cycle")
            if any(stage == "nurture" for stage, _ in stages)
            else None
        )
        new_events = append_new_events(
            inbox / "events__marketing_automation.csv",
            inbox / "events__marketing_automation__incremental.csv",
            share=INCREMENTAL_SHARE,
            seed=seed,
            after=AS_OF,
            until=INCREMENTAL_AS_OF,
        )
        incremental = run_stages(
            stages,
            INCREMENTAL_AS_OF,
            work_dir,
            environment,
            with_lower_bounds=False,
            transform_state=incremental_state,
        )
        full[transform_index], incremental[transform_index] = measure_transform_pairs(
            full_state,
            incremental_state,
            work_dir,
            environment,
            bound=transform_bound,
            samples=transform_samples,
        )
    finally:
        server.stop()
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)

    measured_stages: list[dict[str, Any]] = []
    for (stage, bound), measured, later_measured in zip(stages, full, incremental, strict=True):
        measured_stages.append(
            {
                "stage": stage,
                "rows": measured["stage"]["rows"],
                **seconds_of(measured["stage_samples"]),
                "peak_rss_bytes": measured["stage"]["peak_rss_bytes"],
                "baseline_rss_bytes": measured["stage"]["baseline_rss_bytes"],
                "details": measured["stage"]["details"],
                "lower_bound": bound
                and {**summary(bound, measured["bound"]), **seconds_of(measured["bound_samples"])},
                "incremental": {
                    **summary(stage, later_measured["stage"]),
                    **seconds_of(later_measured["stage_samples"]),
                },
            }
        )
    agreement = full[transform_index]["bound"]["details"]["agreement"]
    return {
        "size": size,
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "load_average_at_start": list(load_at_start),
        "dataset": {
            "seed": seed,
            "as_of": AS_OF.isoformat(sep=" "),
            "lead_rows": rows_by_entity["leads"],
            "event_rows": rows_by_entity["events"],
            "outcome_rows": rows_by_entity["outcomes"],
            "total_rows": sum(dataset.files.values()),
            "events_per_lead": rows_by_entity["events"] / size,
            "generate_seconds": generate_seconds,
        },
        "fixed_costs": fixed_costs,
        "stages": measured_stages,
        "transform_agreement": agreement,
        "incremental": {"share": INCREMENTAL_SHARE, "new_events": new_events},
        **(
            {"transform_after_first_cycle": summary("transform", after_first_cycle)}
            if after_first_cycle
            else {}
        ),
    }


def summary(name: str, measured: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "seconds": measured["seconds"],
        "rows": measured["rows"],
        "peak_rss_bytes": measured["peak_rss_bytes"],
    }


def seconds_of(samples: Sequence[float]) -> dict[str, Any]:
    """A measurement's reported time (the median of its samples) and, when there are several,
    the samples themselves."""
    if len(samples) == 1:
        return {"seconds": samples[0]}
    return {"seconds": statistics.median(samples), "samples": list(samples)}


def run_stages(
    stages: Sequence[tuple[str, str | None]],
    as_of: datetime,
    work_dir: Path,
    environment: dict[str, str],
    *,
    with_lower_bounds: bool,
    transform_state: Path,
) -> list[dict[str, Any]]:
    """Each stage once, from the state the stage before left, then its lower bound; the
    transform's bound is left to ``measure_transform_pairs``, which restarts the transform from
    the state saved in ``transform_state`` just before it ran."""
    run_id = new_run_id(as_of)
    measured = []
    for stage, bound in stages:
        if stage == "transform":
            copy_transform_state(work_dir / "data", transform_state)
        entry = {"stage": run_probe(stage, as_of, work_dir, environment, run_id)}
        if bound and with_lower_bounds and stage != "transform":
            entry["bound"] = run_probe(bound, as_of, work_dir, environment, run_id)
        measured.append(sampled([entry]))
    return measured


def measure_transform_pairs(
    full_state: Path,
    incremental_state: Path,
    work_dir: Path,
    environment: dict[str, str],
    *,
    bound: str | None,
    samples: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The full transform (then its lower bound) and the incremental transform, in turn,
    ``samples`` times, each from its saved state: a shared machine's speed drifts over the
    minutes a large bench takes, and taking the two side by side lets the drift hit both alike
    (measured a pass apart, the ratio at 1M moved by a fifth from one run to the next).
    Returns the full and the incremental measurement, each with its samples; the data folder is
    left as the last incremental sample left it."""
    data_dir = work_dir / "data"
    full_entries: list[dict[str, Any]] = []
    incremental_entries: list[dict[str, Any]] = []
    for _ in range(samples):
        copy_transform_state(full_state, data_dir)
        entry = {"stage": run_probe("transform", AS_OF, work_dir, environment, "full")}
        if bound:
            entry["bound"] = run_probe(bound, AS_OF, work_dir, environment, "full")
        full_entries.append(entry)
        copy_transform_state(incremental_state, data_dir)
        incremental_entries.append(
            {"stage": run_probe("transform", INCREMENTAL_AS_OF, work_dir, environment, "later")}
        )
    return sampled(full_entries), sampled(incremental_entries)


def sampled(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last of a measurement's entries, with every entry's seconds as its samples."""
    return {
        **entries[-1],
        "stage_samples": [entry["stage"]["seconds"] for entry in entries],
        "bound_samples": [entry["bound"]["seconds"] for entry in entries if "bound" in entry],
    }


def copy_transform_state(source_dir: Path, target_dir: Path) -> None:
    """Make ``target_dir``'s warehouse file and dbt folder (state, partial parse, logs) copies of
    ``source_dir``'s, so that a transform sample starts where the first one did."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in TRANSFORM_STATE:
        source, target = source_dir / name, target_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.exists():
            shutil.copy2(source, target)


def run_probe(
    probe: str,
    as_of: datetime,
    work_dir: Path,
    environment: Mapping[str, str],
    run_id: str = "bench",
) -> dict[str, Any]:
    progress(f"{probe} (as of {as_of:%Y-%m-%d %H:%M})")
    result_file = work_dir / "probes" / f"{probe}-{run_id}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "bench.child", probe,
        f"--as-of={as_of.isoformat()}", f"--run-id={run_id}",
        f"--work-dir={work_dir}", f"--result={result_file}",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-25:])
        raise BenchError(f"probe {probe} failed (exit {completed.returncode}):\n{tail}")
    measured: dict[str, Any] = json.loads(result_file.read_text())
    progress(f"  {measured['seconds']:.2f} s, {measured['rows']:,} rows")
    return measured


def import_seconds(module: str, environment: Mapping[str, str]) -> float:
    """The import alone, in a fresh interpreter (start-up excluded)."""
    progress(f"import {module}")
    code = (
        "import time; started = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - started)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def record(result: Mapping[str, Any]) -> None:
    """Merge this size into docs/benchmarks.json and rewrite docs/benchmarks.md from it."""
    json_file = DOCS_DIR / "benchmarks.json"
    document = json.loads(json_file.read_text()) if json_file.is_file() else {}
    document = merge_size(document, result)
    json_file.write_text(json.dumps(document, indent=2) + "\n")
    report = DOCS_DIR / "benchmarks.md"
    earlier = report.read_text() if report.is_file() else ""
    report.write_text(with_sections_kept(with_section(render_markdown(document, METHOD)), earlier))


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
