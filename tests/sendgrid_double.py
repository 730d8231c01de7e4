"""A local stand-in for SendGrid's v3 API, for tests: a real HTTP server on 127.0.0.1.

It answers ``POST /v3/mail/send`` as SendGrid does: a bearer key that looks like a SendGrid
key (else 401), and the request checks SendGrid makes (400 with an ``errors[]`` body): a from
address, content, a subject for every personalization, at most 1,000 personalizations and
1,000 recipients, no address twice, custom args under 10,000 bytes per personalization. An
accepted request is recorded (in order, thread-safe) and answered 202 with an ``X-Message-Id``
(200 without one in sandbox mode, which delivers nothing). ``GET /v3/scopes`` lists the key's
scopes, which ``SendGridSender.check`` reads.

Faults are scripted for the next N requests or a seeded fraction of them: 429 with
``Retry-After``/``X-RateLimit-Reset``, a 5xx, a 400, or a connection closed without an answer.

In a test: ``with SendGridDouble() as double: SendGridSender(key, host=double.url)``. As a
process of its own (so a test can SIGKILL the sender and still count what arrived)::

    python -m tests.sendgrid_double --port 0 --record accepted.jsonl [--fault 500 --times 2]

prints ``listening on http://127.0.0.1:<port>`` once it accepts requests, and writes each
accepted request as a JSON line (fsynced before the answer); ``read_record`` reads it back.
With ``--count-only`` instead of ``--record`` (the send benchmark's million emails) it keeps
no body and writes nothing; ``GET /double/stats`` answers the accepted requests and
personalizations and the double's CPU seconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"
# Not SendGrid's: what the double has taken, for a benchmark that runs it as a process.
STATS_PATH = "/double/stats"


def sendgrid_errors(*messages: tuple[str, str | None]) -> dict[str, Any]:
    """An error body as SendGrid writes it: ``{"errors": [{"message", "field", "help"}]}``."""
    return {
        "errors": [
            {"message": message, "field": where, "help": None} for message, where in messages
        ]
    }


@dataclass(frozen=True)
class Fault:
    """An answer the double gives instead of accepting: ``status`` None drops the connection."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = ""

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1, reset_at: float | None = None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        if reset_at is not None:
            headers["X-RateLimit-Reset"] = f"{reset_at:.0f}"
        return cls(429, headers, "too many requests")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status, {}, "Internal server error")

    @classmethod
    def bad_request(cls, message: str = "Invalid request") -> Fault:
        return cls(400, {}, message)

    @classmethod
    def dropped(cls) -> Fault:
        return cls(None)


@dataclass(frozen=True)
class AcceptedRequest:
    message_id: str | None
    body: dict[str, Any]


def _custom_args_too_big(args: Mapping[str, Any]) -> bool:
    """Whether the custom args, as JSON, reach SendGrid's limit. JSON writes a character in at
    most 12 bytes (a surrogate pair as two ``\\uXXXX``) and a pair with at most 8 more: when
    that bound is under the limit, the exact size (a ``json.dumps`` per personalization, half
    the double's time at 1,000 of them) need not be computed."""
    if all(isinstance(key, str) and isinstance(value, str) for key, value in args.items()):
        bound = 2 + sum(12 * (len(key) + len(value)) + 8 for key, value in args.items())
        if bound < MAX_CUSTOM_ARGS_BYTES:
            return False
    return len(json.dumps(args).encode()) >= MAX_CUSTOM_ARGS_BYTES


