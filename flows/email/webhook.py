"""The webhook receiver: SendGrid's signed email events and sales' signed outcomes, landed.

``POST /sendgrid/events`` takes the JSON array SendGrid posts. It answers 2xx only once the
events are on disk (``LandingWriter``: flushed and fsynced), so SendGrid retries whatever was
not landed; the next extract loads the landing files (``flows/email/events.py``). The receiver
never opens the warehouse: DuckDB allows one writer process, and that is the pipeline.

Nothing is written for a request that is unsigned (401), forged, badly signed or stamped
outside the tolerance (403), too large (413), or not a JSON array of events (400).
``GET /healthz`` answers 200 for load balancers and probes.

``POST /sales/outcomes`` (when ``LEADFLOW_SALES_CALLBACK_SECRET`` is set) takes sales outcomes
from a CRM or a form: one JSON object or an array, signed with HMAC-SHA256 over
``<timestamp>.<body>`` with the shared secret (``X-LeadFlow-Signature: sha256=<hex>``,
``X-LeadFlow-Timestamp``), refused like an event batch when unsigned, forged or stale, and
landed the same way for the next extract (``flows/sales/outcomes.py``; docs/operating.md).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.email.events import LandingWriter
from flows.runs import utc_now
from flows.sales.outcomes import LANDING_PREFIX, callback_signature
from flows.settings import ConfigError, Settings

logger = logging.getLogger("leadflow.webhook")

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
PUBLIC_KEY_SETTING = "LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY"
OUTCOME_SIGNATURE_HEADER = "X-LeadFlow-Signature"
OUTCOME_TIMESTAMP_HEADER = "X-LeadFlow-Timestamp"
OUTCOME_SECRET_SETTING = "LEADFLOW_SALES_CALLBACK_SECRET"


@dataclass(frozen=True)
class Rejection:
    """Why a request is refused, with the HTTP status it gets."""

    status: int
    problem: str


class SignatureCheck:
    """SendGrid's ECDSA signature over timestamp + raw body, and a bound on the timestamp's age
    (a captured request cannot be replayed after ``tolerance_seconds``)."""

    def __init__(
        self,
        public_key: str,
        tolerance_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        advice = (
            "paste the verification key exactly as SendGrid shows it (base64, no PEM header lines)"
        )
        try:
            self._webhook = EventWebhook(public_key.strip())
        except (ValueError, TypeError) as error:
            raise ConfigError(
                f"{PUBLIC_KEY_SETTING} is not an EC public key ({error}); {advice}"
            ) from None
        if not isinstance(self._webhook.public_key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"{PUBLIC_KEY_SETTING} is a public key, but not an EC one; {advice}")
        self._tolerance = tolerance_seconds
        self._clock = clock

    def rejection(
        self, body: bytes, signature: str | None, timestamp: str | None
    ) -> Rejection | None:
        if not signature or not timestamp:
            return Rejection(401, f"unsigned: no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        try:
            stamped_at = int(timestamp)
        except ValueError:
            return Rejection(403, f"{TIMESTAMP_HEADER} is not a unix time")
        if abs(self._clock() - stamped_at) > self._tolerance:
            return Rejection(403, "the signature's timestamp is stale or in the future")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(400, "the body is not UTF-8 JSON")
        try:
            valid = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, TypeError, InvalidSignature):
            # The library raises on a signature that is not base64 or not DER.
            valid = False
        return None if valid else Rejection(403, "the signature does not match the body")


class OutcomeSignatureCheck:
    """The shared secret's HMAC-SHA256 over timestamp and raw body, compared in constant time,
    and the same bound on the timestamp's age as SendGrid's events."""

    def __init__(
        self, secret: str, tolerance_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self._tolerance = tolerance_seconds
        self._clock = clock

    def rejection(
        self, body: bytes, signature: str | None, timestamp: str | None
    ) -> Rejection | None:
        if not signature or not timestamp:
            return Rejection(
                401, f"unsigned: no {OUTCOME_SIGNATURE_HEADER} or {OUTCOME_TIMESTAMP_HEADER} header"
            )
        if not timestamp.isdigit():
            return Rejection(403, f"{OUTCOME_TIMESTAMP_HEADER} is not a unix time in seconds")
        if abs(self._clock() - int(timestamp)) > self._tolerance:
            return Rejection(403, "the signature's timestamp is stale or in the future")
        expected = callback_signature(self._secret, timestamp, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return Rejection(403, "the signature does not match the body")
        return None


def parse_outcomes(body: bytes, received_at: datetime) -> list[dict[str, Any]] | Rejection:
    """The outcomes of a callback (one JSON object, or an array of them), each with an
    ``outcome_id``; ``occurred_at`` defaults to when it was received. The rest is checked at
    load, where a bad outcome is quarantined with its reason."""
    try:
        payload = json.loads(body)
    except ValueError:
        return Rejection(400, "the body is not JSON")
    outcomes = payload if isinstance(payload, list) else [payload]
    if not outcomes or not all(isinstance(outcome, dict) for outcome in outcomes):
        return Rejection(400, "the body is not an outcome object or an array of them")
    for number, outcome in enumerate(outcomes, 1):
        outcome_id = outcome.get("outcome_id")
        if not isinstance(outcome_id, str) or not outcome_id.strip():
            return Rejection(
                400, f"outcome {number} has no outcome_id (a string that makes a retry harmless)"
            )
    stamp = received_at.isoformat(sep=" ")
    return [{**outcome, "occurred_at": outcome.get("occurred_at") or stamp} for outcome in outcomes]


@dataclass(frozen=True)
class OutcomeCallback:
    """What ``POST /sales/outcomes`` needs: its signature check and its landing writer."""

    check: OutcomeSignatureCheck
    writer: LandingWriter


def parse_events(body: bytes) -> list[dict[str, Any]] | Rejection:
    """The batch's events, or why it is not a JSON array of event objects."""
    try:
        events = json.loads(body)
    except ValueError:
        return Rejection(400, "the body is not JSON")
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        return Rejection(400, "the body is not a JSON array of event objects")
    return events


