"""Deliver open tasks to reps: one CSV per rep, rewritten atomically on every run.

The file is a view of ``ops.sales_tasks`` (the system of record), so rewriting it whole is
idempotent and a failed write loses nothing: the next run writes it again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

TASK_COLUMNS = (
    "task_id",
    "due_at",
    "reason",
    "title",
    "why_now",
    "email",
    "phone",
    "lead_id",
    "track",
    "step",
    "created_at",
)


def rep_file_name(rep_id: str) -> str:
    """A safe file name for a rep id that came from a source file."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", rep_id).lstrip(".") + ".csv"


def write_rep_task_files(connection: duckdb.DuckDBPyConnection, tasks_dir: Path) -> dict[str, int]:
    """Write ``<rep_id>.csv`` with each rep's open tasks, highest priority first."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    counts = dict(
        connection.execute(
            "select owner_rep_id, count(*) from ops.sales_tasks where status = 'open' "
            "group by all order by all"
        ).fetchall()
    )
    columns = ", ".join(TASK_COLUMNS)
    for rep_id in counts:
        target = tasks_dir / rep_file_name(rep_id)
        temporary = target.with_name(f".{target.name}.tmp")
        connection.execute(
            f"""
            copy (
                select {columns} from ops.sales_tasks
                where status = 'open' and owner_rep_id = ?
                order by priority desc nulls last, due_at, task_id
            ) to '{str(temporary).replace("'", "''")}' (format csv, header)
            """,
            [rep_id],
        )
        os.replace(temporary, target)
    return counts
