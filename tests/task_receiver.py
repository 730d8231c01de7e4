"""A task webhook receiver on 127.0.0.1 for tests, written as a CRM's inbound hook would be:
it verifies the signature with the shared secret (its own code, not LeadFlow's), keeps the
first body per idempotency key and ignores repeats. Faults are scripted for the first
requests: an HTTP status (with optional headers) or ``None`` to drop the connection unanswered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 300


def signature_is_valid(secret: str, header: str | None, body: bytes) -> bool:
    """The receiving side's check: ``t=<ts>,v1=<hex>``, HMAC-SHA256 of ``<ts>.<body>``."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


@dataclass
class Fault:
    status: int | None  # None: close the connection without an answer
    headers: Mapping[str, str] = field(default_factory=dict)


class TaskReceiver:
    def __init__(self, secret: str, faults: list[Fault]) -> None:
        self.secret = secret
        self.faults = faults
        self.requests = 0
        self.bad_signatures = 0
        self.accepted: dict[str, dict[str, Any]] = {}  # idempotency key -> first body
        self.repeats: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests += 1
                    fault = receiver.faults.pop(0) if receiver.faults else None
                if fault is not None and fault.status is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None:
                    self._answer(fault.status, fault.headers)
                    return
                if not signature_is_valid(
                    receiver.secret, self.headers.get("X-LeadFlow-Signature"), body
                ):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                key = self.headers["Idempotency-Key"]
                document = json.loads(body)
                assert document["idempotency_key"] == key
                with receiver.lock:
                    if key in receiver.accepted:
                        receiver.repeats.append(key)
                    else:
                        receiver.accepted[key] = document
                self._answer(200)

            def _answer(self, status: int, headers: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tasks?token=t0k3n"


@contextmanager
def task_receiver(secret: str, faults: list[Fault] | None = None) -> Iterator[TaskReceiver]:
    receiver = TaskReceiver(secret, list(faults or []))
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