async def read_body(request: Request, limit: int) -> bytes | Rejection:
    """The raw body, refusing one over ``limit`` bytes by its Content-Length or its bytes."""
    too_large = Rejection(413, f"the batch is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return too_large
        chunks.append(chunk)
    return b"".join(chunks)


def refused(request: Request, rejection: Rejection, what: str) -> JSONResponse:
    client = request.client.host if request.client else "unknown"
    logger.warning("refused %s from %s: %s", what, client, rejection.problem)
    return JSONResponse({"error": rejection.problem}, status_code=rejection.status)


def create_app(
    check: SignatureCheck | None,
    writer: LandingWriter | None,
    max_body_bytes: int,
    outcomes: OutcomeCallback | None = None,
) -> Starlette:
    """The receiver: SendGrid's route when given its check and writer, the sales-outcome
    route when given ``outcomes``."""

    async def receive_events(request: Request) -> JSONResponse:
        assert check is not None and writer is not None  # the route exists only with them
        body = await read_body(request, max_body_bytes)
        outcome: list[dict[str, Any]] | Rejection = (
            body
            if isinstance(body, Rejection)
            else check.rejection(
                body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
            )
            or parse_events(body)
        )
        if isinstance(outcome, Rejection):
            return refused(request, outcome, "a batch")
        if outcome:
            # File I/O with fsync: off the event loop, so other requests are read meanwhile.
            await run_in_threadpool(writer.append, outcome)
        return JSONResponse({"accepted": len(outcome)})

    async def receive_outcomes(request: Request) -> JSONResponse:
        assert outcomes is not None  # the route exists only with it
        body = await read_body(request, max_body_bytes)
        landed: list[dict[str, Any]] | Rejection = (
            body
            if isinstance(body, Rejection)
            else outcomes.check.rejection(
                body,
                request.headers.get(OUTCOME_SIGNATURE_HEADER),
                request.headers.get(OUTCOME_TIMESTAMP_HEADER),
            )
            or parse_outcomes(body, utc_now())
        )
        if isinstance(landed, Rejection):
            return refused(request, landed, "sales outcomes")
        await run_in_threadpool(outcomes.writer.append, landed)
        return JSONResponse({"accepted": len(landed)})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for landing in (writer, outcomes.writer if outcomes else None):
            if landing is not None:
                landing.close()

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if check is not None and writer is not None:
        routes.append(Route("/sendgrid/events", receive_events, methods=["POST"]))
    if outcomes is not None:
        routes.append(Route("/sales/outcomes", receive_outcomes, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_settings(settings: Settings) -> Starlette:
    """The receiver as configured: the SendGrid route with a verification key, the sales
    outcome route with a shared secret; refuses to exist with neither."""
    secret = settings.sales_callback_secret
    if not settings.sendgrid_webhook_public_key and secret is None:
        raise ConfigError(
            f"{PUBLIC_KEY_SETTING} is not set, and the receiver accepts signed events only. "
            "Turn on the Signed Event Webhook in SendGrid (Settings > Mail Settings > Event "
            "Webhook), copy its verification key and export it as "
            f"{PUBLIC_KEY_SETTING} (docs/operating.md); to receive sales outcomes alone, set "
            f"{OUTCOME_SECRET_SETTING} instead"
        )
    tolerance = settings.webhook_tolerance_seconds
    check, writer = None, None
    if settings.sendgrid_webhook_public_key:
        check = SignatureCheck(settings.sendgrid_webhook_public_key, tolerance)
        writer = LandingWriter(settings.sendgrid_landing_dir)
    outcomes = None
    if secret is not None:
        if len(secret.get_secret_value()) < 16:
            raise ConfigError(
                f"{OUTCOME_SECRET_SETTING} is shorter than 16 characters; use a long random "
                "one, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        outcomes = OutcomeCallback(
            OutcomeSignatureCheck(secret.get_secret_value(), tolerance),
            LandingWriter(settings.sales_outcomes_landing_dir, prefix=LANDING_PREFIX),
        )
    return create_app(check, writer, settings.webhook_max_body_bytes, outcomes)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the receiver in uvicorn until interrupted."""
    import uvicorn

    app = app_from_settings(settings)
    # Refusals are logged above; uvicorn's line per request would only repeat the 2xx ones.
    uvicorn.run(app, host=host, port=port, access_log=False)
