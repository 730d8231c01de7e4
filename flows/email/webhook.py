"""The SendGrid Event Webhook receiver: verify each signed batch, land it, then answer.

``POST /sendgrid/events`` takes the JSON array SendGrid posts. It answers 2xx only once the
events are on disk (``LandingWriter``: flushed and fsynced), so SendGrid retries whatever was
not landed; the next extract loads the landing files (``flows/email/events.py``). The receiver
never opens the warehouse: DuckDB allows one writer process, and that is the pipeline.

Nothing is written for a request that is unsigned (401), forged, badly signed or stamped
outside the tolerance (403), too large (413), or not a JSON array of events (400).
``GET /healthz`` answers 200 for load balancers and probes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from flows.settings import ConfigError, Settings

logger = logging.getLogger("leadflow.webhook")

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
PUBLIC_KEY_SETTING = "LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY"


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


def create_app(check: SignatureCheck, writer: LandingWriter, max_body_bytes: int) -> Starlette:
    async def receive_events(request: Request) -> JSONResponse:
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
            client = request.client.host if request.client else "unknown"
            logger.warning("refused a batch from %s: %s", client, outcome.problem)
            return JSONResponse({"error": outcome.problem}, status_code=outcome.status)
        if outcome:
            # File I/O with fsync: off the event loop, so other requests are read meanwhile.
            await run_in_threadpool(writer.append, outcome)
        return JSONResponse({"accepted": len(outcome)})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        writer.close()

    return Starlette(
        routes=[
            Route("/sendgrid/events", receive_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def app_from_settings(settings: Settings) -> Starlette:
    """The receiver as configured; refuses to exist without a verification key."""
    if not settings.sendgrid_webhook_public_key:
        raise ConfigError(
            f"{PUBLIC_KEY_SETTING} is not set, and the receiver accepts signed events only. "
            "Turn on the Signed Event Webhook in SendGrid (Settings > Mail Settings > Event "
            "Webhook), copy its verification key and export it as "
            f"{PUBLIC_KEY_SETTING} (docs/operating.md)"
        )
    check = SignatureCheck(settings.sendgrid_webhook_public_key, settings.webhook_tolerance_seconds)
    writer = LandingWriter(settings.sendgrid_landing_dir)
    return create_app(check, writer, settings.webhook_max_body_bytes)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the receiver in uvicorn until interrupted."""
    import uvicorn

    app = app_from_settings(settings)
    # Refusals are logged above; uvicorn's line per request would only repeat the 2xx ones.
    uvicorn.run(app, host=host, port=port, access_log=False)
