from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

from flows.dbt_runner import build_args, describe_failures


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


def test_the_run_clock_reaches_dbt_as_a_var():
    args = build_args(datetime(2026, 11, 22, 9, 30))
    assert args[0] == "build"
    assert json.loads(args[args.index("--vars") + 1]) == {"as_of": "2026-11-22 09:30:00"}
