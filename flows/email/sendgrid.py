"""Send nurture batches through SendGrid's v3 mail/send API with the official ``sendgrid`` client.

One ``OutgoingBatch`` becomes one request: the rendered step once (text/plain, then text/html,
with substitution tags) and a personalization per recipient (address, subject, substitutions,
custom args carrying the ledger's ``message_key``, one-click unsubscribe headers). SendGrid
answers 202 with an ``X-Message-Id`` header; that id is every recipient's
``provider_message_id``, and SendGrid's events carry it as ``sg_message_id`` with a suffix
after a dot (``<X-Message-Id>.filter…``), which is how events without custom args (bounces,
spam reports) find their send.

Faults are handled here, at the network boundary: a 429 waits as SendGrid says (``Retry-After``
or ``X-RateLimit-Reset``) up to a cap; 5xx answers and lost connections are retried with
exponential backoff and jitter for a bounded time; past either bound, or on a 4xx SendGrid
explains, the batch comes back ``failed`` with the reason and the next run tries it again. A
401/403 raises ``EmailProviderError``: the key is wrong and no batch can go.

SendGrid has no idempotency key, and it cannot say afterwards whether it has a message
(``was_delivered`` is None): the ledger and SendGrid's events settle a send, never a re-send.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Protocol

from pydantic import SecretStr
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import ValidateApiKey
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from flows.email.message import EmailProviderError, OutgoingBatch, SendResult

DEFAULT_HOST = "https://api.sendgrid.com"
# SendGrid's limits per mail/send request.
MAX_PERSONALIZATIONS = 1000
# SG.<22>.<43>, URL-safe base64: 69 characters in all.
API_KEY_PATTERN = re.compile(r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
SEND_TIMEOUT_SECONDS = 60.0
CHECK_TIMEOUT_SECONDS = 10.0
# What a connection that broke or never answered raises from urllib (URLError, timeouts and
# resets are OSErrors; a reply cut short is an HTTPException).
CONNECTION_ERRORS = (OSError, http.client.HTTPException)
# The library's own refusal of content that looks like an API key (its Content helper runs it).
_API_KEY_CHECK = ValidateApiKey()

logger = logging.getLogger(__name__)


class _WithoutRequestHeaders(logging.Filter):
    """python_http_client logs each request's headers, the API key among them, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("HEADERS")


logging.getLogger("python_http_client.client").addFilter(_WithoutRequestHeaders())


class HttpResponse(Protocol):
    """The part of python_http_client's ``Response`` the sender reads."""

    @property
    def headers(self) -> Message: ...


class BatchNotSent(Exception):
    """SendGrid did not take the batch; the message says why. The next run tries it again."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long one batch may wait for SendGrid (``LEADFLOW_SENDGRID_*`` settings)."""

    max_wait_seconds: float = 60.0  # the longest single wait a 429 may ask for
    retry_seconds: float = 120.0  # the whole time a batch may spend on retries
    first_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0


def is_api_key(key: str) -> bool:
    return API_KEY_PATTERN.fullmatch(key) is not None


def rate_limit_wait(headers: Message | None, now: float) -> float | None:
    """Seconds a 429 asks for: ``Retry-After`` (seconds or an HTTP date), else
    ``X-RateLimit-Reset`` (epoch seconds, SendGrid's own header); None when it says neither."""
    if headers is None:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


