"""Exactly once under SIGKILL: the nurture sending killed at 20+ points, re-run after each.

The sending runs in a process of its own (``send_child.py``: the nurture tasks' plain
functions, forked from a forkserver that imported them once) against the SendGrid double, a
server in this process that can SIGKILL the sender right after it accepted a request (the
sender never sees the answer) or a moment later (between requests, while settling), and that
can fail a share of the requests with 429 and 500. After the kills and a last run to the end,
the double's record comes back as ``processed`` events, loaded and settled as production does;
a day later the runs send what the first day's limit held back, and what a kill stranded
between its claim and its request (the events prove it never reached SendGrid). The outcome is
compared with an uninterrupted pass of the same runs from the same start.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest

from flows.email.events import LandingWriter, load_landed_events, settle_from_events, stale_pending
from flows.settings import PROJECT_ROOT
from flows.warehouse import ensure_schema, open_warehouse
from tests.integration.send_child import run_nurture_sends
from tests.integration.test_sendgrid_send import KEY
from tests.sendgrid_double import AcceptedRequest, Fault, SendGridDouble, accepted_messages

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 22, 9)
# The next day, past LEADFLOW_PENDING_UNKNOWN_AFTER_HOURS (24): sends still pending with no
# event then are released if sends claimed after them were processed.
NEXT_DAY = AS_OF + timedelta(hours=25)
TRACKS = ("warm_up", "education", "recycle_timing", "reengage", "competitor_winback")
LEADS = 600
DAILY_LIMIT = 560  # below the due count: the limit must hold through the kills too
KILLS = 23
RUN_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL the sender ``delay`` seconds after the double accepted ``after_accepted`` of
    this run's requests (``LAST``: the pass's last request), or after the run started when
    that is None."""

    after_accepted: int | None
    delay: float


LAST = -1


