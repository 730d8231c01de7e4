"""Event-webhook load test: signed batches posted to a real receiver on 127.0.0.1.

The receiver (``flows/email/webhook.py``, the app ``leadflow webhook serve`` runs) is started in
uvicorn in a subprocess with a key pair made here; the client signs each batch the way SendGrid
does (ECDSA P-256 over timestamp + body, SHA-256, DER, base64) and posts them from a few
threads over keep-alive connections. Recorded: throughput (posts and events per second) and
latency percentiles as the client saw them, the events landed, and the time the next extract
takes to load them.

    python -m bench.webhook --posts 10000 --record
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.machine import describe_machine
from bench.results import machine_line, record_section
from flows.email.events import load_landed_events
from flows.email.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from flows.warehouse import ensure_schema, open_warehouse

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_TITLE = "## Event webhook"


class EventSigner:
    """SendGrid's side of a signed Event Webhook: a P-256 key pair and its signatures."""

    def __init__(self) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it: base64 of the DER public key."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        }


def event_batch(size: int, *, seed: str) -> list[dict[str, Any]]:
    """A batch as SendGrid posts it: delivered, open and click events of one message each."""
    kinds = ("delivered", "open", "click")
    now = int(time.time())
    return [
        {
            "email": f"lead{index}@example.com",
            "timestamp": now,
            "event": kinds[index % 3],
            "sg_event_id": f"{seed}-{index}",
            "sg_message_id": f"{seed}.filter{index}",
            "message_key": f"key-{seed}-{index}",
            **({"url": "https://leadflow.example/pricing"} if index % 3 == 2 else {}),
        }
        for index in range(size)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_receiver(data_dir: Path, public_key: str, port: int) -> subprocess.Popen[bytes]:
    """``leadflow webhook serve`` in a subprocess, once it answers /healthz."""
    environment = os.environ | {
        "LEADFLOW_DATA_DIR": str(data_dir),
        "LEADFLOW_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
    }
    server = subprocess.Popen(
        [Path(sys.executable).parent / "leadflow", "webhook", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            _, stderr = server.communicate()
            raise RuntimeError(f"the receiver exited: {stderr.decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the receiver did not answer /healthz within 60 s")


def run(posts: int, batch_size: int, clients: int, data_dir: Path) -> dict[str, Any]:
    signer = EventSigner()
    port = free_port()
    server = start_receiver(data_dir, signer.public_key, port)
    url = f"http://127.0.0.1:{port}/sendgrid/events"
    run_tag = uuid.uuid4().hex[:8]
    # Bodies are made and signed before the clock starts: the client's own cost is not the
    # receiver's. Signatures stay within the receiver's tolerance for the run's length.
    bodies = [
        json.dumps(event_batch(batch_size, seed=f"{run_tag}-{index}")).encode()
        for index in range(posts)
    ]
    requests = [(body, signer.headers(body)) for body in bodies]

    def post_share(share: list[tuple[bytes, dict[str, str]]]) -> list[float]:
        latencies = []
        with httpx.Client(timeout=30) as client:
            for body, headers in share:
                started = time.perf_counter()
                response = client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"post refused: {response.status_code} {response.text}")
        return latencies

    load_average = os.getloadavg()
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            shares = pool.map(post_share, [requests[i::clients] for i in range(clients)])
            latencies = sorted(latency for share in shares for latency in share)
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    landing = data_dir / "landing" / "sendgrid"
    landed = sum(len(path.read_bytes().splitlines()) for path in landing.glob("*.jsonl"))
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "posts": posts,
        "events_per_post": batch_size,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "posts_per_second": round(posts / elapsed, 1),
        "events_per_second": round(posts * batch_size / elapsed, 1),
        "latency_ms": {
            "p50": round(quantiles[49] * 1000, 2),
            "p90": round(quantiles[89] * 1000, 2),
            "p99": round(quantiles[98] * 1000, 2),
            "max": round(latencies[-1] * 1000, 2),
        },
        "load_average_at_start": [round(value, 2) for value in load_average],
        "events_landed": landed,
        "next_extract": time_the_load(landing, data_dir / "warehouse.duckdb"),
        "machine": describe_machine(),
    }


def time_the_load(landing: Path, warehouse_path: Path) -> dict[str, Any]:
    """What the next extract does with the landed events: their load, in seconds."""
    with open_warehouse(warehouse_path) as connection:
        ensure_schema(connection)
        started = time.perf_counter()
        load = load_landed_events(connection, landing, "bench")
        seconds = time.perf_counter() - started
    return {"events_loaded": load.events_loaded, "seconds": round(seconds, 2)}


def section(result: dict[str, Any]) -> str:
    """The "Event webhook" section of docs/benchmarks.md."""
    machine, latency = result["machine"], result["latency_ms"]
    load = result["next_extract"]
    return "\n".join(
        [
            SECTION_TITLE,
            "",
            f"`python -m bench.webhook --posts {result['posts']} --events-per-post "
            f"{result['events_per_post']} --clients {result['clients']}`: signed batches "
            "posted over keep-alive connections from client threads to `leadflow webhook "
            "serve` (one uvicorn process) on 127.0.0.1, each verified (ECDSA) and appended, "
            "flushed and fsynced, before its answer. Client and server share the machine's "
            f"{machine['cores']} cores (and other engineers' jobs ran beside them), so these "
            "figures are a floor for the receiver alone.",
            "",
            f"Recorded {result['recorded_at']} on: {machine_line(result)}",
            "",
            "| posts | events | time (s) | posts/s | events/s | p50 (ms) | p90 (ms) | p99 (ms) "
            "| max (ms) |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            f"| {result['posts']:,} | {result['posts'] * result['events_per_post']:,} "
            f"| {result['seconds']} | {result['posts_per_second']:,} "
            f"| {result['events_per_second']:,} | {latency['p50']} | {latency['p90']} "
            f"| {latency['p99']} | {latency['max']} |",
            "",
            f"Every event landed ({result['events_landed']:,} lines). The next extract's load "
            f"of them (`load_landed_events`, deduplication and mapping included) took "
            f"{load['seconds']} s for {load['events_loaded']:,} events.",
            "",
            "`make bench` rewrites the sections above from docs/benchmarks.json and drops this "
            "one: run `python -m bench.webhook --record` again after it.",
            "",
        ]
    )


def record(result: dict[str, Any]) -> None:
    """Write the section into docs/benchmarks.md, in place of an earlier one."""
    record_section(REPORT, SECTION_TITLE, section(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--events-per-post", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    parser.add_argument("--workdir", type=Path, default=Path("data/bench/webhook"))
    parser.add_argument(
        "--record", action="store_true", help="Write the result into docs/benchmarks.md."
    )
    arguments = parser.parse_args()
    data_dir = arguments.workdir / uuid.uuid4().hex[:8]
    result = run(arguments.posts, arguments.events_per_post, arguments.clients, data_dir)
    result["recorded_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(json.dumps(result, indent=2))
    expected = arguments.posts * arguments.events_per_post
    if result["events_landed"] != expected:
        sys.exit(f"landed {result['events_landed']} events, expected {expected}")
    if arguments.record:
        record(result)


if __name__ == "__main__":
    main()
