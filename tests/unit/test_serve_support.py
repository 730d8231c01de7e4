"""What serving relies on, as plain functions: notifications to a webhook, the concurrency
limits' sizes, the nurture queue's last verdict, the schedule settings."""

import json
from collections.abc import Iterator
from datetime import datetime

import duckdb
import pytest
from pydantic import SecretStr

from flows.limits import EMAIL_PROVIDER, WAREHOUSE_WRITER, ConcurrencyLimit, concurrency_limits
from flows.notify import Notification, post_notification
from flows.send import QueueVerdict, last_queue_verdict, writers_turn
from flows.settings import ConfigError, Settings, load_settings
from flows.warehouse import WarehouseTarget, connect, ensure_schema, open_warehouse
from tests.webhook_receiver import WebhookReceiver, webhook_receiver


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[WebhookReceiver]:
    with webhook_receiver(getattr(request, "param", None)) as receiver:
        yield receiver


NOTIFICATION = Notification(
    event="gate_blocked",
    flow="lead_pipeline",
    run="amber-fox",
    flow_run_id="0191",
    reason="nurture_queue: 3 rows without an email",
    url="http://127.0.0.1:4200/runs/flow-run/0191",
    deployment="hourly",
)


def test_a_notification_names_the_run_the_flow_and_the_reason(receiver):
    assert post_notification(receiver.url, NOTIFICATION, backoff_s=0)
    (body,) = receiver.bodies
    assert body["event"] == "gate_blocked"
    assert body["flow"] == "lead_pipeline"
    assert body["run"] == "amber-fox"
    assert body["reason"] == "nurture_queue: 3 rows without an email"
    assert body["deployment"] == "hourly"
    assert body["text"] == (
        "LeadFlow gate blocked: lead_pipeline run amber-fox: nurture_queue: 3 rows without an "
        "email http://127.0.0.1:4200/runs/flow-run/0191"
    )


@pytest.mark.parametrize("receiver", [[503, 429]], indirect=True)
def test_a_busy_receiver_is_tried_again(receiver):
    assert post_notification(receiver.url, NOTIFICATION, backoff_s=0)
    assert len(receiver.bodies) == 3


@pytest.mark.parametrize("receiver", [[404]], indirect=True)
def test_a_refused_notification_is_not_retried_and_never_logs_the_url(receiver, caplog):
    assert not post_notification(receiver.url, NOTIFICATION, backoff_s=0)
    assert len(receiver.bodies) == 1
    assert "HTTP 404" in caplog.text
    assert "secret" not in caplog.text


def test_an_unreachable_receiver_does_not_fail_the_caller(caplog):
    assert not post_notification("http://127.0.0.1:9/hook", NOTIFICATION, backoff_s=0)
    assert "ConnectError" in caplog.text


def test_the_writer_limit_has_one_slot_and_the_provider_limit_its_configured_rate(monkeypatch):
    monkeypatch.setenv("LEADFLOW_EMAIL_PROVIDER_SLOTS", "5")
    monkeypatch.setenv("LEADFLOW_EMAIL_PROVIDER_SLOT_DECAY_PER_SECOND", "2.5")
    assert concurrency_limits(load_settings()) == [
        ConcurrencyLimit(WAREHOUSE_WRITER, 1),
        ConcurrencyLimit(EMAIL_PROVIDER, 5, 2.5),
    ]


def test_an_unknown_schedule_time_zone_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv("LEADFLOW_SCHEDULE_TIMEZONE", "Europe/Springfield")
    with pytest.raises(ConfigError, match=r"LEADFLOW_SCHEDULE_TIMEZONE: .*use an IANA name"):
        load_settings()


def test_the_notification_url_is_a_secret(monkeypatch):
    # A token no setting's name contains (LEADFLOW_TASK_WEBHOOK_SECRET has "secret").
    monkeypatch.setenv("LEADFLOW_NOTIFY_WEBHOOK_URL", "https://hooks.example/T0/t0k3n")
    settings = Settings()
    assert "t0k3n" not in repr(settings)


def record(warehouse: WarehouseTarget, run_id: str, started: str, success: bool | None) -> None:
    with open_warehouse(warehouse) as connection:
        ensure_schema(connection)
        connection.execute(
            "insert into ops.runs values (?, cast(? as timestamp), null, 'completed', null)",
            [run_id, started],
        )
        if success is not None:
            connection.execute(
                "insert into ops.gate_results values "
                "(?, 'nurture_queue', 'nurture_queue.critical', 'critical', ?, 10, ?, ?)",
                [
                    run_id,
                    success,
                    json.dumps([] if success else ["email is null in 3 rows"]),
                    datetime(2026, 12, 7, 8),
                ],
            )


def test_the_send_follows_the_gate_verdict_of_the_last_run_that_checked_the_queue(
    warehouse_target,
):
    warehouse = warehouse_target
    assert last_queue_verdict(warehouse) == QueueVerdict(run_id=None, passed=False)
    record(warehouse, "r1", "2026-12-07 08:00:00", success=True)
    assert last_queue_verdict(warehouse).passed
    record(warehouse, "r2", "2026-12-07 09:00:00", success=False)
    record(warehouse, "send", "2026-12-07 09:15:00", success=None)  # a send checks nothing
    blocked = last_queue_verdict(warehouse)
    assert (blocked.run_id, blocked.passed) == ("r2", False)
    assert "email is null in 3 rows" in blocked.reason
    record(warehouse, "r3", "2026-12-07 10:00:00", success=True)
    assert last_queue_verdict(warehouse).run_id == "r3"


def test_on_postgres_a_send_goes_on_while_a_pipeline_runs(postgres_database, tmp_path):
    # Its claims on the send ledger are atomic there: no turn to wait for (on DuckDB, the
    # one writer, it waits for the pipeline's lock and the writer slot).
    pipeline = connect(postgres_database)
    assert not isinstance(pipeline, duckdb.DuckDBPyConnection)
    assert pipeline.try_advisory_lock("pipeline")  # as a running pipeline's session holds it
    settings = Settings(
        data_dir=tmp_path,
        warehouse_url=SecretStr(postgres_database.url),
        run_wait_seconds=0,
        warehouse_writer_timeout_seconds=0.1,
    )
    with writers_turn(settings):
        pass
    pipeline.close()
