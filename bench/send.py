"""Sending benchmark: ``python -m bench.send --due 100000 [--due 1000000]``.

For each size, a DuckDB warehouse is filled with that many due rows of a
``fct_nurture_queue``-shaped table (one set-based statement: five tracks of three steps, fifty
reps, varied names, some titles empty), and the probes run on it, one after the other, each in
a fresh process (peak memory is a per-process high-water mark) on a fresh copy of the warehouse:

- ``render``: the due rows read and rendered (``SendPreparer``: each step once per shape, each
  lead personalized), nothing claimed or sent: the floor the others stand on;
- ``request``: the whole dispatch (claim, batches, settle), each batch turned into its
  SendGrid v3 mail/send body by the sender's ``mail_request`` and serialised to JSON, and taken
  as accepted: the sender's own work without HTTP;
- ``sendgrid``: the whole dispatch through the real ``SendGridSender`` (the ``sendgrid``
  client, HTTP on 127.0.0.1) to the SendGrid double running in a process of its own with
  ``--count-only``; the personalizations it accepted must equal the due emails, and its CPU
  time and peak memory are reported beside the probe's;
- ``outbox``: the whole dispatch into the local outbox (an ``.eml`` file per email).

Results go to stdout as JSON; ``--record`` merges them into docs/benchmarks-send.json and
rewrites the "Sending" section of docs/benchmarks.md (which ``make bench`` keeps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.child import current_rss_bytes, peak_rss_bytes
from bench.machine import describe_machine

AS_OF = datetime(2026, 12, 1, 9)
DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
RESULTS_FILE = DOCS_DIR / "benchmarks-send.json"
SENDER_NAME = "LeadFlow Demo"
PROBES = ("render", "request", "sendgrid", "outbox")
# Any key of SendGrid's shape: the double takes every one.
BENCH_API_KEY = "SG." + "b" * 22 + "." + "c" * 43


def build_queue(warehouse: Path, due: int) -> None:
    """A warehouse whose ``fct_nurture_queue`` holds ``due`` due rows, and its ``dim_leads``."""
    from flows.warehouse import ensure_schema, open_warehouse

    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        connection.execute(
            """
            create or replace table main.fct_nurture_queue as
            with tracks as (
                select * from (values
                    (0, 'warm_up'), (1, 'education'), (2, 'reengage'),
                    (3, 'recycle_timing'), (4, 'competitor_winback')
                ) as t(track_number, nurture_track)
            )
            select
                md5('lead' || i) as lead_id,
                'lead' || i || '@example.com' as email,
                (['Ana', 'Ben', 'Chloé', 'Dev', 'Eve', 'Femi', 'Gus', 'Hana'])[1 + i % 8]
                    || (i % 97) as first_name,
                (['Silva', 'Lee', 'Ölund', 'Okafor', 'Nguyen'])[1 + i % 5] as last_name,
                'Company ' || (i % 5003) || (case when i % 11 = 0 then ' & Sons' else '' end)
                    as company,
                case when i % 3 = 0 then '' else 'Head of Sales' end as title,
                'R' || (i % 50) as owner_rep_id,
                'Rep Number ' || (i % 50) as owner_name,
                'rep' || (i % 50) || '@leadflow.example' as owner_email,
                'engaged' as stage,
                'not_ready_low_engagement' as stage_reason,
                tracks.nurture_track,
                1 + (i // 5) % 3 as next_step,
                timestamp '2026-12-01 00:00' - to_minutes(i % 10000) as due_at,
                true as is_due,
                false as is_suppressed
            from range($due) as r(i)
            inner join tracks on tracks.track_number = i % 5
            """,
            {"due": due},
        )
        connection.execute(
            """
            create or replace table main.dim_leads as
            select
                lead_id, email, first_name, last_name, company, title, owner_rep_id,
                owner_name, owner_email, stage, stage_reason, nurture_track, is_suppressed
            from main.fct_nurture_queue
            """
        )
        connection.execute("checkpoint")


class RequestBodySender:
    """Builds each batch's mail/send body as the SendGrid sender does and serialises it as the
    client posts it, then takes it as accepted: the sender's own work without the HTTP."""

    provider = "sendgrid-body"

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0

    def check(self) -> None:
        return None

    def send(self, batch: Any) -> list[Any]:
        from flows.email.message import SendResult
        from flows.email.sendgrid import mail_request

        self.bytes += len(json.dumps(mail_request(batch)).encode())
        self.requests += 1
        return [SendResult(r.message_key, "sent", None, None) for r in batch.recipients]

    def was_delivered(self, message_key: str) -> bool | None:
        return None


def double_stats(url: str) -> dict[str, Any]:
    """What the SendGrid double has accepted so far, and its CPU seconds."""
    from tests.sendgrid_double import STATS_PATH

    with urllib.request.urlopen(url + STATS_PATH, timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


@contextmanager
def sendgrid_double_process() -> Iterator[tuple[str, int]]:
    """The SendGrid double in a process of its own (its CPU is not the probe's), keeping no
    bodies; (its URL, its pid)."""
    from flows.settings import PROJECT_ROOT

    command = [sys.executable, "-m", "tests.sendgrid_double", "--port", "0", "--count-only"]
    double = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = double.stdout.readline() if double.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"the SendGrid double did not start: {line!r}")
        yield line.removeprefix("listening on ").strip(), double.pid
    finally:
        double.terminate()
        double.wait(timeout=30)


def peak_rss_of(pid: int) -> int:
    """Another process's peak resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def render_due_rows(
    connection: Any, tracks: Any, templates: Path, sender: Any, run_id: str = "bench"
) -> tuple[int, int]:
    """Render-only: every due row into its recipient and ledger row; (emails, shapes)."""
    from flows.email.dispatch import DUE_ROW_COLUMNS, MESSAGE_KEY_SQL, SendPreparer
    from flows.email.render import TemplateRenderer

    preparer = SendPreparer(tracks, TemplateRenderer(templates), sender, run_id, AS_OF)
    rendered = 0
    queue_columns = ", ".join(column for column in DUE_ROW_COLUMNS if column != "message_key")
    cursor = connection.execute(
        f"select {queue_columns}, {MESSAGE_KEY_SQL} as message_key "
        "from main.fct_nurture_queue where is_due"
    )
    columns = [description[0] for description in cursor.description or []]
    while chunk := cursor.fetchmany(10_000):
        prepared = preparer.prepare([dict(zip(columns, v, strict=True)) for v in chunk])
        rendered += len(prepared.sends)
    return rendered, len(preparer.shapes)


def run_probe(
    probe: str, warehouse: Path, outbox: Path, sendgrid_url: str | None = None
) -> dict[str, Any]:
    """One probe in this process: its seconds, rows, and peak memory."""
    from pydantic import SecretStr

    from flows.email.dispatch import Sender, dispatch_due_steps
    from flows.email.message import EmailSender
    from flows.email.outbox import OutboxSender
    from flows.email.render import TemplateRenderer
    from flows.email.sendgrid import SendGridSender
    from flows.email.templates import load_tracks
    from flows.settings import PROJECT_ROOT
    from flows.warehouse import open_warehouse

    templates = PROJECT_ROOT / "templates"
    tracks = load_tracks(templates)
    if probe == "sendgrid":  # SendGrid takes no batch without an unsubscribe group
        tracks = {name: replace(track, unsubscribe_group=1) for name, track in tracks.items()}
    sender = Sender(
        from_email=f"{SENDER_NAME} <hello@leadflow.example>",
        name=SENDER_NAME,
        address="1 Example Street, Springfield",
        unsubscribe_url="https://leadflow.example/unsubscribe?key={message_key}",
    )
    # pyarrow imports pandas on its first conversion: an import (the pipeline has made it long
    # before), not part of sending, so it is paid before the clock starts.
    import pandas  # noqa: F401

    details: dict[str, Any] = {}
    double_before = double_stats(sendgrid_url) if sendgrid_url else None
    baseline = current_rss_bytes()
    with open_warehouse(warehouse) as connection:
        started = time.perf_counter()
        cpu_started = time.process_time()
        if probe == "render":
            rows, shapes = render_due_rows(connection, tracks, templates, sender)
            details["shapes"] = shapes
        else:
            chosen: EmailSender
            if probe == "request":
                chosen = RequestBodySender()
            elif probe == "sendgrid" and sendgrid_url:
                chosen = SendGridSender(SecretStr(BENCH_API_KEY), host=sendgrid_url)
            else:
                chosen = OutboxSender(outbox)
            report = dispatch_due_steps(
                connection,
                tracks=tracks,
                renderer=TemplateRenderer(templates),
                email_sender=chosen,
                sender=sender,
                run_id="bench",
                as_of=AS_OF,
            )
            rows = report.sent
            if report.sent != report.due:
                raise AssertionError(f"sent {report.sent} of {report.due} due: {report}")
            if isinstance(chosen, RequestBodySender):
                details |= {"requests": chosen.requests, "request_bytes": chosen.bytes}
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    if sendgrid_url and double_before:
        double_after = double_stats(sendgrid_url)
        accepted = (
            double_after["accepted_personalizations"] - double_before["accepted_personalizations"]
        )
        if accepted != rows:
            raise AssertionError(f"the SendGrid double accepted {accepted:,} of {rows:,} emails")
        details |= {
            "requests": double_after["accepted_requests"] - double_before["accepted_requests"],
            "accepted by the double": accepted,
            "double CPU s": round(double_after["cpu_seconds"] - double_before["cpu_seconds"], 1),
        }
    return {
        "probe": probe,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rows": rows,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak_rss_bytes(),
        "details": details,
    }


def measure(due: int, work_dir: Path, probes: list[str]) -> list[dict[str, Any]]:
    source = work_dir / f"queue-{due}.duckdb"
    started = time.perf_counter()
    build_queue(source, due)
    print(f"{due:,} due rows generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results = []
    for probe in probes:
        warehouse = work_dir / f"{probe}-{due}.duckdb"
        outbox = work_dir / f"outbox-{due}"
        shutil.copyfile(source, warehouse)
        result_file = work_dir / f"{probe}-{due}.json"
        command = [sys.executable, "-m", "bench.send", "--probe", probe]
        command += ["--warehouse", str(warehouse), "--outbox", str(outbox)]
        command += ["--result", str(result_file)]
        if probe == "sendgrid":
            with sendgrid_double_process() as (url, pid):
                subprocess.run([*command, "--sendgrid-url", url], check=True)
                double_peak = peak_rss_of(pid)
            result = json.loads(result_file.read_text())
            result["details"]["double peak RSS MiB"] = round(double_peak / 2**20)
        else:
            subprocess.run(command, check=True)
            result = json.loads(result_file.read_text())
        results.append(result)
        print(
            f"  {probe}: {result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s of CPU)",
            file=sys.stderr,
        )
        warehouse.unlink()
        shutil.rmtree(outbox, ignore_errors=True)
    source.unlink()
    return results


SECTION_HEADING = "## Sending"
METHOD = """## Sending

`python -m bench.send --due 100000 [--due 1000000] [--probes render,request,sendgrid] --record`
fills a warehouse with that many due rows of a `fct_nurture_queue`-shaped table (one set-based
statement: five tracks of three steps, fifty reps, varied names, a third of the titles empty)
and runs these probes on it, each in a fresh process on a fresh copy (code: `bench/send.py`):

- **render**: the due rows read and rendered as the nurture stage does (each step once per
  shape, each lead personalized: subject, follow-up task, substitutions), nothing claimed or
  sent: the floor the others stand on;
- **request**: the whole dispatch (the due selection, one ledger claim per 10,000 rows,
  batches, settlement), each batch turned into the JSON body of a SendGrid v3 mail/send request
  by the sender's `mail_request` (a dict built directly; a unit test holds it equal to the
  `sendgrid` library's `Mail(...).get()`), and taken as accepted: the sender without HTTP;
- **sendgrid**: the same dispatch through the real `SendGridSender` (the `sendgrid` client,
  HTTP on 127.0.0.1) to the SendGrid double (`tests/sendgrid_double.py --count-only`) in a
  process of its own, which validates each request as SendGrid does; the personalizations it
  accepted must equal the due emails. The notes give its requests, its CPU seconds and its
  peak memory, which are not in the probe's columns;
- **outbox**: the whole dispatch into the local outbox (an `.eml` file and an index line per
  email).

**time** is wall time; **CPU** is the process's CPU time (all its threads, DuckDB's included).
The machine has 2 cores shared with other jobs: the load average at the start is given, and
where it exceeds the cores, wall time measures the queue for the CPU more than the code, so
the ratios are taken on CPU time. **peak RSS** is the probe process's high-water mark
(`VmHWM`), imports included. Before rendering per shape, a step was rendered for each lead:
that path took 298 s of the nurture stage's 679 s at 809,346 due emails (1,000,000 leads,
above), and measured beside the per-shape render on 20,000 due rows of this data set it cost
6.5 times the CPU (433 against 66 µs per email, on 2026-12-07, loaded as below). The goal for
the sendgrid probe: a million due emails rendered and accepted by the double in under 2
minutes, peak memory under 2 GiB.

