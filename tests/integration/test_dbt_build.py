"""The real `dbt build` of dbt_project/ on a hand-made warehouse where every stage rule fires.

Each lead below is written to trigger one rule of the "definitions" doc; the tests read the
marts back and check that lead got the stage, reason, track, owner and queue it should.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.dbt_runner import DbtBuildError, generate_docs, run_dbt_build
from flows.dbt_selection import forget_build, last_build_finished_at
from flows.settings import PROJECT_ROOT, Settings, load_settings
from flows.warehouse import RAW_TABLES, ensure_schema
from tests.dbt_project_checks import names_too_long_for_postgres, undescribed, without_tested_key
from tests.integration.dbt_invocation import build_failures, invoke_dbt_build

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 22)


def days_ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


@dataclass(frozen=True)
class Lead:
    """A person as a source sends them; only the fields a stage rule looks at vary."""

    email: str
    title: str = "VP of Marketing"
    industry: str = "Software"
    employee_count: int = 500
    country: str = "US"
    created_days_ago: float = 200


# Fit of the default Lead: VP title 20 + target industry 15 + 50+ and 200+ employees 20 = 55,
# above the fit threshold (35). Low fit: a free mailbox and a small company outside the ICP.
LEADS = {
    "mql": Lead("Mia.Quinn@Northwind.com"),
    "enterprise_mql": Lead("ella@bigbank.co.uk", employee_count=5000, country="GB"),
    "handed_off": Lead("hank@harbor.com"),
    "requalified": Lead("rita@redwood.com"),
    "not_ready": Lead("nora@nimbus.com"),
    "lost_to_competitor": Lead("larry@lumen.com"),
    "unresponsive": Lead("uma@orbit.com"),
    "bad_fit": Lead("bert@beacon.com"),
    "accepted": Lead("sam@summit.com"),
    "opportunity": Lead("olga@apex.com"),
    "customer": Lead("carl@cobalt.com"),
    "competitor": Lead("vic@rivalflow.com"),
    "student": Lead("stu@northfield.edu", title="Student", industry="Education"),
    "low_fit": Lead("lou.fit@gmail.com", "Marketing Coordinator", "Retail", 15),
    "low_engagement": Lead("lee@lakeside.com"),
    "no_engagement": Lead("ned@nova.com"),
    "unsubscribed": Lead("ursula@gmail.com", "Marketing Coordinator", "Retail", 15),
    "unserved": Lead("nnamdi@lagoslabs.com", country="NG"),
}

STRONG_INTENT = (("demo_request", 1), ("pricing_page_view", 1), ("pricing_page_view", 1))
EVENTS: dict[str, tuple[tuple[str, float], ...]] = {
    "mql": STRONG_INTENT,
    "enterprise_mql": STRONG_INTENT,
    "handed_off": (("page_view", 30),),
    # Engaged before sales said "bad timing" 30 days ago, and enough again after it.
    "requalified": (("page_view", 60), *STRONG_INTENT),
    # Keen before sales said "not ready" 10 days ago, quiet since: stays recycled.
    "not_ready": (("demo_request", 15), ("pricing_page_view", 15)),
    "competitor": STRONG_INTENT,
    "student": STRONG_INTENT,
    "low_fit": (("page_view", 2), ("page_view", 2), ("email_click", 3)),
    "low_engagement": (("email_open", 2),),
    "unsubscribed": (("page_view", 5), ("unsubscribe", 4)),
    "unserved": (("page_view", 3),),
}

# (outcome, reason, days ago): sales' feedback, in the order sales recorded it.
OUTCOMES: dict[str, tuple[tuple[str, str | None, float], ...]] = {
    "requalified": (("rejected", "bad_timing", 30),),
    "not_ready": (("rejected", "not_ready", 10),),
    "lost_to_competitor": (
        ("accepted", None, 90),
        ("opportunity", None, 60),
        ("lost", "competitor", 20),
    ),
    "unresponsive": (("no_response", None, 15),),
    "bad_fit": (("rejected", "bad_fit", 15),),
    "accepted": (("accepted", None, 5),),
    "opportunity": (("accepted", None, 20), ("opportunity", None, 10)),
    "customer": (("accepted", None, 90), ("won", None, 30), ("lost", "no_budget", 5)),
}

REPS = (
    ("rep_na_1", "Nadia North", "NA", True),
    ("rep_na_2", "Ned Atlantic", "NA", True),
    ("rep_na_gone", "Gone Rep", "NA", False),
    ("rep_emea_1", "Emma Europe", "EMEA", True),
)

TRACKS = ("warm_up", "education", "recycle_timing", "competitor_winback", "reengage")


def lead_id(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def insert_raw(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict[str, Any]],
    load_id: str = "load_test",
    loaded_at: datetime = AS_OF,
) -> None:
    """Append rows to raw.<table> with lineage, as extract would."""
    columns = [line.split()[0] for line in RAW_TABLES[table].strip().splitlines()]
    lineage = ["load_id", "source", "source_file", "source_line", "loaded_at"]
    values = [
        [row.get(column) for column in columns]
        + [load_id, row.get("source", "crm"), f"{table}__crm.csv", line, loaded_at]
        for line, row in enumerate(rows, start=1)
    ]
    placeholders = ", ".join("?" for _ in columns + lineage)
    connection.executemany(
        f"insert into raw.{table} ({', '.join(columns + lineage)}) values ({placeholders})", values
    )


def lead_rows() -> list[dict[str, Any]]:
    rows = [
        {
            "source_lead_id": f"CRM-{number}",
            "email": lead.email,
            "first_name": name.title(),
            "company": lead.email.split("@")[1],
            "title": lead.title,
            "industry": lead.industry,
            "employee_count": lead.employee_count,
            "country": lead.country,
            "lead_source": "organic",
            "is_do_not_email": False,
            "created_at": days_ago(lead.created_days_ago),
            "updated_at": days_ago(lead.created_days_ago),
        }
        for number, (name, lead) in enumerate(LEADS.items())
    ]
    # The same MQL again from the web form, newer, with other capitals and no title: it merges
    # into one lead that keeps the title, and keeps the CRM's company name over the newer one
    # (seed source_priority trusts the CRM before web forms).
    rows.append(
        {
            "source_lead_id": "WF-1",
            "email": "  mia.quinn@northwind.COM ",
            "company": "Northwind Traders",
            "is_do_not_email": False,
            "created_at": days_ago(50),
            "updated_at": days_ago(3),
            "source": "web_forms",
        }
    )
    return rows


def load_scenario(connection: duckdb.DuckDBPyConnection) -> None:
    insert_raw(connection, "leads", lead_rows())
    insert_raw(
        connection,
        "events",
        [
            {
                "event_id": f"evt-{name}-{number}",
                "email": LEADS[name].email,
                "event_type": event_type,
                "occurred_at": days_ago(age),
            }
            for name, events in EVENTS.items()
            for number, (event_type, age) in enumerate(events)
        ],
    )
    insert_raw(
        connection,
        "outcomes",
        [
            {
                "outcome_id": f"out-{name}-{number}",
                "email": LEADS[name].email,
                "outcome": outcome,
                "reason": reason,
                "occurred_at": days_ago(age),
            }
            for name, outcomes in OUTCOMES.items()
            for number, (outcome, reason, age) in enumerate(outcomes)
        ],
    )
    insert_raw(
        connection,
        "reps",
        [
            {"rep_id": rep_id, "name": name, "email": f"{rep_id}@leadflow.example",
             "region": region, "segment": "smb", "is_active": active}
            for rep_id, name, region, active in REPS
        ],
    )  # fmt: skip
    connection.executemany(
        """insert into ops.nurture_steps (track, step, template, delay_days, subject,
               follow_up_title, follow_up_due_days)
           values (?, ?, ?, ?, ?, ?, ?)""",
        [
            (track, step, f"{track}/{step}.html", delay, f"Step {step}", "Call them", 2)
            for track in TRACKS
            for step, delay in ((1, 0), (2, 3))
        ],
    )
    handed_off = LEADS["handed_off"].email
    connection.execute(
        """insert into ops.sales_tasks (task_id, lead_id, email, owner_rep_id, owner_email,
               reason, title, why_now, due_at, status, created_at, run_id)
           values (?, ?, ?, 'rep_na_1', 'rep_na_1@leadflow.example', 'mql_handoff',
                   'Follow up', 'Requested a demo', ?, 'open', ?, 'run-1')""",
        ["task-1", lead_id(handed_off), handed_off, days_ago(4), days_ago(5)],
    )
    low_engagement = LEADS["low_engagement"].email
    connection.execute(
        """insert into ops.email_sends (message_key, lead_id, email, track, step, template,
               subject, status, provider, follow_up_title, follow_up_due_days, why_now,
               created_at, sent_at, run_id)
           values (?, ?, ?, 'warm_up', 1, 'warm_up/1.html', 'Step 1', 'sent', 'outbox',
                   'Call them', 2, 'Opened our emails', ?, ?, 'run-1')""",
        ["msg-1", lead_id(low_engagement), low_engagement, days_ago(10), days_ago(10)],
    )


def dbt_build(work_dir: Path, as_of: datetime = AS_OF, *options: str) -> None:
    failures = build_failures(invoke_dbt_build(work_dir, as_of, *options))
    if failures:
        pytest.fail("dbt build failed:\n" + "\n".join(failures))


def new_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as connection:
        ensure_schema(connection)


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    work_dir = tmp_path_factory.mktemp("dbt-build")
    warehouse = work_dir / "warehouse.duckdb"
    new_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as connection:
        load_scenario(connection)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
        monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        dbt_build(work_dir)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        yield connection


def by_lead(connection: duckdb.DuckDBPyConnection, sql: str) -> dict[str, tuple[Any, ...]]:
    """Rows of `sql` (lead_id first) keyed by the scenario's name for the lead."""
    names = {lead_id(lead.email): name for name, lead in LEADS.items()}
    return {names[row[0]]: tuple(row[1:]) for row in connection.execute(sql).fetchall()}


