"""Extract benchmark: LeadFlow's load of one large lead CSV next to a plain DuckDB read_csv.

Each measurement runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is that of the
one load alone; both run on the same file, one after the other, in the same invocation.

    python -m bench.extract --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-extract.json"
REPORT = RESULTS.with_suffix(".md")
# One row in ~1,000 has a broken email, so validation and quarantine do real work.
BROKEN_EVERY = 997


def make_leads_csv(path: Path, rows: int) -> None:
    """A lead export of ``rows`` rows with the canonical columns, written by DuckDB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect().execute(
        f"""
        copy (
            select
                'L' || i as source_lead_id,
                case when i % {BROKEN_EVERY} = 0 then 'broken@'
                     else 'lead' || i || '@example' || (i % 5000) || '.com' end as email,
                'First' || (i % 1000) as first_name,
                'Last' || (i % 3000) as last_name,
                'Company ' || (i % 20000) as company,
                ['VP Marketing', 'Director of Sales', 'Analyst'][1 + i % 3] as title,
                'Software' as industry,
                cast(i % 5000 as varchar) as employee_count,
                ['US', 'DE', 'FR', 'JP'][1 + i % 4] as country,
                '' as phone,
                'organic' as lead_source,
                'Spring launch' as first_campaign,
                'false' as is_do_not_email,
                '2025-01-01 10:00:00' as created_at,
                '2025-02-01 10:00:00' as updated_at
            from range({rows}) as t(i)
        ) to '{path}' (format csv, header)
        """
    )


def measure_leadflow(file: Path, warehouse: Path) -> dict[str, float]:
    from flows.settings import Settings
    from flows.sources.inbox import load_file, scan_inbox
    from flows.warehouse import ensure_schema, open_warehouse

    started = time.perf_counter()
    with open_warehouse(warehouse) as connection:
        # As the extract flow does: bounded memory, spilling beyond it.
        connection.execute(f"set memory_limit = '{Settings().extract_memory_limit}'")
        ensure_schema(connection)
        (inbox_file,) = scan_inbox(connection, file.parent).new
        # The extract's own per-file load: staging, validation, the insert and the ledger.
        load = load_file(connection, inbox_file, datetime(2026, 1, 1), "bench")
    return {
        "seconds": time.perf_counter() - started,
        "rows_loaded": load.rows_loaded,
        "rows_quarantined": load.rows_quarantined,
    }


def measure_read_csv(file: Path, warehouse: Path) -> dict[str, float]:
    started = time.perf_counter()
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(f"create table leads as select * from read_csv('{file}')")
        rows = connection.execute("select count(*) from leads").fetchall()[0][0]
    return {"seconds": time.perf_counter() - started, "rows_loaded": rows, "rows_quarantined": 0}


def run_measurement(mode: str, file: Path, warehouse: Path) -> dict[str, float]:
    """One measurement in a fresh interpreter: its peak RSS is the load's own."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.extract",
            "--measure",
            mode,
            "--file",
            str(file),
            "--warehouse",
            str(warehouse),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gib": f"{memory_kb / 2**20:.0f}",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def write_report(result: dict) -> None:
    """Merge this size's result into docs/benchmarks.json and rewrite docs/benchmarks.md."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("extract", {})[str(result["rows"])] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Extract benchmark",
        "",
        "Measured by `bench/extract.py`; every ratio compares two measurements taken side by",
        "side in one run on the same data, each in a fresh process (peak RSS is its own).",
        "",
        "## Extract: one lead CSV (`python -m bench.extract --rows N`)",
        "",
        f"One row in {BROKEN_EVERY} has a broken email, so validation and quarantine do real "
        "work. LeadFlow's load runs with `LEADFLOW_EXTRACT_MEMORY_LIMIT` (default 2GB), "
        "spilling to disk beyond it.",
    ]
    for size in sorted(results["extract"].values(), key=lambda r: r["rows"]):
        rows, host, lower = size["rows"], size["machine"], size["read_csv"]["seconds"]
        lines += [
            "",
            f"### {rows:,} rows ({size['file_mb']:,.0f} MB)",
            "",
            f"{host['cpu']}, {host['cores']} cores, {host['memory_gib']} GiB; Python "
            f"{host['python']}, DuckDB {host['duckdb']}; load average at start "
            f"{host['load_average']}; {size['measured_at']}.",
            "",
            "| load | seconds | rows/s | peak RSS (MB) | ratio to read_csv |",
            "|---|---|---|---|---|",
        ]
        for name, label in (
            ("read_csv", "plain DuckDB `read_csv` into a table (lower bound)"),
            ("leadflow", "LeadFlow: header check, mapping, validation, quarantine, ledger"),
        ):
            measured = size[name]
            lines.append(
                f"| {label} | {measured['seconds']:.2f} | {rows / measured['seconds']:,.0f} | "
                f"{measured['peak_rss_mb']:,.0f} | {measured['seconds'] / lower:.2f} |"
            )
        lines.append(
            f"\nLeadFlow loaded {size['leadflow']['rows_loaded']:,} rows and quarantined "
            f"{size['leadflow']['rows_quarantined']:,} (loaded + quarantined = rows)."
        )
    REPORT.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench/extract"))
    parser.add_argument("--measure", choices=("leadflow", "read_csv"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure = measure_leadflow if args.measure == "leadflow" else measure_read_csv
        measurement = measure(args.file, args.warehouse)
        measurement["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(measurement))
        return
    workdir = args.workdir.resolve()
    file = workdir / "inbox" / "leads__bench.csv"
    make_leads_csv(file, args.rows)
    result: dict[str, Any] = {
        "rows": args.rows,
        "file_mb": file.stat().st_size / 2**20,
        "machine": machine(),
        "measured_at": datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    for mode in ("read_csv", "leadflow"):
        warehouse = workdir / f"{mode}.duckdb"
        warehouse.unlink(missing_ok=True)
        result[mode] = run_measurement(mode, file, warehouse)
        warehouse.unlink(missing_ok=True)
    write_report(result)
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
