"""The SLA report (`leadflow report sla`): did sales follow up each hand-off in time?

Everything is computed by dbt (marts ``fct_handoff_sla`` and ``fct_handoff_sla_by_rep``) at
the clock of the last pipeline run; this module only reads the scorecard and shows it, as a
Rich table for people and as JSON with stable keys (docs/operating.md) for scripts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import duckdb
from rich.table import Table

from flows.warehouse import Connection

SCORECARD = "main.fct_handoff_sla_by_rep"


class SlaNotBuiltError(Exception):
    """No pipeline run has built the SLA marts in this warehouse yet."""


@dataclass(frozen=True)
class SlaRow:
    """One rep's hand-offs in one segment."""

    rep_id: str  # 'unassigned' when a hand-off had no owner
    rep_name: str | None
    segment: str  # 'unknown' when the company size is unknown
    sla_hours: float  # what the segment's agreement gives sales
    handoffs: int
    touched: int
    within_sla: int
    late: int
    still_in_time: int  # not touched, deadline ahead
    past_due: int  # not touched, deadline behind (including tasks since superseded)
    overdue_now: int  # past due and the task still queued or open: what the rep owes
    within_sla_share: float | None  # within_sla / decided hand-offs; None while all are open
    median_hours_to_first_touch: float | None
    p90_hours_to_first_touch: float | None


@dataclass(frozen=True)
class SlaReport:
    measured_at: datetime | None  # the clock of the run that built the scorecard
    rows: tuple[SlaRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured_at": self.measured_at.isoformat() if self.measured_at else None,
            "rows": [asdict(row) for row in self.rows],
        }

    def to_rich(self) -> Table:
        when = f" at {self.measured_at:%Y-%m-%d %H:%M} UTC" if self.measured_at else ""
        table = Table(
            title=f"Hand-off SLA by rep and segment, measured{when}",
            title_justify="left",
            caption="First touch: sales' first outcome on the lead after the hand-off.",
            caption_justify="left",
        )
        for column, justify in (
            ("rep", "left"),
            ("segment", "left"),
            ("SLA h", "right"),
            ("hand-offs", "right"),
            ("median h", "right"),
            ("p90 h", "right"),
            ("within SLA", "right"),
            ("overdue now", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(
                row.rep_name or row.rep_id,
                row.segment,
                f"{row.sla_hours:g}",
                f"{row.handoffs:,}",
                hours(row.median_hours_to_first_touch),
                hours(row.p90_hours_to_first_touch),
                share(row.within_sla_share, row.within_sla, row.handoffs - row.still_in_time),
                f"[red]{row.overdue_now:,}[/red]" if row.overdue_now else "0",
            )
        return table


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def share(value: float | None, met: int, decided: int) -> str:
    return "-" if value is None else f"{value:.0%} ({met:,}/{decided:,})"


def read_sla_report(connection: Connection) -> SlaReport:
    """The scorecard as the last run built it, most overdue first."""
    try:
        records = connection.execute(
            f"""
            select
                owner_rep_id, owner_name, segment, sla_hours, handoff_count, touched_count,
                within_sla_count, late_count, open_count, past_due_count, overdue_count,
                within_sla_share, median_hours_to_first_touch, p90_hours_to_first_touch,
                measured_at
            from {SCORECARD}
            order by overdue_count desc, owner_rep_id, segment
            """
        ).fetchall()
    except duckdb.CatalogException:
        raise SlaNotBuiltError(
            f"{SCORECARD} does not exist yet: no pipeline run has built the SLA marts in this "
            "warehouse. Run `leadflow run` first."
        ) from None
    rows = tuple(
        SlaRow(
            rep_id=rep_id,
            rep_name=rep_name,
            segment=segment,
            sla_hours=float(sla_hours),
            handoffs=int(handoffs),
            touched=int(touched or 0),
            within_sla=int(within or 0),
            late=int(late or 0),
            still_in_time=int(still_open or 0),
            past_due=int(past_due or 0),
            overdue_now=int(overdue or 0),
            within_sla_share=_float(within_share),
            median_hours_to_first_touch=_float(median),
            p90_hours_to_first_touch=_float(p90),
        )
        for (
            rep_id, rep_name, segment, sla_hours, handoffs, touched, within, late, still_open,
            past_due, overdue, within_share, median, p90, _,
        ) in records
    )  # fmt: skip
    return SlaReport(measured_at=records[0][-1] if records else None, rows=rows)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