def test_build_succeeds_on_an_empty_warehouse(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    new_warehouse(warehouse)
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    dbt_build(tmp_path)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        counts = [
            connection.execute(f"select count(*) from main.{mart}").fetchall()[0][0]
            for mart in (
                "dim_leads",
                "fct_lead_events",
                "fct_handoff_queue",
                "fct_nurture_queue",
                "snp_lead_stages",
                "fct_lead_stage_history",
                "fct_funnel_monthly",
            )
        ]
    assert counts == [0, 0, 0, 0, 0, 0, 0]


def test_each_stage_rule_gives_its_stage_reason_and_track(marts):
    stages = by_lead(marts, "select lead_id, stage, stage_reason, nurture_track from dim_leads")
    assert stages == {
        "mql": ("mql", "meets_mql_thresholds", None),
        "enterprise_mql": ("mql", "meets_mql_thresholds", None),
        "handed_off": ("mql", "awaiting_sales_feedback", None),
        "requalified": ("mql", "requalified_after_recycle", None),
        "not_ready": ("recycled", "not_ready", "recycle_timing"),
        "lost_to_competitor": ("recycled", "competitor", "competitor_winback"),
        "unresponsive": ("recycled", "unresponsive", "reengage"),
        "bad_fit": ("disqualified", "bad_fit", None),
        "accepted": ("sql", "accepted_by_sales", None),
        "opportunity": ("opportunity", "opportunity_open", None),
        "customer": ("customer", "won", None),
        "competitor": ("disqualified", "competitor_employee", None),
        "student": ("disqualified", "student", None),
        "low_fit": ("engaged", "not_ready_low_fit", "education"),
        "low_engagement": ("engaged", "not_ready_low_engagement", "warm_up"),
        "no_engagement": ("new", "not_ready_no_engagement", "warm_up"),
        "unsubscribed": ("engaged", "not_ready_low_fit", "education"),
        "unserved": ("engaged", "not_ready_low_fit", "education"),
    }


def test_records_of_one_person_merge_into_one_lead(marts):
    merged = by_lead(
        marts,
        "select lead_id, email, title, company, record_count, source_count from dim_leads",
    )
    assert merged["mql"] == (
        "mia.quinn@northwind.com", "VP of Marketing", "Northwind.com", 2, 2,
    )  # fmt: skip


def test_owners_are_active_reps_of_the_region_or_the_fallback_region(marts):
    owners = by_lead(marts, "select lead_id, region, owner_rep_id from dim_leads")
    assert owners["enterprise_mql"] == ("EMEA", "rep_emea_1")
    assert owners["unserved"][0] == "NA"
    na_owners = {owner for name, (region, owner) in owners.items() if region == "NA"}
    assert na_owners == {"rep_na_1", "rep_na_2"}


def test_handoff_queue_holds_new_mqls_with_their_sla_and_why_now(marts):
    queue = by_lead(
        marts, "select lead_id, owner_rep_id, segment, due_at, why_now from fct_handoff_queue"
    )
    assert set(queue) == {"mql", "enterprise_mql", "requalified"}
    assert queue["mql"][1:3] == ("mid_market", AS_OF + timedelta(hours=24))
    assert queue["enterprise_mql"][:3] == ("rep_emea_1", "enterprise", AS_OF + timedelta(hours=8))
    # Why the lead is sales-ready in the reasons seed's words, then its strongest signals.
    assert queue["mql"][3].startswith(
        "Fit and engagement both reach the MQL thresholds. "
        "Requested a demo once in the last 14 days; "
    )
    assert queue["requalified"][3].startswith("A recycled lead whose engagement since the")
    assert "VP-level title (+20 fit)" in queue["mql"][3]


def test_nurture_queue_schedules_the_next_step_of_each_nurtured_lead(marts):
    queue = by_lead(
        marts,
        "select lead_id, nurture_track, next_step, is_due, is_suppressed from fct_nurture_queue",
    )
    assert queue == {
        "not_ready": ("recycle_timing", 1, True, False),
        "lost_to_competitor": ("competitor_winback", 1, True, False),
        "unresponsive": ("reengage", 1, True, False),
        "low_fit": ("education", 1, True, False),
        "low_engagement": ("warm_up", 2, True, False),
        "no_engagement": ("warm_up", 1, True, False),
        "unsubscribed": ("education", 1, False, True),
        "unserved": ("education", 1, True, False),
    }
    due = by_lead(marts, "select lead_id, due_at from fct_nurture_queue")
    assert due["low_engagement"] == (days_ago(10) + timedelta(days=3),)
    assert due["not_ready"] == (days_ago(10),)


def test_quiet_hours_defer_a_step_in_the_lead_time_zone(marts, tmp_path, monkeypatch):
    """Sunday 15:00 UTC with a Sunday 09:00-11:00 window: 10:00 in New York (sent), 16:00 in
    Lagos (deferred, still queued). The queue alone is rebuilt, on a copy of the warehouse."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(
        marts.execute(
            "select path from duckdb_databases() where database_name = current_database()"
        ).fetchone()[0],
        warehouse,
    )
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    as_of = AS_OF + timedelta(hours=15)
    window = {"days": ["sun"], "start": "09:00", "end": "11:00"}
    dbt_build(
        tmp_path,
        as_of,
        "--select", "country_time_zones fct_nurture_queue",
        "--vars", json.dumps({"as_of": as_of.isoformat(sep=" "), "nurture_send_window": window}),
    )  # fmt: skip
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        queue = by_lead(
            connection,
            "select lead_id, time_zone, is_due, is_deferred_quiet_hours from fct_nurture_queue "
            "where lead_id in (select lead_id from dim_leads where country in ('US', 'NG')) "
            "and not is_suppressed",
        )
    assert queue.pop("unserved") == ("Africa/Lagos", False, True)
    assert set(queue.values()) == {("America/New_York", True, False)}


def test_stage_history_keeps_each_stage_a_later_run_sees(tmp_path, monkeypatch):
    """Runs a day apart: the snapshot keeps the first stage and dates the change to the run that
    saw it. The same run repeated after the lead moved again (as a run repeats once hand-off
    has written its tasks) records the move just after; a run an hour later with nothing new
    adds no version."""
    warehouse = tmp_path / "warehouse.duckdb"
    new_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as connection:
        load_scenario(connection)
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    dbt_build(tmp_path)
    next_day = AS_OF + timedelta(days=1)
    for outcome, occurred_at in (
        ("accepted", AS_OF + timedelta(hours=2)),
        ("opportunity", next_day),
    ):
        with duckdb.connect(str(warehouse)) as connection:
            insert_raw(
                connection,
                "outcomes",
                [{"outcome_id": f"out-{outcome}-mia", "email": LEADS["mql"].email,
                  "outcome": outcome, "occurred_at": occurred_at}],
                load_id=f"load_{outcome}",
            )  # fmt: skip
        dbt_build(tmp_path, as_of=next_day)
    versions_after_change = count_stage_versions(warehouse)
    dbt_build(tmp_path, as_of=next_day + timedelta(hours=1))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        history = connection.execute(
            """select stage, entered_at, left_at, is_current, days_in_stage
               from fct_lead_stage_history where lead_id = ? order by stage_sequence""",
            [lead_id(LEADS["mql"].email)],
        ).fetchall()
    just_after = next_day + timedelta(microseconds=1)
    assert [row[:4] for row in history] == [
        ("mql", AS_OF, next_day, False),
        ("sql", next_day, just_after, False),
        ("opportunity", just_after, None, True),
    ]
    assert history[0][4] == 1.0
    assert versions_after_change > len(LEADS)
    assert count_stage_versions(warehouse) == versions_after_change


def count_stage_versions(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return int(connection.execute("select count(*) from snp_lead_stages").fetchone()[0])


MARTS = (
    "dim_leads",
    "fct_lead_events",
    "fct_handoff_queue",
    "fct_nurture_queue",
    "fct_funnel_monthly",
    "fct_handoff_sla",
    "fct_handoff_sla_by_rep",
    "fct_campaign_attribution",
    "fct_score_calibration",
)


def read_marts(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return {
            mart: connection.execute(f"select * from main.{mart} order by all").fetchall()
            for mart in MARTS
        }


def test_an_incremental_run_gives_the_marts_of_a_full_refresh(tmp_path, monkeypatch):
    """A second load adds events (some on a day whose cap is already partly used), re-delivers
    one with another campaign, and brings a lead record that gives a known lead a second
    address, one only an event knew so far; the incremental run gives what rebuilding from raw
    gives, and the event now counts for that lead."""
    warehouse = tmp_path / "warehouse.duckdb"
    new_warehouse(warehouse)
    newcomer_email = "lee.new@lakeside.com"
    with duckdb.connect(str(warehouse)) as connection:
        load_scenario(connection)
        insert_raw(
            connection,
            "events",
            [{"event_id": "evt-newcomer", "email": newcomer_email, "event_type": "demo_request",
              "occurred_at": days_ago(2), "campaign": "Ads"}],
            load_id="load_newcomer",
        )  # fmt: skip
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    dbt_build(tmp_path)
    later_events = [
        {"event_id": "evt-mql-0", "email": LEADS["mql"].email, "event_type": "demo_request",
         "occurred_at": days_ago(1), "campaign": "Webinar - Spring"},
        {"event_id": "evt-late-1", "email": LEADS["mql"].email,
         "event_type": "pricing_page_view", "occurred_at": days_ago(1) - timedelta(hours=1)},
        {"event_id": "evt-late-2", "email": LEADS["low_engagement"].email,
         "event_type": "webinar_attended", "occurred_at": days_ago(0.5), "campaign": "Ads"},
        {"event_id": "evt-late-3", "email": LEADS["no_engagement"].email,
         "event_type": "page_view", "occurred_at": days_ago(3)},
    ]  # fmt: skip
    # The CRM record of low_engagement again, now with the new address as well.
    second_address = {
        "source_lead_id": f"CRM-{list(LEADS).index('low_engagement')}",
        "email": newcomer_email,
        "is_do_not_email": False,
        "created_at": days_ago(1),
        "updated_at": days_ago(1),
    }
    loaded_later = AS_OF + timedelta(hours=1)
    with duckdb.connect(str(warehouse)) as connection:
        insert_raw(connection, "events", later_events, "load_later", loaded_later)
        insert_raw(connection, "leads", [second_address], "load_later", loaded_later)
    next_run = AS_OF + timedelta(hours=2)
    dbt_build(tmp_path, next_run)
    # A lead record came with an address: every stored event's person is compared again.
    scoring = tmp_path / "target/compiled/leadflow/models/intermediate/int_lead_events_scored.sql"
    assert "stored_events.email = lead_emails.email" in scoring.read_text()
    incremental = read_marts(warehouse)
    dbt_build(tmp_path, next_run, "--full-refresh")
    assert read_marts(warehouse) == incremental
    redelivered = [
        row for row in incremental["fct_lead_events"] if row[0] in ("evt-mql-0", "evt-late-2")
    ]
    assert [(row[0], row[5]) for row in redelivered] == [
        ("evt-late-2", "Ads"),
        ("evt-mql-0", "Webinar - Spring"),
    ]
    newcomer_events = [row for row in incremental["fct_lead_events"] if row[0] == "evt-newcomer"]
    assert [row[1] for row in newcomer_events] == [lead_id(LEADS["low_engagement"].email)]


def settings_with_scenario() -> Settings:
    """The test's data folder, with the scenario loaded into a new warehouse there."""
    settings = load_settings()
    settings.warehouse_path.parent.mkdir(parents=True)
    new_warehouse(settings.warehouse_path)
    with duckdb.connect(str(settings.warehouse_path)) as connection:
        load_scenario(connection)
    return settings


def built_nodes(settings: Settings, resource_type: str) -> set[str]:
    results = json.loads((settings.dbt_target_dir / "run_results.json").read_text())["results"]
    return {
        result["unique_id"].split(".")[2]
        for result in results
        if result["unique_id"].startswith(f"{resource_type}.")
    }


def add_later_event(warehouse: Path, event_id: str, event_type: str, loaded_at: datetime) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        insert_raw(
            connection,
            "events",
            [{"event_id": event_id, "email": LEADS["low_engagement"].email,
              "event_type": event_type, "occurred_at": days_ago(0.5)}],
            load_id=f"load_{event_id}",
            loaded_at=loaded_at,
        )  # fmt: skip


def test_a_run_rebuilds_and_tests_what_new_events_reach_as_a_full_build_would(data_dir):
    """After new events only, the transform leaves identity, leads and fit as they were and
    rebuilds the rest; forgetting the last build and rebuilding everything changes nothing.
    The event checks of such a run read only the new loads, and still stop a bad one."""
    settings = settings_with_scenario()
    first = run_dbt_build(settings, AS_OF)
    assert first.rebuilt.startswith("everything")
    assert "int_leads_staged" in built_nodes(settings, "unit_test")
    first_finished_at = last_build_finished_at(settings.dbt_state_dir)
    why_now_checks = settings.dbt_target_dir / (
        "run/leadflow/models/intermediate/int_leads_top_contributions.yml"
    )
    # With no build before it, the "why now" checks read every row.
    assert "cast('1900-01-01 00:00:00'" in next(why_now_checks.glob("unique_*.sql")).read_text()
    add_later_event(
        settings.warehouse_path, "evt-later", "demo_request", AS_OF + timedelta(hours=1)
    )

    later = AS_OF + timedelta(hours=2)
    selective = run_dbt_build(settings, later)
    assert not selective.rebuilt.startswith("everything")
    rebuilt = built_nodes(settings, "model")
    assert {"int_lead_events_scored", "int_leads_staged", "dim_leads"} <= rebuilt
    assert rebuilt.isdisjoint(
        {"int_lead_identity_crosswalk", "int_leads_deduplicated", "int_leads_fit_scored"}
    )
    # No definition changed: the unit tests' outcome cannot have either.
    assert built_nodes(settings, "unit_test") == set()
    event_check = next(
        settings.dbt_target_dir.glob("run/leadflow/models/marts/fct_lead_events.yml/unique_*.sql")
    )
    assert "loaded_at >" in event_check.read_text()
    # The "why now" checks read the rows written since the first build finished: the lead
    # with the new event, not the rows the first build wrote (and tested).
    why_now_check = " ".join(next(why_now_checks.glob("unique_*.sql")).read_text().split())
    assert f"built_at > cast('{first_finished_at}'" in why_now_check
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        checked, stored = connection.execute(
            "select count(*) filter (where built_at > cast(? as timestamp)), count(*) "
            "from main.int_leads_top_contributions",
            [first_finished_at],
        ).fetchone()
    assert 0 < checked < stored
    # Nobody's emails changed: event scoring does not compare every event's person again.
    scoring = settings.dbt_target_dir / "compiled/leadflow/models/intermediate"
    assert "stored_events.email = lead_emails.email" not in (
        (scoring / "int_lead_events_scored.sql").read_text()
    )
    after_selective_run = read_marts(settings.warehouse_path)
    assert any(row[0] == "evt-later" for row in after_selective_run["fct_lead_events"])

    forget_build(settings.dbt_state_dir)
    assert run_dbt_build(settings, later).rebuilt.startswith("everything")
    assert read_marts(settings.warehouse_path) == after_selective_run

    # A loader that let an unknown event type through: the next run's checks of the new load
    # stop the build, and the last good build stays the reference.
    add_later_event(settings.warehouse_path, "evt-bogus", "fax_received", later)
    with pytest.raises(DbtBuildError, match="accepted_values_stg_raw__events_event_type"):
        run_dbt_build(settings, later + timedelta(hours=1))
    assert (settings.dbt_state_dir / "manifest.json").is_file()


def read_why_now_and_stage(warehouse: Path) -> dict[str, tuple[str, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute("select lead_id, why_now, stage from main.dim_leads").fetchall()
    return {lead: (why_now, stage) for lead, why_now, stage in rows}


def test_the_clock_alone_changes_a_why_now_and_a_stage_when_its_time_comes_as_a_full_build_would(
    data_dir,
):
    """With no new data, later runs work out again only the "why now" contributions and the
    stages whose time has come (an event leaving the 14-day window, a decaying event type
    falling below a fit rule, an MQL's engagement decaying below the threshold), and dim_leads
    counts "last N days ago" at the new clock; each gives the marts of a build that works out
    every lead."""
    settings = settings_with_scenario()
    run_dbt_build(settings, AS_OF)
    seen = [read_why_now_and_stage(settings.warehouse_path)]
    compiled = settings.dbt_target_dir / "compiled/leadflow/models/intermediate"
    per_lead_models = [
        compiled / f"{model}.sql" for model in ("int_leads_top_contributions", "int_leads_staged")
    ]

    for later in (AS_OF + timedelta(days=1, hours=5), AS_OF + timedelta(days=15)):
        run_dbt_build(settings, later)
        assert all("changes_at <=" in model.read_text() for model in per_lead_models)
        selective = read_marts(settings.warehouse_path)
        seen.append(read_why_now_and_stage(settings.warehouse_path))

        forget_build(settings.dbt_state_dir)
        run_dbt_build(settings, later)
        assert not any("changes_at <=" in model.read_text() for model in per_lead_models)
        assert read_marts(settings.warehouse_path) == selective

    # The clock did change sentences and stages, so the runs above had something to get right.
    sentences = [{lead: row[0] for lead, row in run.items()} for run in seen]
    assert sentences[0] != sentences[1] != sentences[2]
    stages = [{lead: row[1] for lead, row in run.items()} for run in seen]
    assert stages[0] != stages[2]


QUIET = "only what the clock reaches"


def test_an_hour_with_nothing_new_builds_what_the_clock_reaches_as_a_full_build_would(data_dir):
    """The hourly run on a quiet hour: the same source tables and definitions as the last
    successful build, so only the models that read the clock (and what reads them) are built
    again, with their data tests, and the marts are those of a build of everything. A change
    to an operational table, new raw rows or a failed build in between: compared as usual."""
    settings = settings_with_scenario()
    run_dbt_build(settings, AS_OF)
    one_hour_later = AS_OF + timedelta(hours=1)

    quiet = run_dbt_build(settings, one_hour_later)

    assert quiet.rebuilt.startswith(QUIET)
    rebuilt = built_nodes(settings, "model")
    assert {"int_leads_staged", "fct_nurture_queue", "fct_handoff_sla", "dim_leads"} <= rebuilt
    # Nothing fresher, modified or written by the hand-off or nurture flows since.
    assert rebuilt.isdisjoint({"stg_ops__sales_tasks", "stg_raw__events", "int_lead_emails"})
    assert built_nodes(settings, "test") and not built_nodes(settings, "unit_test")
    after_quiet_run = read_marts(settings.warehouse_path)
    forget_build(settings.dbt_state_dir)
    assert run_dbt_build(settings, one_hour_later).rebuilt.startswith("everything")
    assert read_marts(settings.warehouse_path) == after_quiet_run

    # A sales task closed in place (same row count): the operational models are rebuilt.
    with duckdb.connect(str(settings.warehouse_path)) as connection:
        connection.execute("update ops.sales_tasks set status = 'closed'")
    two_hours_later = AS_OF + timedelta(hours=2)
    assert not run_dbt_build(settings, two_hours_later).rebuilt.startswith(QUIET)
    assert "stg_ops__sales_tasks" in built_nodes(settings, "model")
    assert run_dbt_build(settings, two_hours_later + timedelta(hours=1)).rebuilt.startswith(QUIET)

    # A failed build in between: the next run compares as usual, even with the bad rows gone.
    add_later_event(settings.warehouse_path, "evt-bogus", "fax_received", two_hours_later)
    with pytest.raises(DbtBuildError):
        run_dbt_build(settings, AS_OF + timedelta(hours=4))
    with duckdb.connect(str(settings.warehouse_path)) as connection:
        connection.execute("delete from raw.events where event_id = 'evt-bogus'")
    assert not run_dbt_build(settings, AS_OF + timedelta(hours=5)).rebuilt.startswith(QUIET)


def test_an_edited_incremental_model_is_built_afresh_by_the_next_run(
    data_dir, tmp_path, monkeypatch
):
    """A run writes only some rows of an incremental model: after its SQL is edited, the rows
    no run writes again would stay as the old SQL made them. The next run sees the change
    (dbt's state:modified) and builds it afresh, every lead at once."""
    project = tmp_path / "project"
    for folder in ("dbt_project", "expectations", "templates"):
        shutil.copytree(
            PROJECT_ROOT / folder,
            project / folder,
            ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
        )
    monkeypatch.setenv("LEADFLOW_PROJECT_DIR", str(project))
    settings = settings_with_scenario()

    def stages_written_by_then(finished_at: str) -> int:
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
            (count,) = connection.execute(
                "select count(*) from main.int_leads_staged where built_at < cast(? as timestamp)",
                [finished_at],
            ).fetchone()
        return int(count)

    run_dbt_build(settings, AS_OF)
    first_finished_at = last_build_finished_at(settings.dbt_state_dir)
    unedited = run_dbt_build(settings, AS_OF + timedelta(hours=1))
    assert "incremental models changed" not in unedited.rebuilt
    # An ordinary run leaves most stages as the first build wrote them.
    assert stages_written_by_then(first_finished_at) > 0

    staged = project / "dbt_project/models/intermediate/int_leads_staged.sql"
    staged.write_text(staged.read_text() + "\n-- An edit: the stage rules as they would change.\n")
    unedited_finished_at = last_build_finished_at(settings.dbt_state_dir)
    edited = run_dbt_build(settings, AS_OF + timedelta(hours=2))

    assert "incremental models changed or read a changed view (int_leads_staged)" in edited.rebuilt
    assert stages_written_by_then(unedited_finished_at) == 0


@dataclass(frozen=True)
class ProjectDocs:
    """What `dbt docs generate` wrote for a built warehouse: the project and the warehouse."""

    index: Path
    manifest: dict[str, Any]
    catalog: dict[str, Any]


@pytest.fixture(scope="module")
def project_docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectDocs]:
    """`leadflow docs` (dbt docs generate) on a warehouse built from the scenario."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path_factory.mktemp("docs") / "data"))
        settings = settings_with_scenario()
        run_dbt_build(settings, AS_OF)
        index = generate_docs(settings)
        yield ProjectDocs(
            index=index,
            manifest=json.loads((settings.dbt_target_dir / "manifest.json").read_text()),
            catalog=json.loads((settings.dbt_target_dir / "catalog.json").read_text()),
        )


def test_dbt_docs_carry_the_definitions_and_every_model(project_docs):
    """The docs site, a catalog of every model, and the definitions page in the descriptions
    marketing ops reads."""
    assert project_docs.index.is_file()
    nodes = project_docs.manifest["nodes"].values()
    models = {node["name"] for node in nodes if node["resource_type"] == "model"}
    cataloged = {node["metadata"]["name"] for node in project_docs.catalog["nodes"].values()}
    assert models <= cataloged
    dim_leads = next(node for node in nodes if node["name"] == "dim_leads")
    assert "How LeadFlow defines a lead, its score and its stage" in dim_leads["description"]
    # A lead's columns are described once (models/lead_columns.md) wherever they appear.
    profiled = next(node for node in nodes if node["name"] == "int_leads_profiled")
    for column in ("stage", "owner_email", "suppression_reason"):
        described_in_dim_leads = dim_leads["columns"][column]["description"]
        assert profiled["columns"][column]["description"] == described_in_dim_leads
    assert dim_leads["columns"]["stage"]["description"].startswith("Lifecycle stage: new,")


def test_every_model_seed_and_snapshot_is_described_with_each_column_and_its_key_tested(
    project_docs,
):
    assert undescribed(project_docs.manifest, project_docs.catalog) == []
    assert without_tested_key(project_docs.manifest) == []
    assert names_too_long_for_postgres(project_docs.manifest) == []
