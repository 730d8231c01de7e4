from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from flows.dbt_runner import describe_failures, run_clock_environment


def node_result(name: str, status: str, message: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        status=SimpleNamespace(value=status),
        message=message,
        node=SimpleNamespace(resource_type="test", name=name),
    )


def test_only_failed_nodes_are_described_on_one_line_each():
    results = SimpleNamespace(
        results=[
            node_result("unique_dim_leads_lead_id", "pass"),
            node_result(
                "not_null_dim_leads_email", "fail", "Got 3 results,\n configured to fail if != 0"
            ),
            node_result("dim_leads", "error", "Binder Error: column x not found"),
        ]
    )
    assert describe_failures(results) == [
        "test not_null_dim_leads_email: Got 3 results, configured to fail if != 0",
        "test dim_leads: Binder Error: column x not found",
    ]


def test_no_results_means_nothing_to_describe():
    assert describe_failures(None) == []


def test_the_run_clock_reaches_dbt_in_the_environment():
    assert run_clock_environment(datetime(2026, 11, 22, 9, 30)) == {
        "LEADFLOW_AS_OF": "2026-11-22 09:30:00"
    }
