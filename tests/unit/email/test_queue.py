"""The queue counts the run summary reports."""

from __future__ import annotations

from flows.email.queue import count_deferred_for_quiet_hours


def test_deferred_steps_are_counted(warehouse):
    warehouse.execute(
        "create table main.fct_nurture_queue as select * from "
        "(values (true), (false), (true), (null)) as t(is_deferred_quiet_hours)"
    )
    assert count_deferred_for_quiet_hours(warehouse) == 2