def backoff_seconds(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter: between half and all of first * 2^attempt (capped),
    so senders that failed together do not retry together."""
    ceiling = min(policy.max_backoff_seconds, policy.first_backoff_seconds * 2**attempt)
    return rng.uniform(ceiling / 2, ceiling)


def provider_errors(error: HTTPError) -> str:
    """SendGrid's explanation of an error answer: its ``errors[].message`` (and field)."""
    try:
        errors = json.loads(error.body)["errors"]
        messages = [
            f"{item['message']}" + (f" (field {item['field']})" if item.get("field") else "")
            for item in errors
            if item.get("message")
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        messages = []
    return "; ".join(messages) or f"{error.status_code} {error.reason}"


def post_with_retries(
    post: Callable[[], HttpResponse],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
    rng: random.Random | None = None,
) -> HttpResponse:
    """Call ``post`` until SendGrid accepts the request, within the policy's bounds.

    Raises ``BatchNotSent`` when SendGrid refuses the request (4xx) or the bounds are reached,
    and ``EmailProviderError`` on 401/403.
    """
    rng = rng or random.Random()
    started = clock()
    attempt = 0
    while True:
        try:
            return post()
        except HTTPError as error:
            status = error.status_code
            if status in (401, 403):
                # Also the answer to a from address that is no verified sender identity:
                # every batch has the same sender, so no batch can go either way.
                raise EmailProviderError(
                    f"SendGrid refused the request ({status}: {provider_errors(error)}): check "
                    "SENDGRID_API_KEY (revoked, mistyped, without the Mail Send permission) "
                    "and that LEADFLOW_EMAIL_FROM is a verified sender in SendGrid"
                ) from None
            if status == 429:
                asked = rate_limit_wait(error.headers, now())
                if asked is not None and asked > policy.max_wait_seconds:
                    raise BatchNotSent(
                        f"SendGrid rate limit: asked to wait {asked:.0f} s, more than "
                        f"LEADFLOW_SENDGRID_MAX_WAIT_SECONDS={policy.max_wait_seconds:g}; the "
                        "batch is tried again on the next run"
                    ) from None
                # "Now" (0, or a reset already past) backs off instead of hammering.
                wait = asked or backoff_seconds(attempt, policy, rng)
                problem = "SendGrid rate limit (429)"
            elif status >= 500:
                wait = backoff_seconds(attempt, policy, rng)
                problem = f"SendGrid answered {status} ({provider_errors(error)})"
            else:
                raise BatchNotSent(
                    f"SendGrid refused the batch ({status}): {provider_errors(error)}"
                ) from None
        except CONNECTION_ERRORS as error:
            wait = backoff_seconds(attempt, policy, rng)
            problem = f"no answer from SendGrid ({type(error).__name__}: {error})"
        elapsed = clock() - started
        if elapsed + wait > policy.retry_seconds:
            raise BatchNotSent(
                f"{problem}; gave up after {attempt + 1} attempts in {elapsed:.0f} s "
                f"(LEADFLOW_SENDGRID_RETRY_SECONDS={policy.retry_seconds:g}); the batch is "
                "tried again on the next run"
            )
        logger.warning("%s; retrying in %.1f s", problem, wait)
        sleep(wait)
        attempt += 1


def batch_problem(batch: OutgoingBatch) -> str | None:
    """Why SendGrid must not be sent this batch, or None. The batcher guarantees size and
    distinct addresses; this refuses rather than trusts, as a refused request costs a run."""
    where = f"track {batch.track} step {batch.step}"
    if batch.unsubscribe_group is None:
        return (
            f"{where}: every email sent through SendGrid needs an unsubscribe group; add "
            f"`unsubscribe_group: <group id>` to templates/tracks/{batch.track}/track.yml "
            "(the id from SendGrid > Suppressions > Unsubscribe Groups)"
        )
    if not 1 <= len(batch.recipients) <= MAX_PERSONALIZATIONS:
        return (
            f"{where}: a batch holds 1 to {MAX_PERSONALIZATIONS} recipients, this one "
            f"{len(batch.recipients)}"
        )
    seen: set[str] = set()
    for recipient in batch.recipients:
        address = recipient.to_email.strip().lower()
        if address in seen:
            return f"{where}: {recipient.to_email} is in the batch twice"
        seen.add(address)
    return None


def _address(value: str) -> dict[str, str]:
    """``Name <address>`` or a bare address as SendGrid's email object (no name when none)."""
    name, address = parseaddr(value)
    return {"name": name, "email": address} if name else {"email": address}


def mail_request(batch: OutgoingBatch, *, sandbox: bool = False) -> dict[str, Any]:
    """The v3 mail/send request body for a batch, as the ``sendgrid`` helpers' ``Mail.get()``
    writes it (a unit test holds the two equal), built as a dict: the helper objects cost some
    185 µs per personalization, three minutes for a million emails.

    Raises ``ApiKeyIncludedException`` when the content begins with what looks like an API key,
    the check the library's ``Content`` makes."""
    body: dict[str, Any] = {"from": _address(batch.from_email)}
    body["personalizations"] = [
        {
            "to": [
                {"name": r.to_name, "email": r.to_email} if r.to_name else {"email": r.to_email}
            ],
            **({"subject": r.subject} if r.subject else {}),
            "headers": {
                "List-Unsubscribe": f"<{r.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            **({"substitutions": dict(r.substitutions)} if r.substitutions else {}),
            # The ledger's key wins over a custom arg of the same name.
            "custom_args": {
                **{key: str(value) for key, value in r.custom_args.items()},
                "message_key": r.message_key,
                "lead_id": r.lead_id,
            },
        }
        for r in batch.recipients
    ]
    # text/plain first, as SendGrid requires.
    body["content"] = [
        {"type": "text/plain", "value": batch.text},
        {"type": "text/html", "value": batch.html},
    ]
    _API_KEY_CHECK.validate_message_dict(body)
    if batch.categories:
        body["categories"] = list(batch.categories)
    # Request-level custom args reach every personalization's events.
    body["custom_args"] = {"track": batch.track, "step": str(batch.step)}
    if batch.is_test:
        body["custom_args"]["is_test"] = "true"
    if batch.unsubscribe_group is not None:
        body["asm"] = {"group_id": batch.unsubscribe_group}
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if batch.reply_to:
        body["reply_to"] = _address(batch.reply_to)
    return body


class SendGridSender:
    """The ``EmailSender`` for SendGrid; ``provider`` is ``sendgrid-sandbox`` in sandbox mode,
    so the ledger and the run summary show that nothing was delivered."""

    def __init__(
        self,
        api_key: SecretStr,
        *,
        host: str = DEFAULT_HOST,
        sandbox: bool = False,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        throttle: Callable[[], None] = lambda: None,
    ) -> None:
        self.provider = "sendgrid-sandbox" if sandbox else "sendgrid"
        self.host = host.rstrip("/")
        self.sandbox = sandbox
        self.policy = policy or RetryPolicy()
        self._api_key = api_key
        self._client = SendGridAPIClient(api_key.get_secret_value(), host=self.host)
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()
        # Called before every request, retries included: the rate limit shared by all runs
        # (flows/limits.py) waits here.
        self._throttle = throttle

    def check(self) -> None:
        key = self._api_key.get_secret_value()
        if not is_api_key(key):
            raise EmailProviderError(
                "SENDGRID_API_KEY is not a SendGrid API key: those look like "
                f"SG.<22 characters>.<43 characters> (69 in all; this one has {len(key)}). "
                "Copy the whole key from SendGrid > Settings > API Keys, or unset "
                "SENDGRID_API_KEY to write the emails to the local outbox"
            )
        try:
            response = self._client.client.scopes.get(timeout=CHECK_TIMEOUT_SECONDS)
        except HTTPError as error:
            if error.status_code in (401, 403):
                raise EmailProviderError(
                    f"SendGrid at {self.host} refused SENDGRID_API_KEY ({error.status_code}: "
                    f"{provider_errors(error)}): the key was revoked or mistyped; create one "
                    "under Settings > API Keys with the Mail Send permission"
                ) from None
            raise EmailProviderError(
                f"{self.host} answered {error.status_code} to GET /v3/scopes: is "
                "LEADFLOW_SENDGRID_HOST SendGrid's API address? Use https://api.sendgrid.com "
                "(the default) or https://api.eu.sendgrid.com for EU subusers"
            ) from None
        except CONNECTION_ERRORS as error:
            raise EmailProviderError(
                f"LEADFLOW_SENDGRID_HOST={self.host} does not answer ({error}): check the "
                "address and the network, or unset LEADFLOW_SENDGRID_HOST to use "
                f"{DEFAULT_HOST}"
            ) from None
        try:
            scopes = json.loads(response.body)["scopes"]
        except (ValueError, TypeError, KeyError):
            scopes = []
        if "mail.send" not in scopes:
            raise EmailProviderError(
                "SENDGRID_API_KEY has no Mail Send permission: give the key Mail Send access "
                "in SendGrid > Settings > API Keys, or create a Restricted Access key with it"
            )

    def send(self, batch: OutgoingBatch) -> list[SendResult]:
        try:
            message_id = self._deliver(batch)
        except BatchNotSent as refused:
            logger.error("%d emails not sent: %s", len(batch.recipients), refused)
            return [
                SendResult(recipient.message_key, "failed", None, str(refused))
                for recipient in batch.recipients
            ]
        return [
            SendResult(recipient.message_key, "sent", message_id, None)
            for recipient in batch.recipients
        ]

    def _post(self, body: dict[str, Any]) -> Any:
        self._throttle()
        return self._client.client.mail.send.post(request_body=body, timeout=SEND_TIMEOUT_SECONDS)

    def _deliver(self, batch: OutgoingBatch) -> str | None:
        """Send the batch in one request; its ``X-Message-Id``, or raise ``BatchNotSent``."""
        problem = batch_problem(batch)
        if problem is not None:
            raise BatchNotSent(problem)
        try:
            body = mail_request(batch, sandbox=self.sandbox)
        except ApiKeyIncludedException:
            raise BatchNotSent(
                f"track {batch.track} step {batch.step}: the email begins with what looks like "
                "a SendGrid API key (SG....), which the sendgrid client refuses to send; take it "
                "out of the template"
            ) from None
        response = post_with_retries(
            lambda: self._post(body),
            self.policy,
            sleep=self._sleep,
            clock=self._clock,
            now=self._now,
            rng=self._rng,
        )
        message_id: str | None = response.headers.get("X-Message-Id")
        return message_id

    def was_delivered(self, message_key: str) -> bool | None:
        # SendGrid cannot be asked about one message without the Email Activity add-on; its
        # events (flows/email webhook) settle a pending send instead.
        return None
