"""The run ledger (``ops.runs``): when each pipeline run started, how it ended, what it did."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from flows.warehouse import ensure_schema, open_warehouse


def utc_now() -> datetime:
    """The run clock: naive UTC to the second, the form every timestamp in the warehouse has."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_run_id(as_of: datetime) -> str:
    return f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def record_start(warehouse: Path, run_id: str, started_at: datetime) -> None:
    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        connection.execute(
            "insert into ops.runs values (?, ?, null, 'running', null)", [run_id, started_at]
        )


def record_end(warehouse: Path, run_id: str, status: str, summary: dict[str, object]) -> None:
    with open_warehouse(warehouse) as connection:
        connection.execute(
            "update ops.runs set finished_at = ?, status = ?, summary = ? where run_id = ?",
            [utc_now(), status, json.dumps(summary, default=str), run_id],
        )
