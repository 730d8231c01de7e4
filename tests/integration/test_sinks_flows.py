"""The sinks inside their Prefect flows: the hand-off posts its tasks to the webhook and writes
the rep files; `leadflow digest` sends each rep's digest once a day and exits as documented. On
the DuckDB file and on a PostgreSQL warehouse (LEADFLOW_WAREHOUSE_URL)."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.settings import PostgresTarget
from flows.warehouse import WarehouseTarget, ensure_schema, open_warehouse
from tests.task_receiver import Fault, task_receiver

SECRET = "f" * 40
AS_OF = datetime(2026, 12, 7, 6)
runner = CliRunner()


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, data_dir: Path, monkeypatch) -> WarehouseTarget:
    """The warehouse the flows use: the DuckDB file in the data folder, or PostgreSQL."""
    if request.param == "duckdb":
        return data_dir / "warehouse.duckdb"
    database = request.getfixturevalue("postgres_database")
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", database.url)
    return database


def build_marts(warehouse: WarehouseTarget) -> None:
    """What the transform leaves for the hand-off and the digest: a queue of two leads."""
    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        connection.execute(
            """
            create table main.fct_handoff_queue as select * from (values
                ('L1', 'ann@acme.com', null, 'Ann', 'Lee', 'Acme', 'rep_01', 'r1@x.com',
                 'Asked for a demo', timestamp '2026-12-07 09:00', 'crm', 'C-1', 'email', 80,
                 'emea_smb'),
                ('L2', null, '+1 555 0100', 'Bo', 'Ray', null, 'rep_02', 'r2@x.com',
                 'Visited pricing twice', timestamp '2026-12-06 09:00', 'crm', 'C-2', 'phone', 60,
                 'account_owner')
            ) as queue (lead_id, email, phone, first_name, last_name, company, owner_rep_id,
                owner_email, why_now, due_at, source, source_lead_id, reach_by, lead_score,
                assignment_rule)
            """
        )
        connection.execute(
            "create table main.dim_leads as select lead_id, source, source_lead_id, "
            "null::timestamp as latest_outcome_at from main.fct_handoff_queue"
        )
        # No outcome yet: the hand-off closes tasks for outcomes before it creates any.
        connection.execute(
            "create table main.int_lead_outcomes_resolved (outcome_id varchar, lead_id varchar, "
            "outcome varchar, reason varchar, occurred_at timestamp)"
        )
        connection.execute(
            "create table main.dim_reps as select * from (values "
            "('rep_01', 'Rita Ames', 'rita@leadflow.example', true, 40), "
            "('rep_02', 'Sam Bell', 'sam@leadflow.example', true, 40)) "
            "as reps (rep_id, rep_name, rep_email, is_active, daily_task_capacity)"
        )


@pytest.mark.slow
def test_the_handoff_posts_its_tasks_signed_and_writes_the_rep_files(target, data_dir, monkeypatch):
    from flows.handoff import handoff

    build_marts(target)
    with task_receiver(SECRET, [Fault(500), Fault(None)]) as receiver:
        monkeypatch.setenv("LEADFLOW_TASK_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("LEADFLOW_TASK_WEBHOOK_SECRET", SECRET)
        assert handoff("run-1", AS_OF) == 2
        assert handoff("run-2", AS_OF) == 0
        assert len(receiver.accepted) == 2 and receiver.bad_signatures == 0
        assert {
            (body["task"]["owner_rep_id"], body["task"]["assignment_rule"])
            for body in receiver.accepted.values()
        } == {("rep_01", "emea_smb"), ("rep_02", "account_owner")}
    assert sorted(path.name for path in (data_dir / "tasks").glob("*.csv")) == [
        "rep_01.csv",
        "rep_02.csv",
    ]


@pytest.mark.slow
def test_leadflow_digest_sends_each_rep_one_digest_a_day(target, data_dir, monkeypatch):
    from flows.handoff import handoff

    build_marts(target)
    handoff("run-1", AS_OF)
    arguments = ["digest", "--as-of", "2026-12-07T07:00:00", "--json"]
    first = runner.invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["digests_sent"] == 2
    again = runner.invoke(app, arguments)
    assert json.loads(again.stdout)["digests_sent"] == 0
    assert len(list((data_dir / "outbox").glob("digest-*.eml"))) == 2

    monkeypatch.setenv("LEADFLOW_DIGEST_ENABLED", "false")
    off = runner.invoke(app, ["digest"])
    assert off.exit_code == 0 and "turned off" in off.stdout


@pytest.mark.slow
def test_on_postgresql_leadflow_digest_goes_out_while_a_pipeline_runs(target, monkeypatch):
    """On PostgreSQL a pipeline holds its advisory lock; the digest does not wait for it."""
    from flows.handoff import handoff
    from flows.postgres import PostgresConnection

    if not isinstance(target, PostgresTarget):
        pytest.skip("on the DuckDB file the digest takes its turn as the one writer")
    build_marts(target)
    handoff("run-1", AS_OF)
    monkeypatch.setenv("LEADFLOW_RUN_WAIT_SECONDS", "1")
    with closing(PostgresConnection(target)) as running_pipeline:
        assert running_pipeline.try_advisory_lock("pipeline")
        result = runner.invoke(app, ["digest", "--as-of", "2026-12-07T07:00:00", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["digests_sent"] == 2


@pytest.mark.slow
def test_leadflow_digest_before_any_run_says_what_to_do(target):
    result = runner.invoke(app, ["digest"])
    assert result.exit_code == 1
    assert "run `leadflow run` first" in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_real_run_posts_its_hand_offs_and_the_digest_reads_the_real_marts(data_dir, monkeypatch):
    import duckdb

    from flows.demo.generate import generate_dataset
    from flows.digest import reps_daily_digest
    from flows.pipeline import lead_pipeline

    generate_dataset(data_dir / "inbox", leads=1500, seed=7, as_of=datetime(2026, 11, 1))
    run_at = datetime(2026, 11, 1, 8, 30)
    with task_receiver(SECRET) as receiver:
        monkeypatch.setenv("LEADFLOW_TASK_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("LEADFLOW_TASK_WEBHOOK_SECRET", SECRET)
        summary = lead_pipeline(as_of=run_at)
        assert summary.handed_off > 0
        assert receiver.bad_signatures == 0 and receiver.repeats == []
    digest = reps_daily_digest(as_of=run_at)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        handed_off = {
            f"{task_id}:open"
            for (task_id,) in connection.execute(
                "select task_id from ops.sales_tasks where reason = 'mql_handoff' "
                "and status = 'open'"
            ).fetchall()
        }
        reps = connection.execute(
            "select count(distinct owner_rep_id) from ops.sales_tasks as tasks "
            "inner join main.dim_reps as reps on tasks.owner_rep_id = reps.rep_id "
            "where tasks.status = 'open' and reps.is_active"
        ).fetchone()
    # The hand-off posted its open tasks (the nurture's follow-ups go with the next hand-off).
    assert handed_off <= set(receiver.accepted)
    assert reps is not None and digest["digests_sent"] == reps[0] > 0
    assert len(list((data_dir / "outbox").glob("digest-*.eml"))) == reps[0]
