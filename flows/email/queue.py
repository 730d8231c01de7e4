"""What the nurture queue holds back, for the run summary."""

from __future__ import annotations

from flows.warehouse import Connection


def count_deferred_for_quiet_hours(connection: Connection) -> int:
    """Steps due now but outside the send window in their lead's time zone (dbt var
    ``nurture_send_window``): they stay queued and go at the first run inside the window."""
    row = connection.execute(
        "select count(*) from main.fct_nurture_queue where is_deferred_quiet_hours"
    ).fetchone()
    return int(row[0]) if row else 0
