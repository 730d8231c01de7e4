"""`leadflow scoring fit` at scale: the fit on a built warehouse of N generated leads.

The data set is generated, loaded and built once (the extract and the dbt build, without
Prefect) into a work folder that later runs reuse; then `leadflow scoring fit` runs as a user
runs it, in a process of its own, timed from start to exit (Python start-up and imports
included), its peak memory (max RSS) read from the kernel.

    python -m bench.scoring --leads 1000000 --record
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import describe_machine
from bench.results import machine_line, record_section

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPORT = PROJECT_ROOT / "docs" / "benchmarks.md"
SECTION_TITLE = "## Scoring fit"
# The clock of the generated data, as in `make bench`: the same files on every run.
AS_OF = datetime(2026, 3, 2)
BUDGET_SECONDS = 120


def build_warehouse(data_dir: Path, leads: int) -> float:
    """Generate, load and build the warehouse once; the seconds it took (0 when reused)."""
    built = data_dir / "built"
    if built.exists():
        return 0.0
    os.environ["LEADFLOW_DATA_DIR"] = str(data_dir)
    from flows.dbt_runner import run_dbt_build
    from flows.demo.generate import generate_dataset
    from flows.extract import load_inbox
    from flows.settings import load_settings

    started = time.perf_counter()
    settings = load_settings()
    settings.ensure_dirs()
    generate_dataset(settings.inbox_dir, leads=leads, seed=42, as_of=AS_OF)
    load_inbox.fn("bench-scoring", AS_OF)
    run_dbt_build(settings, AS_OF)
    built.touch()  # only a build that finished is reused
    return time.perf_counter() - started


def timed_fit(data_dir: Path) -> dict[str, Any]:
    """Run `leadflow scoring fit` in a child process: wall time, peak memory, its proposal.

    The peak is that child's own max RSS (os.wait4), not the largest of every child this
    process had: a build in this process before may have started larger ones.
    """
    out_dir = data_dir / "scoring" / "proposed"
    leadflow = str(Path(sys.executable).parent / "leadflow")
    command = [leadflow, "scoring", "fit", "--out", str(out_dir)]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(
            command,
            env={**os.environ, "LEADFLOW_DATA_DIR": str(data_dir), "COLUMNS": "120"},
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"scoring fit failed ({status}):\n{stderr.read()}")
        output = stdout.read()
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss * 1024 / 2**20),
        "output": output,
        "summary": (out_dir / "diff.md").read_text().split("\n\n")[1],
    }


def section(result: dict[str, Any]) -> str:
    """The "Scoring fit" section of docs/benchmarks.md."""
    verdict = "within" if result["seconds"] < BUDGET_SECONDS else "OVER"
    return "\n".join(
        [
            SECTION_TITLE,
            "",
            f"`python -m bench.scoring --leads {result['leads']}`: `leadflow scoring fit` (the "
            "feature query over the built warehouse, 5 time-ordered folds of logistic "
            "regression plus the final fit, each on every converted lead and at most 200,000 "
            "leads in all, thresholds, the proposed files) in a process of its own, timed from "
            "start to exit; peak memory is its max RSS. The warehouse is the generated data "
            "set, loaded and built once before (not timed).",
            "",
            f"Recorded {result['recorded_at']} on: {machine_line(result)}",
            "",
            "Load average when the fit ended (1/5/15 min): "
            + " / ".join(f"{load:.2f}" for load in result["load_average_at_end"])
            + ". Above the number of cores, the fit shared them with other jobs.",
            "",
            "| leads | time (s) | peak memory (MiB) | budget |",
            "|--:|--:|--:|--|",
            f"| {result['leads']:,} | {result['seconds']} | {result['peak_rss_mib']:,} "
            f"| {verdict} {BUDGET_SECONDS} s |",
            "",
            "What the fit reported:",
            "",
            *(f"- {line}" for line in result["summary"].splitlines()),
            "",
            "`make bench` rewrites the sections above from docs/benchmarks.json and drops this "
            "one: run `python -m bench.scoring --record` again after it.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=PROJECT_ROOT / "data" / "bench" / "scoring",
        help="Where the built warehouse is kept (and reused) per size.",
    )
    parser.add_argument(
        "--record", action="store_true", help="Write the result into docs/benchmarks.md."
    )
    arguments = parser.parse_args()
    data_dir = (arguments.workdir / str(arguments.leads)).resolve()
    build_seconds = build_warehouse(data_dir, arguments.leads)
    load_average = list(os.getloadavg())
    result = {
        "leads": arguments.leads,
        "build_seconds": round(build_seconds, 2),
        "machine": describe_machine(),
        "load_average_at_start": load_average,
        **timed_fit(data_dir),
        "load_average_at_end": list(os.getloadavg()),
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    print(json.dumps({key: value for key, value in result.items() if key != "output"}, indent=2))
    print(result["output"])
    if arguments.record:
        record_section(REPORT, SECTION_TITLE, section(result))


if __name__ == "__main__":
    main()
