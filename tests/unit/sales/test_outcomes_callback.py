"""POST /sales/outcomes: signed with the shared secret, landed durably, refused with no write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from flows.email.events import LandingWriter
from flows.email.webhook import (
    OutcomeCallback,
    OutcomeSignatureCheck,
    app_from_settings,
    create_app,
)
from flows.sales.outcomes import LANDING_PREFIX, callback_signature
from flows.settings import ConfigError, Settings

SECRET = "a-long-shared-secret-for-tests"
OUTCOMES = [
    {"outcome_id": "crm-1", "task_id": "t1", "outcome": "rejected", "reason": "not_ready"},
    {"outcome_id": "crm-2", "lead_id": "L2", "outcome": "won", "amount": 1200.5,
     "occurred_at": "2026-11-21T10:00:00"},
]  # fmt: skip
BODY = json.dumps(OUTCOMES).encode()


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    return {
        "X-LeadFlow-Signature": callback_signature(secret, timestamp, body),
        "X-LeadFlow-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing" / "sales_outcomes"


@pytest.fixture
def client(landing: Path) -> Iterator[TestClient]:
    outcomes = OutcomeCallback(
        OutcomeSignatureCheck(SECRET, tolerance_seconds=600),
        LandingWriter(landing, prefix=LANDING_PREFIX),
    )
    with TestClient(create_app(None, None, 4096, outcomes)) as test_client:
        yield test_client


def landed(landing: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(landing.glob("outcomes-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_signed_outcomes_land_with_the_receipt_time_where_they_have_none(client, landing):
    response = client.post("/sales/outcomes", content=BODY, headers=signed(BODY))

    assert (response.status_code, response.json()) == (200, {"accepted": 2})
    first, second = landed(landing)
    assert first["outcome_id"] == "crm-1" and first["occurred_at"]  # stamped on receipt
    assert second == OUTCOMES[1]


def test_one_outcome_object_is_accepted_too(client, landing):
    body = json.dumps(OUTCOMES[1]).encode()
    assert client.post("/sales/outcomes", content=body, headers=signed(body)).status_code == 200
    assert landed(landing) == [OUTCOMES[1]]


# Headers made when the test runs, not when it is collected: a suite runs for longer than the
# timestamp tolerance, and a signature made at collection would be refused as stale.
@pytest.mark.parametrize(
    ("headers", "status", "problem"),
    [
        (lambda: {}, 401, "unsigned"),
        (lambda: signed(BODY, secret="not-the-shared-secret"), 403, "does not match"),
        (lambda: signed(BODY + b" "), 403, "does not match"),  # signed another body
        (lambda: signed(BODY, at=time.time() - 601), 403, "stale"),
        (lambda: {**signed(BODY), "X-LeadFlow-Timestamp": "yesterday"}, 403, "not a unix time"),
        (lambda: {**signed(BODY), "X-LeadFlow-Signature": "sha256=zz"}, 403, "does not match"),
    ],
    ids=["unsigned", "forged", "tampered", "stale", "bad-timestamp", "garbage-signature"],
)
def test_unsigned_forged_or_stale_outcomes_are_refused_and_nothing_lands(
    client, landing, headers, status, problem
):
    response = client.post("/sales/outcomes", content=BODY, headers=headers())

    assert response.status_code == status
    assert problem in response.json()["error"]
    assert landed(landing) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not an outcome object"),
        (b"[1, 2]", "not an outcome object"),
        (json.dumps([{"outcome": "won"}]).encode(), "outcome 1 has no outcome_id"),
        (json.dumps({"outcome_id": " ", "outcome": "won"}).encode(), "has no outcome_id"),
    ],
)
def test_a_signed_body_that_is_not_outcomes_is_refused(client, landing, body, problem):
    response = client.post("/sales/outcomes", content=body, headers=signed(body))

    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert landed(landing) == []


def test_a_body_over_the_limit_is_refused(client, landing):
    body = json.dumps([{"outcome_id": f"o{n}", "note": "x" * 100} for n in range(40)]).encode()
    assert client.post("/sales/outcomes", content=body, headers=signed(body)).status_code == 413
    assert landed(landing) == []


def test_without_a_sendgrid_key_the_receiver_serves_outcomes_alone(tmp_path):
    settings = Settings(data_dir=tmp_path, sales_callback_secret=SecretStr(SECRET))
    with TestClient(app_from_settings(settings)) as test_client:
        assert test_client.post("/sendgrid/events", content=b"[]").status_code in (404, 405)
        response = test_client.post("/sales/outcomes", content=BODY, headers=signed(BODY))
        assert response.status_code == 200
    assert len(landed(settings.sales_outcomes_landing_dir)) == 2


def test_a_short_secret_is_a_configuration_error(tmp_path):
    settings = Settings(data_dir=tmp_path, sales_callback_secret=SecretStr("short"))
    with pytest.raises(ConfigError, match="LEADFLOW_SALES_CALLBACK_SECRET is shorter than 16"):
        app_from_settings(settings)


def test_with_neither_key_nor_secret_the_receiver_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="set LEADFLOW_SALES_CALLBACK_SECRET instead"):
        app_from_settings(Settings(data_dir=tmp_path))
