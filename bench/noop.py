"""``make bench-noop SIZE=... RUNS=...``: the hourly run with nothing new, on a long-lived
Prefect server, stage by stage.

Generates a seeded data set, starts ``prefect server start`` on a free 127.0.0.1 port (as the
server ``leadflow serve`` or a worker uses is running already), runs the whole pipeline once
(the data set's first run), once more an hour later (taking in the tasks and sends the first
hand-off and nurture wrote), then ``--runs`` hours with nothing new. Each of those hours runs
twice from the same saved data folder, side by side: as a run that compares as usual (no
inputs kept from the last build, no kept gate verdict: what every run did before the no-op
run became cheap) and as the hourly run does now; the data folder goes on from the latter.

Each run is a fresh Python process, as a process worker or ``leadflow serve`` starts one per
flow run: its interpreter start-up and its imports are measured apart from the flow, and
inside the flow each stage (``RunSummary.durations_s``), dbt's invocations and GX's
validation. ``--record`` merges the result into docs/benchmarks-noop.json and writes the
"No-op hourly run" section of docs/benchmarks.md.
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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = PROJECT_ROOT / "docs"
RESULTS_FILE = DOCS_DIR / "benchmarks-noop.json"
REPORT = DOCS_DIR / "benchmarks.md"
SECTION_TITLE = "## No-op hourly run"
AS_OF = datetime(2026, 3, 2)
RUNS = 3
SIZES_REPORTED = (5_000, 1_000_000)
# What lets a run skip work on a quiet hour; removed, the run compares as usual.
KEPT_STATE = ("dbt/last-build/inputs.sha256", "gate/last-verdict.json")


# --- one run, in its own process -----------------------------------------------------------


def child(as_of: datetime, result_file: Path) -> None:
    """One hourly run in this fresh process: the imports, then ``lead_pipeline``, with dbt's
    invocations and GX's validation timed from outside the code that makes them."""
    started = time.perf_counter()
    from dbt.cli.main import dbtRunner

    import flows.quality
    from flows.pipeline import lead_pipeline

    imported = time.perf_counter()
    dbt_seconds: dict[str, float] = {}
    gx_seconds: list[float] = []
    invoke, run_gate = dbtRunner.invoke, flows.quality.run_gate

    def timed_invoke(runner: Any, args: list[str], **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return invoke(runner, args, **kwargs)
        finally:
            command = " ".join(args[:2]) if args[0] == "source" else args[0]
            dbt_seconds[command] = dbt_seconds.get(command, 0) + time.perf_counter() - begun

    def timed_gate(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return run_gate(*args, **kwargs)
        finally:
            gx_seconds.append(time.perf_counter() - begun)

    dbtRunner.invoke = timed_invoke  # type: ignore[method-assign,assignment]
    flows.quality.run_gate = timed_gate
    summary = lead_pipeline(as_of=as_of)
    finished = time.perf_counter()
    result_file.write_text(
        json.dumps(
            {
                "import_seconds": imported - started,
                "flow_seconds": finished - imported,
                "stages": summary.durations_s,
                "dbt_seconds": dbt_seconds,
                "gx_validation_seconds": sum(gx_seconds) if gx_seconds else None,
                "summary": {
                    "rows_loaded": summary.rows_loaded,
                    "files_skipped": summary.files_skipped,
                    "gate_passed": summary.gate.passed,
                    "handed_off": summary.handed_off,
                    "emails_sent": summary.emails_sent,
                    "tasks_created": summary.tasks_created,
                },
            }
        )
    )


def run_once(
    as_of: datetime, work_dir: Path, environment: Mapping[str, str], label: str
) -> dict[str, Any]:
    progress(f"{label} run as of {as_of:%Y-%m-%d %H:%M}")
    result_file = work_dir / "results" / f"{as_of:%Y%m%dT%H%M}-{label}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.noop", "--child", as_of.isoformat(), str(result_file)]
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        errors = [line for line in completed.stderr.splitlines() if "Error" in line]
        sys.exit(f"bench.noop: the {label} run as of {as_of} failed: {errors[-3:]}")
    measured: dict[str, Any] = json.loads(result_file.read_text())
    measured["wall_seconds"] = wall
    # Interpreter start-up and Prefect's settings before the first import here.
    measured["start_seconds"] = wall - measured["import_seconds"] - measured["flow_seconds"]
    # The flow's own work around the stages: the run lock and writer limit, the run's row,
    # the task-overflow count, the summary artifact, and Prefect's flow run itself.
    measured["flow_overhead_seconds"] = measured["flow_seconds"] - sum(measured["stages"].values())
    progress(f"  {wall:.1f} s: {measured['stages']}")
    return measured


# --- the benchmark -----------------------------------------------------------------------


def run_benchmark(size: int, seed: int, runs: int, *, keep: bool) -> dict[str, Any]:
    from bench.machine import describe_machine
    from bench.run import QUIET_TOOLS
    from flows.demo.generate import generate_dataset
    from flows.serve import start_server, stop_server

    load_at_start = os.getloadavg()
    work_dir = PROJECT_ROOT / "data" / "bench" / f"noop-{size}"
    shutil.rmtree(work_dir, ignore_errors=True)
    data_dir = work_dir / "data"
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")},
        **QUIET_TOOLS,
        "LEADFLOW_DATA_DIR": str(data_dir),
        "PREFECT_HOME": str(work_dir / "prefect"),
    }
    progress(f"generating {size:,} leads")
    generate_dataset(data_dir / "inbox", leads=size, seed=seed, as_of=AS_OF)
    progress("starting `prefect server start`")
    server = start_server(work_dir / "prefect")
    environment["PREFECT_API_URL"] = server.api_url
    saved = work_dir / "saved"
    pairs: list[dict[str, Any]] = []
    try:
        first = run_once(AS_OF, work_dir, environment, "first")
        settling = run_once(AS_OF + timedelta(hours=1), work_dir, environment, "settling")
        for hour in range(2, runs + 2):
            as_of = AS_OF + timedelta(hours=hour)
            copy_data(data_dir, saved)
            for name in KEPT_STATE:
                (data_dir / name).unlink(missing_ok=True)
            as_usual = run_once(as_of, work_dir, environment, "as-usual")
            copy_data(saved, data_dir)
            noop = run_once(as_of, work_dir, environment, "no-op")
            pairs.append({"as_usual": as_usual, "noop": noop})
    finally:
        stop_server(server)
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "size": size,
        "seed": seed,
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "load_average_at_start": [round(value, 2) for value in load_at_start],
        "first": first,
        "settling": settling,
        "pairs": pairs,
    }