def validate_mail_send(body: Any) -> list[tuple[str, str | None]]:
    """The (message, field) errors SendGrid answers 400 with; empty when it would accept.

    One pass over the personalizations: the double must keep up with a sender posting 1,000
    of them per request (bench/send.py's ``sendgrid`` probe)."""
    if not isinstance(body, dict):
        return [("Bad Request", None)]
    errors: list[tuple[str, str | None]] = []
    sender = body.get("from")
    if not (isinstance(sender, dict) and sender.get("email")):
        errors.append(
            (
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from",
            )
        )
    content = body.get("content")
    if not (isinstance(content, list) and content) or not all(
        isinstance(part, dict) and part.get("type") and part.get("value") for part in content
    ):
        errors.append(
            (
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content",
            )
        )
    elif any(part["type"] == "text/plain" for part in content[1:]):
        errors.append(
            ("If present, text/plain content must be first, followed by text/html.", "content")
        )
    personalizations = body.get("personalizations")
    if not (isinstance(personalizations, list) and personalizations):
        errors.append(
            (
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
            )
        )
        return errors
    if len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            (
                f"The personalizations field must have at most {MAX_PERSONALIZATIONS} items.",
                "personalizations",
            )
        )
    each: list[tuple[str, str | None]] = []  # after the request-wide count, as SendGrid lists
    recipients = 0
    seen: set[str] = set()
    request_args = body.get("custom_args") or {}
    has_subject = bool(body.get("subject"))
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            each.append(("A personalization must be an object.", where))
            continue
        if not personalization.get("to"):
            each.append(
                ("The to array is required for all personalization objects.", f"{where}.to")
            )
        for kind in ("to", "cc", "bcc"):
            for recipient in personalization.get(kind) or ():
                recipients += 1
                address = str(recipient.get("email", ""))
                if address.lower() in seen:
                    each.append(
                        (
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{address}] in the {where}.{kind} field.",
                            f"{where}.{kind}",
                        )
                    )
                seen.add(address.lower())
        if not (has_subject or personalization.get("subject")):
            each.append(
                (
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined or if every personalization has a subject "
                    "defined.",
                    "subject",
                )
            )
        if _custom_args_too_big({**request_args, **(personalization.get("custom_args") or {})}):
            each.append(
                (
                    f"The custom_args of a personalization must be under {MAX_CUSTOM_ARGS_BYTES} "
                    "bytes.",
                    f"{where}.custom_args",
                )
            )
    if recipients > MAX_RECIPIENTS:
        errors.append(
            (
                f"The total number of recipients must be less than or equal to {MAX_RECIPIENTS}.",
                "personalizations",
            )
        )
    return errors + each


