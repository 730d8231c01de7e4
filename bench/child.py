"""Run ONE probe in this process and write its measurement as JSON: ``python -m bench.child``.

Each stage and each lower bound runs in a fresh process of its own, because peak memory is a
per-process high-water mark (``VmHWM``) that cannot be lowered again: in a shared process
every stage after the hungriest one would report that stage's peak. A sampling thread could
reset it, but would miss short spikes (DuckDB and pandas allocate in bursts) and would itself
compete for the GIL with the code it measures. A fresh process also means no warm caches
carried from one stage to the next. What a fresh process adds -- Python start-up and the
imports -- happens before the timed section and is listed apart as a fixed cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class Measurement:
    probe: str
    seconds: float = 0.0
    rows: int = 0
    baseline_rss_bytes: int = 0  # resident memory when the timed section began
    peak_rss_bytes: int = 0  # the process's high-water mark when it ended
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """What a probe gets: the run's clock and id, the bench folder, and the stopwatch."""

    probe: str
    as_of: datetime
    run_id: str
    work_dir: Path
    measurement: Measurement = field(init=False)
    _timed_sections: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.measurement = Measurement(self.probe)

    @contextmanager
    def timed(self) -> Iterator[None]:
        """The section that is measured: everything before it is set-up, after it is checking."""
        self._timed_sections += 1
        self.measurement.baseline_rss_bytes = current_rss_bytes()
        started = time.perf_counter()
        yield
        self.measurement.seconds = time.perf_counter() - started
        self.measurement.peak_rss_bytes = peak_rss_bytes()


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The peak resident memory of this process image (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over exec from the parent, so every
    probe would report at least the harness's own peak (the generator's, at large sizes).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("/proc/self/status has no VmHWM line: the bench needs Linux")


def main(argv: list[str] | None = None) -> None:
    from bench.probes import PROBES

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--as-of", type=datetime.fromisoformat, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    context = ProbeContext(args.probe, args.as_of, args.run_id, args.work_dir)
    outcome = PROBES[args.probe](context)
    if context._timed_sections != 1:
        sys.exit(f"probe {args.probe} timed {context._timed_sections} sections; it must time one")
    context.measurement.rows = outcome.rows
    context.measurement.details = outcome.details
    args.result.write_text(json.dumps(asdict(context.measurement), default=str))


if __name__ == "__main__":
    main()
