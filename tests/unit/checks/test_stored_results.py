"""GX's stored validation results are kept for a while, not for ever."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flows.checks.gate import run_gate
from flows.checks.gx_project import (
    RESULT_PAGES,
    STORED_RESULTS,
    build_data_docs,
    prune_stored_results,
)
from tests.unit.checks.test_gate import handoff_queue, nurture_queue


def stored_files(expectations: Path) -> set[Path]:
    return {
        path
        for root in (STORED_RESULTS, RESULT_PAGES)
        for path in (expectations / root).rglob("*")
        if path.is_file()
    }


def age(paths: set[Path], days: float) -> None:
    then = time.time() - days * 86_400
    for path in paths:
        os.utime(path, (then, then))


def test_results_older_than_the_kept_days_go_with_their_pages_and_folders(
    expectations_dir,
):
    frames = {"handoff_queue": handoff_queue(), "nurture_queue": nurture_queue()}
    run_gate(frames, expectations_dir)
    build_data_docs(expectations_dir)
    old = stored_files(expectations_dir)
    # Each severity suite of each queue: a result and its Data Docs page.
    assert sum(path.suffix == ".json" for path in old) == 4
    assert sum(path.suffix == ".html" for path in old) == 4
    age(old, days=31)
    run_gate(frames, expectations_dir)
    build_data_docs(expectations_dir)
    recent = stored_files(expectations_dir) - old

    removed = prune_stored_results(expectations_dir, kept_days=30)

    assert removed == 4  # the results; their pages went with them
    assert stored_files(expectations_dir) == recent
    for root in (STORED_RESULTS, RESULT_PAGES):
        empty = [
            p for p in (expectations_dir / root).rglob("*") if p.is_dir() and not any(p.iterdir())
        ]
        assert empty == []
    assert prune_stored_results(expectations_dir, kept_days=30) == 0  # nothing more is old
    assert stored_files(expectations_dir) == recent


def test_pruning_a_project_that_never_validated_removes_nothing(expectations_dir):
    assert prune_stored_results(expectations_dir, kept_days=1) == 0
