"""The gate's last verdict, kept so that queues nothing has changed are not validated again.

GX's verdict on a queue depends on the gate's definition files (``expectations/gx/``: the
project, suites, validation definitions and checkpoints) and, of the frame, only on its
columns' names and types (the table-level expectations), each row's ``lead_id`` (which rows
fail) and the values of the columns its expectations name, in whatever order the rows come.
``gate_fingerprint`` hashes exactly those. When a run's fingerprint equals the one the kept
verdict was given for, the gate reports that verdict again, a blocked queue blocked with the
same failing leads, without loading GX (a fifth of a quiet hourly run at 5k leads). A suite
whose columns this module cannot tell (a ``row_condition``, or a column argument it does not
know) makes it hash every column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from flows.checks.failures import ROW_ID_COLUMN, ExpectationFailure
from flows.checks.gate import AssetGateResult, GateReport
from flows.checks.gx_project import GX_FOLDER, SEVERITIES, UNCOMMITTED, suite_file
from flows.files import add_files, write_atomically

# Expectation arguments that name the columns an expectation reads.
COLUMN_ARGUMENTS = ("column", "column_A", "column_B", "column_list")
# Arguments that name columns only to compare with the frame's names, which the fingerprint
# holds anyway.
NAME_ONLY_ARGUMENTS = ("column_set",)


def definition_files(expectations_dir: Path) -> list[Path]:
    uncommitted = expectations_dir / UNCOMMITTED
    return sorted(
        path
        for path in (expectations_dir / GX_FOLDER).rglob("*")
        if path.is_file() and not path.is_relative_to(uncommitted)
    )


def columns_read(expectations: Iterable[Mapping[str, Any]]) -> set[str] | None:
    """The columns these expectations (as in a suite file) read; None when one of them may
    read columns it does not name in a known argument."""
    columns: set[str] = set()
    for expectation in expectations:
        kwargs: Mapping[str, Any] = expectation.get("kwargs") or {}
        if kwargs.get("row_condition"):
            return None
        for argument, value in kwargs.items():
            if argument in COLUMN_ARGUMENTS:
                columns.update([value] if isinstance(value, str) else value)
            elif "column" in argument and argument not in NAME_ONLY_ARGUMENTS:
                return None
    return columns


def suite_columns(expectations_dir: Path, asset: str) -> set[str] | None:
    """The columns every suite of ``asset`` reads (None: possibly any)."""
    columns: set[str] = set()
    for severity in SEVERITIES:
        path = suite_file(expectations_dir, f"{asset}.{severity}")
        if not path.is_file():
            continue  # the gate itself says what is missing
        read = columns_read(json.loads(path.read_text()).get("expectations") or [])
        if read is None:
            return None
        columns |= read
    return columns


def gate_fingerprint(frames: Mapping[str, pd.DataFrame], expectations_dir: Path) -> str:
    """What the gate's verdict on these frames depends on (module docstring)."""
    digest = hashlib.sha256()
    add_files(digest, expectations_dir, definition_files(expectations_dir))
    for asset in sorted(frames):
        frame = frames[asset]
        read = suite_columns(expectations_dir, asset)
        hashed = (
            list(frame.columns)
            if read is None
            else [name for name in frame.columns if name in read or name == ROW_ID_COLUMN]
        )
        header = {
            "asset": asset,
            "columns": [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()],
            "hashed": [str(name) for name in hashed],
            "rows": len(frame),
        }
        digest.update(json.dumps(header).encode())
        if hashed and len(frame):
            # In any order: the queries' joins return rows in no fixed order, and no
            # expectation here depends on it (only which lead ids are sampled does).
            rows = pd.util.hash_pandas_object(frame[hashed], index=False).sort_values()
            digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


def save_verdict(path: Path, fingerprint: str, report: GateReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"fingerprint": fingerprint, "report": asdict(report)}
    write_atomically(path, json.dumps(document, default=sorted))


def kept_verdict(path: Path, fingerprint: str) -> GateReport | None:
    """The kept verdict if it was given for this fingerprint; None otherwise, and when the
    file is missing or unreadable (the gate then validates)."""
    try:
        document = json.loads(path.read_text())
        if document.get("fingerprint") != fingerprint:
            return None
        return report_from_dict(document["report"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def report_from_dict(data: Mapping[str, Any]) -> GateReport:
    def failures(items: Iterable[Mapping[str, Any]]) -> tuple[ExpectationFailure, ...]:
        return tuple(
            ExpectationFailure(**{**item, "sample_lead_ids": tuple(item["sample_lead_ids"])})
            for item in items
        )

    assets = {
        name: AssetGateResult(
            asset=result["asset"],
            passed=bool(result["passed"]),
            evaluated_rows=int(result["evaluated_rows"]),
            critical_failures=failures(result["critical_failures"]),
            warnings=failures(result["warnings"]),
            failing_lead_ids=frozenset(result["failing_lead_ids"]),
        )
        for name, result in data["assets"].items()
    }
    return GateReport(assets=assets, passed=bool(data["passed"]))
