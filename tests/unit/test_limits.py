"""The provider rate limit as plain code: outside a flow run it needs no Prefect server."""

from __future__ import annotations

import pytest

import flows.limits as limits
from flows.settings import load_settings


def test_the_provider_rate_limit_outside_a_flow_run_asks_no_server(monkeypatch):
    def no_server(settings):
        pytest.fail("outside a flow run no Prefect server may be asked (or started)")

    monkeypatch.setattr(limits, "ensure_concurrency_limits", no_server)
    throttle = limits.email_provider_rate_limit(load_settings())
    assert throttle() is None
