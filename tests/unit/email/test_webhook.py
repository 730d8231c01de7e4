"""The event-webhook receiver: what it lands, what it refuses (and then writes nothing)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bench.webhook import EventSigner
from flows.cli import app as cli_app
from flows.email.events import LandingWriter
from flows.email.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureCheck,
    app_from_settings,
    create_app,
    parse_events,
)
from flows.settings import ConfigError, Settings

BATCH = [
    {
        "email": "ana.silva@example.com",
        "timestamp": 1_796_000_000,
        "event": "open",
        "sg_event_id": "evt-1",
        "sg_message_id": "msg-1.filter0001",
        "message_key": "key-1",
    },
    {
        "email": "ana.silva@example.com",
        "timestamp": 1_796_000_060,
        "event": "click",
        "url": "https://leadflow.example/pricing",
        "sg_event_id": "evt-2",
        "sg_message_id": "msg-1.filter0001",
        "message_key": "key-1",
    },
]
BODY = json.dumps(BATCH).encode()
LIMIT = 4096


@pytest.fixture(scope="module")
def signer() -> EventSigner:
    return EventSigner()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing" / "sendgrid"


@pytest.fixture
def client(signer: EventSigner, landing: Path) -> Iterator[TestClient]:
    check = SignatureCheck(signer.public_key, tolerance_seconds=600)
    with TestClient(create_app(check, LandingWriter(landing), LIMIT)) as test_client:
        yield test_client


def landed_lines(landing: Path) -> list[str]:
    return [line for path in landing.glob("*.jsonl") for line in path.read_text().splitlines()]


def test_a_signed_batch_is_answered_and_lands_once(client, signer, landing):
    response = client.post("/sendgrid/events", content=BODY, headers=signer.headers(BODY))

    assert response.status_code == 200
    assert response.json() == {"accepted": 2}
    assert [json.loads(line) for line in landed_lines(landing)] == BATCH


def test_health_check(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def flip_one_byte(body: bytes) -> bytes:
    index = body.index(b"evt-1") + 4
    return body[:index] + b"2" + body[index + 1 :]


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("one byte changed", 403),
        ("stale timestamp", 403),
        ("future timestamp", 403),
        ("no signature", 401),
        ("no timestamp", 401),
        ("signature not base64", 403),
        ("signature not DER", 403),
        ("another key's signature", 403),
        ("timestamp not a number", 403),
    ],
)
def test_a_batch_not_signed_now_by_the_key_is_refused_and_nothing_lands(
    client, signer, landing, case, status
):
    headers = signer.headers(BODY)
    body = BODY
    if case == "one byte changed":
        body = flip_one_byte(BODY)
    elif case == "stale timestamp":
        headers = signer.headers(BODY, timestamp=int(time.time()) - 601)
    elif case == "future timestamp":
        headers = signer.headers(BODY, timestamp=int(time.time()) + 601)
    elif case == "no signature":
        del headers[SIGNATURE_HEADER]
    elif case == "no timestamp":
        del headers[TIMESTAMP_HEADER]
    elif case == "signature not base64":
        headers[SIGNATURE_HEADER] = "not*base64*at*all"
    elif case == "signature not DER":
        headers[SIGNATURE_HEADER] = base64.b64encode(b"garbage bytes").decode()
    elif case == "another key's signature":
        headers = EventSigner().headers(BODY)
    elif case == "timestamp not a number":
        headers[TIMESTAMP_HEADER] = "yesterday"

    response = client.post("/sendgrid/events", content=body, headers=headers)

    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert landed_lines(landing) == []


def test_a_batch_over_the_limit_is_refused_by_its_length(client, signer, landing):
    body = json.dumps([{**BATCH[0], "sg_event_id": f"e{i}"} for i in range(100)]).encode()
    assert len(body) > LIMIT

    response = client.post("/sendgrid/events", content=body, headers=signer.headers(body))

    assert response.status_code == 413
    assert landed_lines(landing) == []


def test_a_batch_over_the_limit_is_refused_by_its_bytes_without_a_length(client, signer, landing):
    body = json.dumps([{**BATCH[0], "sg_event_id": f"e{i}"} for i in range(100)]).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is sent chunked
        yield from (body[i : i + 1000] for i in range(0, len(body), 1000))

    response = client.post("/sendgrid/events", content=chunks(), headers=signer.headers(body))

    assert response.status_code == 413
    assert landed_lines(landing) == []


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "open"}', b"[1, 2]", b'"text"', b"\xff\xfe"]
)
def test_a_signed_body_that_is_not_an_array_of_events_is_refused(client, signer, landing, body):
    response = client.post("/sendgrid/events", content=body, headers=signer.headers(body))

    assert response.status_code == 400
    assert landed_lines(landing) == []


def test_an_empty_batch_is_accepted_and_writes_nothing(client, signer, landing):
    response = client.post("/sendgrid/events", content=b"[]", headers=signer.headers(b"[]"))

    assert response.status_code == 200
    assert landed_lines(landing) == []


def test_parse_events_takes_a_list_of_objects():
    assert parse_events(BODY) == BATCH


def test_without_a_public_key_the_receiver_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY is not set"):
        app_from_settings(Settings(data_dir=tmp_path))


def test_a_key_that_is_not_a_public_key_is_a_configuration_error(tmp_path):
    settings = Settings(data_dir=tmp_path, sendgrid_webhook_public_key="bm90IGEga2V5")
    with pytest.raises(ConfigError, match="LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC"):
        app_from_settings(settings)


def test_a_public_key_that_is_not_an_ec_key_is_a_configuration_error(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    settings = Settings(
        data_dir=tmp_path, sendgrid_webhook_public_key=base64.b64encode(der).decode()
    )
    with pytest.raises(ConfigError, match="not an EC one"):
        app_from_settings(settings)


def test_the_serve_command_without_a_key_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))

    result = CliRunner().invoke(cli_app, ["webhook", "serve"])

    assert result.exit_code == 2
    assert "LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY" in result.output
    assert "Traceback" not in result.output
