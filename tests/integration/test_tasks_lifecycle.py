"""Tasks a rep can work, on generated leads through the real pipeline (Prefect, dbt, GX, outbox):
capacity holds, sales-ready hand-offs lead every queue, follow-ups come from engagement with the
email per the step's policy, a newer task supersedes the pending one, nothing is created twice.
"""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.demo.generate import generate_dataset
from flows.email.tracks import follow_up_policies, load_tracks
from flows.pipeline import lead_pipeline
from flows.report import RunSummary
from flows.sales.sinks import rep_file_name
from flows.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

GENERATED_AT = datetime(2026, 11, 1)
RUN_AT = datetime(2026, 11, 1, 8, 30)
# Small enough that hand-offs overflow every rep's list on the first run.
TASKS_PER_REP = 6
ENGAGED_AT = RUN_AT + timedelta(hours=3)  # the next run's clock, and when the leads engaged
STEP_TWO_AT = RUN_AT + timedelta(days=5)


def project_with_small_capacity(root: Path) -> Path:
    """The shipped project with every demo rep's daily_task_capacity at TASKS_PER_REP."""
    project = root / "project"
    project.mkdir()
    for name in ("templates", "expectations"):
        (project / name).symlink_to(PROJECT_ROOT / name)
    shutil.copytree(
        PROJECT_ROOT / "dbt_project",
        project / "dbt_project",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    # Demo reps are rep_01..rep_12; one row each, and a spare.
    rows = "".join(f"rep_{n:02d},{TASKS_PER_REP},test\n" for n in range(13))
    (project / "dbt_project/seeds/rep_capacity.csv").write_text(
        "rep_id,daily_task_capacity,note\n" + rows
    )
    return project


def land_engagement(
    inbox: Path, name: str, sends: list[tuple[str, str]], event_type: str, occurred_at: datetime
) -> None:
    """Email events carrying each send's message key, as the provider's events arrive."""
    with (inbox / f"events__email_engagement__{name}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["event_id", "email", "event_type", "occurred_at", "campaign", "url", "message_key"]
        )
        for message_key, email in sends:
            writer.writerow(
                [f"{name}-{message_key}", email, event_type, occurred_at, "", "", message_key]
            )


def query(data: Path, sql: str, parameters: list[object] | None = None) -> list[tuple]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def task_counts(data: Path) -> list[tuple]:
    return query(
        data, "select reason, status, count(*) from ops.sales_tasks group by all order by all"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunSummary]]:
    root = tmp_path_factory.mktemp("tasks")
    data = root / "data"
    summaries: list[RunSummary] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADFLOW_DATA_DIR", str(data))
        patch.setenv("LEADFLOW_PROJECT_DIR", str(project_with_small_capacity(root)))
        generate_dataset(data / "inbox", leads=1200, seed=5, as_of=GENERATED_AT)
        summaries.append(lead_pipeline(as_of=RUN_AT))
        # The leads open half the first emails and click a quarter.
        sent = query(data, "select message_key, email from ops.email_sends order by message_key")
        land_engagement(data / "inbox", "opens", sent[::2], "email_open", ENGAGED_AT)
        land_engagement(data / "inbox", "clicks", sent[::4], "email_click", ENGAGED_AT)
        summaries.append(lead_pipeline(as_of=ENGAGED_AT))
        # Days later the second emails go out; the leads with a pending follow-up click them.
        summaries.append(lead_pipeline(as_of=STEP_TWO_AT))
        second = query(
            data,
            """
            select sends.message_key, sends.email from ops.email_sends as sends
            where sends.step = 2 and exists (
                select 1 from ops.sales_tasks as tasks
                where tasks.lead_id = sends.lead_id and tasks.status in ('queued', 'open'))
            order by 1
            """,
        )
        land_engagement(
            data / "inbox", "second", second, "email_click", STEP_TWO_AT + timedelta(minutes=20)
        )
        summaries.append(lead_pipeline(as_of=STEP_TWO_AT + timedelta(hours=1)))
    return data, summaries


def test_no_rep_has_more_open_tasks_than_capacity_and_the_overflow_is_reported(runs):
    data, summaries = runs
    per_rep = query(
        data,
        """
        select reps.rep_id, reps.daily_task_capacity,
            count(*) filter (where tasks.status = 'open'),
            count(*) filter (where tasks.status = 'queued')
        from main.dim_reps as reps
        inner join ops.sales_tasks as tasks on tasks.owner_rep_id = reps.rep_id
        group by all order by all
        """,
    )
    assert len(per_rep) >= 10
    for rep_id, capacity, open_count, queued_count in per_rep:
        assert capacity == TASKS_PER_REP
        assert open_count <= capacity, rep_id
        # Work waits only when the list is full.
        assert queued_count == 0 or open_count == capacity, rep_id
    overflow = {rep_id: queued for rep_id, _, _, queued in per_rep if queued}
    assert overflow, "the capacity in this test is small enough to overflow"
    assert summaries[-1].tasks_queued == overflow
    assert "tasks wait for room" in summaries[-1].to_markdown()