def accepted_messages(requests: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(message_key, to address) for every recipient of every accepted request, in order."""
    messages = []
    for body in requests:
        for personalization in body["personalizations"]:
            args = {**(body.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
            messages += [(args.get("message_key", ""), to["email"]) for to in personalization["to"]]
    return messages


def read_record(path: Path) -> list[AcceptedRequest]:
    """The accepted requests a double running as a process wrote to ``--record``."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [AcceptedRequest(**json.loads(line)) for line in lines if line.strip()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: SendGridDouble


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the double's record, not its access log."""

    def do_GET(self) -> None:
        double = self.server.double
        if self.path == STATS_PATH:
            self._answer(200, double.stats())
        elif self.path != "/v3/scopes":
            self._answer(404, sendgrid_errors(("not found", None)))
        elif not double.authorized(self.headers.get("Authorization", "")):
            self._answer(401, sendgrid_errors((INVALID_GRANT, None)))
        else:
            self._answer(200, {"scopes": list(double.scopes)})

    def do_POST(self) -> None:
        double = self.server.double
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v3/mail/send":
            self._answer(404, sendgrid_errors(("not found", None)))
            return
        if not double.authorized(self.headers.get("Authorization", "")):
            self._answer(401, sendgrid_errors((INVALID_GRANT, None)))
            return
        fault = double.next_fault()
        if fault is not None:
            if fault.status is None:
                self.close_connection = True  # no status line: the client sees the line drop
                return
            self._answer(fault.status, sendgrid_errors((fault.message, None)), fault.headers)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        errors = validate_mail_send(body)
        if errors:
            self._answer(400, sendgrid_errors(*errors))
            return
        sandbox = bool(((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"))
        time.sleep(double.latency_s)
        message_id = double.accept(body, sandbox=sandbox)
        if sandbox:
            self._answer(200, None)
        else:
            self._answer(202, None, {"X-Message-Id": message_id or ""})

    def _answer(
        self, status: int, body: dict[str, Any] | None, headers: Mapping[str, str] | None = None
    ) -> None:
        content = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if content:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class SendGridDouble:
    """The double as a server in a thread of this process; a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        scopes: Sequence[str] = ("mail.send",),
        record_path: Path | None = None,
        seed: int = 0,
        count_only: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        self.api_key = api_key  # when set, only this key is accepted
        self.scopes = tuple(scopes)
        self.record_path = record_path
        # Count what is accepted, keep no body (and write no record): a benchmark's million
        # emails would hold gigabytes.
        self.count_only = count_only
        # How long an accepted request takes to answer: a slow provider, so runs overlap.
        self.latency_s = latency_s
        self.attempts = 0  # mail/send requests received with a valid key, faults included
        self.accepted_requests = 0
        self.accepted_personalizations = 0
        self._accepted: list[AcceptedRequest] = []
        self._faults: list[Fault] = []  # for the next requests, in order
        self._fraction: tuple[Fault, float] | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.double = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SendGridDouble:
        self._thread.start()
        return self

    def serve(self) -> None:
        """Serve in this thread until interrupted (the double as a process)."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> SendGridDouble:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` mail/send requests with ``fault``."""
        with self._lock:
            self._faults += [fault] * times

    def fail_fraction(self, fault: Fault, fraction: float) -> None:
        """Answer about ``fraction`` of the requests with ``fault`` (seeded, so repeatable)."""
        with self._lock:
            self._fraction = (fault, fraction)

    @property
    def accepted(self) -> list[AcceptedRequest]:
        with self._lock:
            return list(self._accepted)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The bodies of the accepted requests, in the order they arrived."""
        return [accepted.body for accepted in self.accepted]

    def accepted_messages(self) -> list[tuple[str, str]]:
        return accepted_messages(self.requests)

    def authorized(self, authorization: str) -> bool:
        scheme, _, key = authorization.partition(" ")
        if scheme != "Bearer" or not key.startswith("SG."):
            return False
        return self.api_key is None or key == self.api_key

    def next_fault(self) -> Fault | None:
        with self._lock:
            self.attempts += 1
            if self._faults:
                return self._faults.pop(0)
            if self._fraction and self._rng.random() < self._fraction[1]:
                return self._fraction[0]
            return None

    def stats(self) -> dict[str, Any]:
        """Accepted requests and personalizations, and this process's CPU seconds so far."""
        with self._lock:
            return {
                "attempts": self.attempts,
                "accepted_requests": self.accepted_requests,
                "accepted_personalizations": self.accepted_personalizations,
                "cpu_seconds": time.process_time(),
            }

    def accept(self, body: dict[str, Any], *, sandbox: bool) -> str | None:
        """Record an accepted request (on disk first when recording); return its message id."""
        message_id = None if sandbox else base64.urlsafe_b64encode(uuid.uuid4().bytes)[:22]
        accepted = AcceptedRequest(message_id.decode() if message_id else None, body)
        with self._lock:
            self.accepted_requests += 1
            self.accepted_personalizations += len(body["personalizations"])
            if self.count_only:
                return accepted.message_id
            if self.record_path is not None:
                with self.record_path.open("a", encoding="utf-8") as record:
                    record.write(json.dumps(asdict(accepted)) + "\n")
                    record.flush()
                    os.fsync(record.fileno())
            self._accepted.append(accepted)
        return accepted.message_id


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--record", type=Path, help="JSON-lines file to append")
    parser.add_argument(
        "--count-only",
        action="store_true",
        help=f"keep and record no body, only counts (GET {STATS_PATH}); instead of --record",
    )
    parser.add_argument("--api-key", help="accept only this key (default: any SG. key)")
    parser.add_argument(
        "--fault", choices=["400", "429", "500", "drop"], help="answer some requests so"
    )
    parser.add_argument("--times", type=int, default=0, help="the next N requests get --fault")
    parser.add_argument("--fraction", type=float, default=0.0, help="or this share of them")
    parser.add_argument("--retry-after", type=float, default=1, help="seconds, for --fault 429")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    if (options.record is None) == (not options.count_only):
        parser.error("give --record FILE, or --count-only")
    double = SendGridDouble(
        host=options.host,
        port=options.port,
        api_key=options.api_key,
        record_path=options.record,
        seed=options.seed,
        count_only=options.count_only,
    )
    if options.fault:
        fault = {
            "429": Fault.rate_limited(options.retry_after),
            "500": Fault.server_error(),
            "400": Fault.bad_request(),
            "drop": Fault.dropped(),
        }[options.fault]
        if options.times:
            double.fail_next(fault, options.times)
        if options.fraction:
            double.fail_fraction(fault, options.fraction)
    print(f"listening on {double.url}", flush=True)
    double.serve()


if __name__ == "__main__":
    main()
