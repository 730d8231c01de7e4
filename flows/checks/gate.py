"""The quality gate: nothing reaches sales or a lead's inbox unless its mart passes.

``run_gate`` validates each mart, given as a pandas DataFrame read from DuckDB, with the GX
project under ``expectations/``: a failed ``<asset>.critical`` expectation blocks that asset and
names the rows (by ``lead_id``) that caused it; ``<asset>.warning`` failures are reported and
let the asset pass. An empty queue passes: nothing to do is not a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from flows.checks.failures import (
    ROW_ID_COLUMN,
    ExpectationFailure,
    describe_failure,
    failing_row_ids,
    has_failing_rows,
)
from flows.checks.gx_project import (
    BLOCKING_SEVERITY,
    GateConfigError,
    build_data_docs,
    load_context,
    load_gate_checkpoint,
    rerun_listing_rows,
    run_checkpoint,
    severity_of,
)

if TYPE_CHECKING:
    from great_expectations import Checkpoint

__all__ = [
    "AssetGateResult",
    "ExpectationFailure",
    "GateConfigError",
    "GateReport",
    "build_data_docs",
    "run_gate",
]


@dataclass(frozen=True)
class AssetGateResult:
    asset: str
    passed: bool  # every critical expectation held
    evaluated_rows: int
    critical_failures: tuple[ExpectationFailure, ...]
    warnings: tuple[ExpectationFailure, ...]
    failing_lead_ids: frozenset[str]  # rows failing any critical expectation

    def explain(self) -> str:
        head = f"{self.asset} ({self.evaluated_rows:,} rows)"
        if self.passed and not self.warnings:
            return f"{head} met every expectation."
        parts = []
        if not self.passed:
            parts.append(
                f"{head} is blocked by {_count(self.critical_failures, 'critical failure')} "
                f"involving {_count(self.failing_lead_ids, 'lead')}: "
                + " ".join(failure.named() for failure in self.critical_failures)
            )
        if self.warnings:
            intro = f"{head} passed with" if self.passed else "It also has"
            parts.append(
                f"{intro} {_count(self.warnings, 'warning')}: "
                + " ".join(failure.named() for failure in self.warnings)
            )
        return " ".join(parts)


@dataclass(frozen=True)
class GateReport:
    assets: dict[str, AssetGateResult]
    passed: bool  # every asset passed

    def explain(self) -> str:
        """One paragraph for a person: what failed, on how many rows, with sample lead ids."""
        blocked = [name for name, result in self.assets.items() if not result.passed]
        if blocked:
            verdict = f"The gate blocked {', '.join(blocked)}."
        elif any(result.warnings for result in self.assets.values()):
            verdict = "The gate passed with warnings."
        else:
            verdict = "The gate passed."
        return " ".join([verdict, *(result.explain() for result in self.assets.values())])


def run_gate(frames: Mapping[str, pd.DataFrame], expectations_dir: Path) -> GateReport:
    """Validate each frame (keyed by asset, e.g. ``handoff_queue``) with its gate checkpoint."""
    context = load_context(expectations_dir)
    assets = {
        asset: _validate_asset(load_gate_checkpoint(context, expectations_dir, asset), asset, frame)
        for asset, frame in frames.items()
    }
    return GateReport(assets=assets, passed=all(result.passed for result in assets.values()))


def _validate_asset(checkpoint: Checkpoint, asset: str, frame: pd.DataFrame) -> AssetGateResult:
    # GX names failing rows by index label: with positions as labels they map back to lead_id.
    frame = frame.reset_index(drop=True)
    lead_ids = frame[ROW_ID_COLUMN] if ROW_ID_COLUMN in frame.columns else None
    passed = True
    critical: list[ExpectationFailure] = []
    warnings: list[ExpectationFailure] = []
    failing_lead_ids: set[str] = set()
    for suite_result in run_checkpoint(checkpoint, frame):
        suite = suite_result.suite_name
        failed = [result for result in suite_result.results if not result.success]
        if severity_of(suite) != BLOCKING_SEVERITY:
            warnings.extend(describe_failure(suite, result, lead_ids) for result in failed)
            continue
        passed = passed and suite_result.success
        critical.extend(describe_failure(suite, result, lead_ids) for result in failed)
        row_level = [result for result in failed if has_failing_rows(result)]
        if row_level:
            failing_lead_ids |= failing_row_ids(
                rerun_listing_rows(checkpoint, suite, row_level, frame), lead_ids
            )
    return AssetGateResult(
        asset=asset,
        passed=passed,
        evaluated_rows=len(frame),
        critical_failures=tuple(critical),
        warnings=tuple(warnings),
        failing_lead_ids=frozenset(failing_lead_ids),
    )


def _count(items: Sized, noun: str) -> str:
    number = len(items)
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
