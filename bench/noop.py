"""``make bench-noop SIZE=... RUNS=...``: the hourly run with nothing new, on a long-lived
Prefect server, stage by stage.

Generates a seeded data set, starts ``prefect server start`` on a free 127.0.0.1 port (as
``leadflow serve`` or a worker's server would be running already), runs the whole pipeline
once (the first run takes in the data set), then ``--runs`` more times an hour apart with
nothing new in the inbox. Each run is a fresh Python process, as a process worker or the
served deployment starts one per flow run: its interpreter start-up and imports are measured
apart from the flow. Prints the per-stage breakdown; ``--record`` merges it into
docs/benchmarks-noop.json and the "No-op hourly run" section of docs/benchmarks.md.
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

from bench.machine import describe_machine
from bench.run import QUIET_TOOLS
from flows.demo.generate import generate_dataset

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = PROJECT_ROOT / "docs"
AS_OF = datetime(2026, 3, 2)
RUNS = 3
STAGES = ("extract", "transform", "gate", "handoff", "nurture")


def child(as_of: datetime, result_file: Path) -> None:
    """One hourly run in this fresh process: the imports, then ``lead_pipeline``."""
    started = time.perf_counter()
    from flows.pipeline import lead_pipeline

    imported = time.perf_counter()
    summary = lead_pipeline(as_of=as_of)
    finished = time.perf_counter()
    result_file.write_text(
        json.dumps(
            {
                "import_seconds": imported - started,
                "flow_seconds": finished - imported,
                "stages": summary.durations_s,
                "summary": {
                    "leads_loaded": summary.leads_loaded,
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


def run_once(as_of: datetime, work_dir: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    result_file = work_dir / f"run-{as_of:%Y%m%dT%H%M}.json"
    command = [sys.executable, "-m", "bench.noop", "--child", as_of.isoformat(), str(result_file)]
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-25:])
        sys.exit(f"bench.noop: the run as of {as_of} failed (exit {completed.returncode}):\n{tail}")
    measured: dict[str, Any] = json.loads(result_file.read_text())
    stages = measured["stages"]
    measured["wall_seconds"] = wall
    measured["start_seconds"] = wall - measured["import_seconds"] - measured["flow_seconds"]
    measured["flow_overhead_seconds"] = measured["flow_seconds"] - sum(stages.values())
    return measured


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("AS_OF", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=5_000, help="leads to generate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=RUNS, help="no-op runs after the first")
    parser.add_argument("--keep", action="store_true", help="keep data/bench/noop-<size>")
    args = parser.parse_args(argv)
    if args.child:
        child(datetime.fromisoformat(args.child[0]), Path(args.child[1]))
        return
    from flows.serve import start_server, stop_server

    load_at_start = os.getloadavg()
    work_dir = PROJECT_ROOT / "data" / "bench" / f"noop-{args.size}"
    shutil.rmtree(work_dir, ignore_errors=True)
    data_dir = work_dir / "data"
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")},
        **QUIET_TOOLS,
        "LEADFLOW_DATA_DIR": str(data_dir),
        "PREFECT_HOME": str(work_dir / "prefect"),
    }
    progress(f"generating {args.size:,} leads")
    generate_dataset(data_dir / "inbox", leads=args.size, seed=args.seed, as_of=AS_OF)
    progress("starting `prefect server start`")
    started = time.perf_counter()
    server = start_server(work_dir / "prefect")
    server_start = time.perf_counter() - started
    environment["PREFECT_API_URL"] = server.api_url
    try:
        progress("first run")
        first = run_once(AS_OF, work_dir, environment)
        progress(f"  {first['wall_seconds']:.1f} s")
        noops = []
        for hour in range(1, args.runs + 1):
            progress(f"no-op run {hour}")
            noops.append(run_once(AS_OF + timedelta(hours=hour), work_dir, environment))
            progress(f"  {noops[-1]['wall_seconds']:.1f} s: {noops[-1]['stages']}")
    finally:
        stop_server(server)
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    result = {
        "size": args.size,
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe_machine(),
        "load_average_at_start": list(load_at_start),
        "server_start_seconds": server_start,
        "first": first,
        "noops": noops,
    }
    print(json.dumps(result, indent=2))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def progress(message: str) -> None:
    print(f"[bench.noop] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