def copy_data(source: Path, target: Path) -> None:
    """Make ``target`` what ``source`` is, but for the inbox (which a run only reads)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.name != "inbox":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in source.iterdir():
        if entry.name == "inbox":
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


# --- the report --------------------------------------------------------------------------


def breakdown(run: Mapping[str, Any]) -> dict[str, float | None]:
    """Where one run's wall time went, in the order a run spends it."""
    stages = run["stages"]
    dbt = run["dbt_seconds"]
    return {
        "interpreter start": run["start_seconds"],
        "imports (Prefect, flows, dbt)": run["import_seconds"],
        "extract": stages.get("extract"),
        "transform": stages.get("transform"),
        "  of which dbt parse": dbt.get("parse"),
        "  of which dbt source freshness": dbt.get("source freshness"),
        "  of which dbt ls (changed definitions)": dbt.get("ls"),
        "  of which dbt build": dbt.get("build"),
        "gate": stages.get("gate"),
        "  of which GX validation": run["gx_validation_seconds"],
        "handoff": stages.get("handoff"),
        "nurture": stages.get("nurture"),
        "flow around the stages": run["flow_overhead_seconds"],
        "total (wall)": run["wall_seconds"],
    }


def median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def section(document: Mapping[str, Any]) -> str:
    from bench.results import format_seconds, machine_line

    lines = [
        SECTION_TITLE,
        "",
        "`make bench-noop SIZE=<leads> RUNS=<hours>` (`python -m bench.noop --size ... --runs ... "
        "--record`; code: `bench/noop.py`): the hourly deployment's run (`lead_pipeline`) in a "
        "fresh process per run, as a process worker or `leadflow serve` starts it, against a "
        "long-lived `prefect server start` on 127.0.0.1 (so no temporary server start). After "
        "the data set's first run and one more an hour later (which takes in what the first "
        "hand-off and nurture wrote), each hour with nothing new runs twice from the same saved "
        "data folder, side by side: **as usual** (no inputs kept from the last build, no kept "
        "gate verdict: every run's work before this change) and as the **no-op** run it is "
        "now (only what the clock reaches rebuilt, the gate's verdict kept for unchanged "
        "queues). Figures are medians over the hours; the ratio is taken pair by pair. "
        "Interpreter start is the process's wall time before its first import; the flow "
        "around the stages is the run lock, the writer limit, the run's row, the summary and "
        "Prefect's flow run; each stage includes its own Prefect subflow and task runs.",
        "",
    ]
    for size in SIZES_REPORTED:
        result = document.get("sizes", {}).get(str(size))
        lines.append(f"### {size:,} leads")
        lines.append("")
        if result is None:
            lines += [
                f"Not measured yet: `make bench-noop SIZE={size}` (at 1M the data set and its "
                "first run take most of an hour on a 2-core machine).",
                "",
            ]
            continue
        pairs = result["pairs"]
        usual = [breakdown(pair["as_usual"]) for pair in pairs]
        noop = [breakdown(pair["noop"]) for pair in pairs]
        ratios = [pair["noop"]["wall_seconds"] / pair["as_usual"]["wall_seconds"] for pair in pairs]
        lines += [
            f"Recorded {result['recorded_at']} on: {machine_line(result)}",
            "",
            f"First run {result['first']['wall_seconds']:.1f} s; the run an hour later (taking "
            f"in the first hand-off and nurture) {result['settling']['wall_seconds']:.1f} s; "
            f"then {len(pairs)} hours with nothing new.",
            "",
            "| where the time goes | as usual (s) | no-op (s) |",
            "|---|--:|--:|",
        ]
        for part in usual[0]:
            lines.append(
                f"| {part} | {format_seconds(median([row[part] for row in usual]))} "
                f"| {format_seconds(median([row[part] for row in noop]))} |"
            )
        walls = {
            kind: ", ".join(f"{pair[kind]['wall_seconds']:.1f}" for pair in pairs)
            for kind in ("as_usual", "noop")
        }
        lines += [
            "",
            "No-op / as usual, pair by pair: "
            + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
            + f" (wall time as usual {walls['as_usual']} s; no-op {walls['noop']} s). "
            "A dash: that step did not run (no GX validation: the gate kept its verdict).",
            "",
        ]
    return "\n".join(lines)


def record(result: Mapping[str, Any]) -> None:
    from bench.results import record_section

    document = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else {"sizes": {}}
    document["sizes"][str(result["size"])] = result
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
    record_section(REPORT, SECTION_TITLE, section(document))


def progress(message: str) -> None:
    print(f"[bench.noop] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("AS_OF", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=5_000, help="leads to generate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=RUNS, help="hours with nothing new")
    parser.add_argument("--keep", action="store_true", help="keep data/bench/noop-<size>")
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks*.")
    args = parser.parse_args(argv)
    if args.child:
        child(datetime.fromisoformat(args.child[0]), Path(args.child[1]))
        return
    if args.runs < 1:
        parser.error(f"--runs must be 1 or more, not {args.runs}")
    result = run_benchmark(args.size, args.seed, args.runs, keep=args.keep)
    if args.record:
        record(result)
        print(section(json.loads(RESULTS_FILE.read_text())))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