class KillingDouble(SendGridDouble):
    """The SendGrid double, able to kill the sending process when it accepts a request, and to
    answer a seeded share of the requests with 429 (Retry-After 0 or 1) or 500."""

    def __init__(self, *, fault_fraction: float = 0.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.fault_fraction = fault_fraction
        self.faults_answered = 0
        self._aim: tuple[int, int, float, threading.Event] | None = None

    def aim(self, pid: int, accepted: int, delay: float, finished: threading.Event) -> None:
        """Kill ``pid`` ``delay`` seconds after the double has accepted ``accepted`` requests
        in all."""
        with self._lock:
            self._aim = (pid, accepted, delay, finished)

    def disarm(self) -> None:
        with self._lock:
            self._aim = None

    def next_fault(self) -> Fault | None:
        with self._lock:
            self.attempts += 1
            if self._rng.random() >= self.fault_fraction:
                return None
            self.faults_answered += 1
            return self._rng.choice(
                [Fault.rate_limited(retry_after=0), Fault.rate_limited(1), Fault.server_error()]
            )

    def accept(self, body: dict[str, Any], *, sandbox: bool) -> str | None:
        message_id = super().accept(body, sandbox=sandbox)
        with self._lock:
            aim = self._aim
            if aim is not None and len(self._accepted) >= aim[1]:
                self._aim = None  # once
            else:
                aim = None
        if aim is not None:
            pid, _, delay, finished = aim
            if delay:
                threading.Timer(delay, kill_unless_finished, (pid, finished)).start()
            else:  # before the answer: the sender never learns the request went through
                kill_unless_finished(pid, finished)
        return message_id


def kill_unless_finished(pid: int, finished: threading.Event) -> None:
    if not finished.is_set():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # pandas too: DuckDB imports it on first use, which would cost each run two seconds.
    context.set_forkserver_preload(["tests.integration.send_child", "pandas"])
    return context


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project whose tracks have unsubscribe groups, and a data folder with a due queue."""
    root = tmp_path_factory.mktemp("send-faults")
    project = root / "project"
    project.mkdir()
    for folder in ("dbt_project", "expectations"):
        (project / folder).symlink_to(PROJECT_ROOT / folder)
    shutil.copytree(PROJECT_ROOT / "templates", project / "templates")
    for group, track in enumerate(TRACKS, start=101):
        track_file = project / "templates" / "tracks" / track / "track.yml"
        # Every sent step makes its follow-up task (no opens or clicks here to wait for).
        text = track_file.read_text()
        track_file.write_text(
            text[: text.index("follow_up_when:")]
            + f"follow_up_when: always\nunsubscribe_group: {group}\n"
        )
    data = root / "data"
    data.mkdir()
    with open_warehouse(data / "warehouse.duckdb") as connection:
        ensure_schema(connection)
        build_due_queue(connection)
    return project, data


def build_due_queue(connection: Any) -> None:
    """``LEADS`` due leads over every step of five tracks and three reps (and none): about
    60 requests. Some leads share an address (a batch takes it once), one is suppressed by the
    provider, one in dim_leads; more are due than the daily limit allows."""
    connection.execute(
        """
        create table main.fct_nurture_queue as
        with leads as (
            select
                i,
                'L' || lpad(i::varchar, 4, '0') as lead_id,
                case when i % 50 = 0 then null else 'R' || (i // 15 % 3) end as owner_rep_id
            from range($leads) as t(i)
        )
        select
            lead_id,
            case when i % 150 = 4 then 'shared@example.com' else 'lead' || i || '@example.com' end
                as email,
            'Ann' || i as first_name, 'Lee' as last_name, 'Acme ' || (i % 13) as company,
            'VP' as title, owner_rep_id, 'Rep ' || owner_rep_id as owner_name,
            lower(owner_rep_id) || '@leadflow.example' as owner_email,
            'engaged' as stage, 'not_ready_low_engagement' as stage_reason,
            $tracks[1 + i % 5] as nurture_track, 1 + (i // 5) % 3 as next_step,
            'unused.html' as template, $as_of - to_minutes(i) as due_at, true as is_due,
            false as is_deferred_quiet_hours, 'Call' as follow_up_title, 2 as follow_up_due_days
        from leads
        """,
        {"leads": LEADS, "tracks": list(TRACKS), "as_of": AS_OF},
    )
    connection.execute(
        """
        create table main.dim_leads as
        select
            lead_id, email, first_name, last_name, company, title, owner_rep_id, owner_name,
            owner_email, stage, stage_reason, nurture_track, lead_id = 'L0022' as is_suppressed,
            null::varchar as phone, 10 as lead_score, 'emea_smb' as assignment_rule
        from main.fct_nurture_queue
        """
    )
    # The other marts the follow-up task round reads: reps without a cap, the reasons' words.
    connection.execute("create table main.dim_reps (rep_id varchar, daily_task_capacity integer)")
    connection.execute(
        "create table main.lifecycle_reasons as select 'not_ready_low_engagement' as "
        "reason_code, 'Fits well but the engagement score is below the MQL threshold.' as "
        "description"
    )
    connection.execute(
        "insert into ops.email_suppressions values ('lead11@example.com', 'bounce', 'sendgrid', "
        "?, null)",
        [AS_OF - timedelta(days=1)],
    )


@dataclass
class Pass:
    """One pass from the start state: a data folder, the double, and the runs' processes."""

    project: Path
    data: Path
    double: KillingDouble
    context: ForkServerContext
    expected_requests: int = 0  # as many as the uninterrupted run made
    runs: int = 0
    kills: int = 0
    kill_points: dict[str, KillPoint] = field(default_factory=dict)  # of the killed runs

    @property
    def environment(self) -> dict[str, str]:
        return {
            "LEADFLOW_PROJECT_DIR": str(self.project),
            "LEADFLOW_DATA_DIR": str(self.data),
            "SENDGRID_API_KEY": KEY,
            "LEADFLOW_SENDGRID_HOST": self.double.url,
            "LEADFLOW_DAILY_SEND_LIMIT": str(DAILY_LIMIT),
        }

    def run(self, kill: KillPoint | None = None, as_of: datetime = AS_OF) -> None:
        """One nurture sending run in a process of its own, killed at ``kill`` if it gets
        there; a run that is not killed must finish cleanly."""
        self.runs += 1
        process = self.context.Process(
            target=run_nurture_sends, args=(self.environment, f"run-{self.runs}", as_of)
        )
        finished = threading.Event()
        timer = None
        process.start()
        assert process.pid is not None
        if kill is not None and kill.after_accepted is None:
            timer = threading.Timer(kill.delay, kill_unless_finished, (process.pid, finished))
            timer.start()
        elif kill is not None:
            accepted = len(self.double.accepted)
            target = kill.after_accepted
            self.double.aim(
                process.pid,
                self.expected_requests if target == LAST else accepted + target,
                kill.delay,
                finished,
            )
        process.join(RUN_TIMEOUT_SECONDS)
        finished.set()
        self.double.disarm()
        if timer is not None:
            timer.cancel()
        assert process.exitcode in (0, -signal.SIGKILL), f"run {self.runs}: {process.exitcode}"
        if process.exitcode == -signal.SIGKILL and kill is not None:
            self.kills += 1
            self.kill_points[f"run-{self.runs}"] = kill

    def settle_from_the_providers_events(self, as_of: datetime = AS_OF) -> None:
        """What SendGrid reports for each accepted message, landed, loaded and settled as in
        production; then a run, which writes the follow-up tasks of what was settled."""
        landing = self.data / "landing" / "sendgrid"
        LandingWriter(landing).append(processed_events(self.double.accepted))
        with open_warehouse(self.data / "warehouse.duckdb") as connection:
            load_landed_events(connection, landing, "events")
            settle_from_events(connection)
        self.run(as_of=as_of)

    def finish(self) -> None:
        """After the first day's runs: settle, then the next day's runs (each followed by the
        events of what it sent, as SendGrid reports them)."""
        self.settle_from_the_providers_events()
        self.run(as_of=NEXT_DAY)
        # Twice: a batch stranded by the first day's last claim is proven unsent only by the
        # events of the next day's sends, claimed after it.
        self.settle_from_the_providers_events(NEXT_DAY)
        self.settle_from_the_providers_events(NEXT_DAY)


def processed_events(accepted: list[AcceptedRequest]) -> list[dict[str, Any]]:
    at = int(AS_OF.replace(tzinfo=UTC).timestamp()) + 5
    return [
        {
            "event": "processed",
            "email": personalization["to"][0]["email"],
            "timestamp": at,
            "sg_event_id": f"{request.message_id}-{index}",
            "sg_message_id": f"{request.message_id}.filter0001.{index}",
            **personalization["custom_args"],
        }
        for request in accepted
        for index, personalization in enumerate(request.body["personalizations"])
    ]


@dataclass(frozen=True)
class Outcome:
    delivered: list[tuple[str, str]]  # (message_key, address) the double accepted, in order
    ledger: dict[str, tuple[Any, ...]]  # message_key -> (lead, status, sent_at, attempts, error)
    tasks: dict[str, tuple[Any, ...]]  # task_id -> what a rep sees
    unknown: list[str]  # pending and reported stale two days later
    requests: int  # accepted by the double (by the first day's run, in the uninterrupted pass)


def outcome(one: Pass) -> Outcome:
    with open_warehouse(one.data / "warehouse.duckdb", read_only=True) as connection:
        ledger = connection.execute(
            "select message_key, lead_id, status, sent_at, attempts, error from ops.email_sends"
        ).fetchall()
        tasks = connection.execute(
            "select task_id, lead_id, owner_rep_id, reason, track, step, title, due_at, status "
            "from ops.sales_tasks"
        ).fetchall()
        unknown = stale_pending(connection, NEXT_DAY + timedelta(hours=25))
    return Outcome(
        accepted_messages(accepted.body for accepted in one.double.accepted),
        {row[0]: row[1:6] for row in ledger},
        {row[0]: row[1:] for row in tasks},
        [row.message_key for row in unknown],
        len(one.double.accepted),
    )


def kill_points(requests: int) -> list[KillPoint]:
    """``KILLS`` points spread over a pass of ``requests`` requests: before the first request,
    right as the double accepts one, a moment after (between requests), and after the last
    (settling, writing the tasks). A kill a moment after may land some requests later: the
    points leave room for that."""
    delays = (0.0, 0.004, 0.015, 0.04)
    spread = KILLS - 5
    step = max(1, (requests - spread) // (spread + 1))
    return [
        KillPoint(None, 0.3),  # loading the templates, checking the key, settling earlier runs
        *(KillPoint(step if n % 3 else 1, delays[n % len(delays)]) for n in range(spread)),
        KillPoint(LAST, 0.02),  # settling the last batches, writing the tasks
        *(KillPoint(None, delay) for delay in (0.2, 0.5, 0.9)),
    ]


@pytest.fixture(scope="module")
def uninterrupted(
    start: tuple[Path, Path],
    forkserver: ForkServerContext,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outcome]:
    with KillingDouble() as double:
        one = Pass(start[0], copy_of(start[1], tmp_path_factory), double, forkserver)
        one.run()
        first_day_requests = len(double.accepted)  # where the kills aim: the first day's run
        one.finish()
        yield replace(outcome(one), requests=first_day_requests)


def copy_of(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("pass") / "data"
    shutil.copytree(data, copy)
    return copy


def test_the_uninterrupted_run_sends_every_due_step_once_within_the_limit(uninterrupted):
    keys = [key for key, _ in uninterrupted.delivered]
    assert len(keys) == len(set(keys))
    statuses = Counter(row[1] for row in uninterrupted.ledger.values())
    assert statuses == {"sent": len(keys)}
    # The run's clock: the first day up to the limit, the rest the next day.
    assert Counter(row[2] for row in uninterrupted.ledger.values()) == {
        AS_OF: DAILY_LIMIT,
        NEXT_DAY: len(keys) - DAILY_LIMIT,
    }
    assert len(keys) > DAILY_LIMIT
    assert not uninterrupted.unknown
    # Every sent step of an owned lead has its follow-up task.
    assert len(uninterrupted.tasks) == sum(
        1 for row in uninterrupted.ledger.values() if row[0] not in UNOWNED
    )


UNOWNED = {f"L{i:04d}" for i in range(0, LEADS, 50)}


@pytest.mark.parametrize("fault_fraction", [0.0, 0.2], ids=["clean", "429-500-faults"])
def test_killed_at_twenty_points_every_due_email_goes_exactly_once(
    start, forkserver, tmp_path_factory, uninterrupted, fault_fraction
):
    with KillingDouble(fault_fraction=fault_fraction, seed=19) as double:
        one = Pass(start[0], copy_of(start[1], tmp_path_factory), double, forkserver)
        one.expected_requests = uninterrupted.requests
        for kill in kill_points(uninterrupted.requests):
            one.run(kill)
        one.run()
        one.finish()
        killed = outcome(one)
    assert one.kills >= 20, f"only {one.kills} of {one.runs} runs were killed"
    if fault_fraction:
        assert double.faults_answered >= 10
    # Every due email reached the double exactly once, and none was lost.
    duplicates = [m for m, n in Counter(killed.delivered).items() if n > 1]
    assert not duplicates
    assert set(killed.delivered) == set(uninterrupted.delivered)
    assert not killed.unknown
    # A batch a kill stranded between its claim and its request went out the next day, as its
    # first attempt: never earlier than the uninterrupted run sent it, and nothing else moved.
    assert killed.ledger.keys() == uninterrupted.ledger.keys()
    resent = {
        key
        for key, row in killed.ledger.items()
        if row[2] == NEXT_DAY and uninterrupted.ledger[key][2] == AS_OF
    }
    for key, row in killed.ledger.items():
        if key in resent:
            assert row == (*uninterrupted.ledger[key][:2], NEXT_DAY, *uninterrupted.ledger[key][3:])
        else:
            assert row == uninterrupted.ledger[key], key
    resent_leads = {killed.ledger[key][0] for key in resent}
    assert {task: row for task, row in killed.tasks.items() if row[0] not in resent_leads} == {
        task: row for task, row in uninterrupted.tasks.items() if row[0] not in resent_leads
    }
    assert len(killed.tasks) == len(uninterrupted.tasks)
    print(
        f"{one.kills} kills in {one.runs} runs, {double.faults_answered} faults answered; "
        f"{len(resent)} of {len(uninterrupted.delivered)} sends stranded between a claim and "
        "its request, proven unsent by the provider's events and sent the next day"
    )