def test_sales_ready_handoffs_come_first_in_every_reps_queue(runs):
    data, _ = runs
    files = list((data / "tasks").glob("*.csv"))
    assert files
    for path in files:
        with path.open(newline="") as handle:
            reasons = [row["reason"] for row in csv.DictReader(handle)]
        handoffs = reasons.count("mql_handoff")
        assert reasons[:handoffs] == ["mql_handoff"] * handoffs, path.name
    # A follow-up is only open where no hand-off of the same rep still waits in the queue.
    assert query(
        data,
        """
        select count(*) from ops.sales_tasks as follow_up
        where follow_up.reason = 'nurture_follow_up' and follow_up.status = 'open'
          and exists (
            select 1 from ops.sales_tasks as handoff
            where handoff.owner_rep_id = follow_up.owner_rep_id
              and handoff.reason = 'mql_handoff' and handoff.status = 'queued')
        """,
    ) == [(0,)]
    # The CSV is the open list ordered by priority.
    [(rep_id,)] = query(
        data,
        "select owner_rep_id from ops.sales_tasks where status = 'open' "
        "group by 1 order by count(*) desc, 1 limit 1",
    )
    with (data / "tasks" / rep_file_name(rep_id)).open(newline="") as handle:
        listed = [row["task_id"] for row in csv.DictReader(handle)]
    assert listed == [
        task_id
        for (task_id,) in query(
            data,
            "select task_id from ops.sales_tasks where status = 'open' and owner_rep_id = ? "
            "order by priority desc, due_at, task_id",
            [rep_id],
        )
    ]


def test_follow_ups_come_from_engagement_per_the_steps_policy(runs):
    data, summaries = runs
    policies = follow_up_policies(load_tracks(PROJECT_ROOT / "templates"))
    follow_ups = query(
        data,
        """
        select sends.track, sends.step, tasks.due_at, tasks.created_at, sends.sent_at,
            sends.follow_up_due_days, engaged.first_at, engaged.has_click
        from ops.sales_tasks as tasks
        inner join ops.email_sends as sends
            on tasks.lead_id = sends.lead_id and tasks.track = sends.track
            and tasks.step = sends.step
        left join (
            select message_key, min(occurred_at) as first_at,
                bool_or(event_type = 'email_click') as has_click
            from raw.events where message_key is not null group by 1
        ) as engaged on sends.message_key = engaged.message_key
        where tasks.reason = 'nurture_follow_up'
        """,
    )
    assert follow_ups
    for track, step, due_at, _, sent_at, due_days, engaged_at, has_click in follow_ups:
        policy = policies[(track, step)]
        assert policy != "never"
        if policy == "always":
            assert due_at == sent_at + timedelta(days=due_days)
        else:
            assert engaged_at is not None and (has_click or policy != "clicked")
            assert due_at == engaged_at + timedelta(days=due_days)
    # The first run's fresh emails had no engagement: only `always` steps made a task then.
    first_run = query(
        data,
        "select distinct track, step from ops.sales_tasks "
        "where reason = 'nurture_follow_up' and run_id = ?",
        [summaries[0].run_id],
    )
    assert all(policies[key] == "always" for key in first_run), first_run
    # Far fewer follow-ups than emails: one per engaged email at most.
    [(sent,)] = query(data, "select count(*) from ops.email_sends where status = 'sent'")
    assert len(follow_ups) < sent


def test_a_newer_task_supersedes_the_pending_one_and_history_is_kept(runs):
    data, _ = runs
    assert query(
        data,
        """
        select count(*) from (
            select lead_id, owner_rep_id from ops.sales_tasks
            where status in ('queued', 'open') group by all having count(*) > 1)
        """,
    ) == [(0,)]
    superseded = query(
        data,
        """
        select old.step, old.closed_at is not null, new.status, new.reason, new.step
        from ops.sales_tasks as old
        inner join ops.sales_tasks as new
            on old.close_reason = 'superseded by task ' || new.task_id
        where old.status = 'superseded' and old.reason = 'nurture_follow_up'
        """,
    )
    assert superseded
    for old_step, is_closed, new_status, new_reason, new_step in superseded:
        assert is_closed
        assert new_reason == "mql_handoff" or new_step > old_step or new_status == "superseded"


def test_why_now_and_titles_speak_plain_words_and_only_of_channels_the_lead_has(runs):
    data, _ = runs
    # Codes such as not_ready_low_fit; "competitor" or "won" may well be plain words.
    leaking = query(
        data,
        r"""
        select distinct reasons.reason_code, tasks.why_now
        from ops.sales_tasks as tasks
        inner join main.lifecycle_reasons as reasons
            on reasons.reason_code like '%\_%' escape '\'
            and regexp_matches(tasks.why_now, '\b' || reasons.reason_code || '\b')
        """,
    )
    assert leaking == []
    assert query(data, "select count(*) from ops.sales_tasks where why_now like '% because %'") == [
        (0,)
    ]
    assert query(
        data,
        """
        select count(*) from ops.sales_tasks
        where (phone is null and (title like 'Call%' or title like '%(call or email)'))
           or (email is null and title like '%mail%')
        """,
    ) == [(0,)]


def test_running_again_creates_no_task_twice(runs, monkeypatch):
    data, summaries = runs
    before = task_counts(data)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("LEADFLOW_PROJECT_DIR", str(data.parent / "project"))
    again = lead_pipeline(as_of=STEP_TWO_AT + timedelta(hours=1, minutes=10))
    assert again.tasks_created == 0
    assert task_counts(data) == before
    assert again.tasks_queued == summaries[-1].tasks_queued