Where the sendgrid probe's CPU goes, from the differences between the probes at 100,000 due
emails (2026-12-07): reading and rendering (the render probe) is half of it; building the
request bodies and their JSON about 13 µs per email (`mail_request` 6.5 µs per
personalization, down from 27 µs with the `sendgrid` helper objects, and `json.dumps` 7 µs);
HTTP to the double about 2 µs; the rest of the dispatch (the due selection, the ledger claim
and settlement, batching) about 50 µs. The double spends about 14 µs per email in its own
process (JSON parsing and validation).

Against the goal, at a million (2026-12-07 05:45, with the test suite running beside it, so
the render probe took 58 s of CPU where it took 39 s an hour earlier): 171 s wall and 144 s
of CPU, 1.4 times the 2 minutes; peak memory 1,152 MiB, within its goal. What stands in the
way: per-lead preparation (the render probe, 39-58 µs per email: context values, text
cleaning, HTML escaping in Python), then the claims, about 1,100 of them, each a durable
insert into a ledger growing to a million rows (each batch is claimed just before its request,
so a kill strands at most one batch). Those claims were an upsert, which costs four times a
plain insert at a million rows: measured at 259 s of CPU for the probe before a claim became
a plain insert with the upsert only as the fallback for steps tried before (a profile at
300,000 due emails, side by side: the claims 20.0 s against 8.2 s)."""


def section(document: Mapping[str, Any]) -> str:
    """The Sending section of docs/benchmarks.md, from ``benchmarks-send.json``."""
    lines = [METHOD, ""]
    for due, run in sorted(document["sizes"].items(), key=lambda item: int(item[0])):
        results = run["results"]
        render = next((r for r in results if r["probe"] == "render"), results[0])
        machine = run["machine"]
        lines += [
            f"### {int(due):,} due emails",
            "",
            f"Recorded {run['recorded_at']} UTC on {machine['cpu_model']}, "
            f"{machine['cores']} cores; load average at the start (1/5/15 min): "
            f"{run['load_average']}.",
            "",
            "| probe | emails | time (s) | CPU (s) | CPU µs per email | x render (CPU) | "
            "peak RSS (MiB) | notes |",
            "|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        for r in results:
            notes = ", ".join(f"{key} {value:,}" for key, value in r["details"].items())
            lines.append(
                f"| {r['probe']} | {r['rows']:,} | {r['seconds']:.1f} | "
                f"{r['cpu_seconds']:.1f} | {r['cpu_seconds'] / max(r['rows'], 1) * 1e6:.0f} | "
                f"{r['cpu_seconds'] / render['cpu_seconds']:.2f}x | "
                f"{r['peak_rss_bytes'] / 2**20:,.0f} | {notes} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def with_section(markdown: str) -> str:
    """docs/benchmarks.md with its Sending section (re)written from the recorded results, the
    sections before and after it as they were."""
    before, _, rest = markdown.partition(f"\n{SECTION_HEADING}\n")
    after = rest[rest.index("\n## ") :] if "\n## " in rest else ""
    if not RESULTS_FILE.is_file():
        return before.rstrip() + "\n" + after
    return before.rstrip() + "\n\n" + section(json.loads(RESULTS_FILE.read_text())) + after


def record(due: int, run: dict[str, Any]) -> None:
    """Merge this size into docs/benchmarks-send.json and rewrite the section from it."""
    document = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else {"sizes": {}}
    document["sizes"][str(due)] = run
    RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
    markdown_file = DOCS_DIR / "benchmarks.md"
    markdown_file.write_text(with_section(markdown_file.read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--due", type=int, action="append", help="due emails (repeatable)")
    parser.add_argument("--work-dir", type=Path, help="default: a temporary folder")
    parser.add_argument(
        "--probes", default=",".join(PROBES), help=f"comma-separated (default: {','.join(PROBES)})"
    )
    parser.add_argument(
        "--record", action="store_true", help="record in docs/benchmarks.md (and its JSON)"
    )
    parser.add_argument("--probe", choices=PROBES, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--outbox", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sendgrid-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:  # a child process running one probe
        result = run_probe(args.probe, args.warehouse, args.outbox, args.sendgrid_url)
        args.result.write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        for due in args.due or [100_000]:
            with open("/proc/loadavg") as loadavg:
                load = " / ".join(loadavg.read().split()[:3])
            run = {
                "recorded_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
                "load_average": load,
                "machine": describe_machine(),
                "results": measure(due, Path(work_dir), args.probes.split(",")),
            }
            print(json.dumps(run, indent=2), flush=True)
            if args.record:
                record(due, run)


if __name__ == "__main__":
    main()
