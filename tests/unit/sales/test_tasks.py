from __future__ import annotations

import csv
from datetime import datetime, timedelta

import pytest

from flows.crm_links import CrmLinks
from flows.sales.sinks import rep_file_name, write_rep_task_files
from flows.sales.tasks import (
    arrange_task_queues,
    create_follow_up_tasks,
    create_handoff_tasks,
    queued_tasks_by_rep,
)
from tests.unit.sales.task_marts import (
    AS_OF,
    add_email_event,
    add_handoff_queue,
    add_lead,
    add_send,
    create_task_marts,
)


@pytest.fixture(autouse=True)
def marts(warehouse):
    create_task_marts(warehouse)


def tasks(warehouse, columns="lead_id, reason, step, status"):
    return warehouse.execute(
        f"select {columns} from ops.sales_tasks order by lead_id, created_at, reason, step"
    ).fetchall()


QUEUE = [
    (
        "L1",
        "ann@acme.com",
        None,
        "Ann",
        "Lee",
        "Acme",
        "R1",
        "r1@x.com",
        "Viewed pricing",
        datetime(2026, 11, 23, 9),
    ),
    (
        "L2",
        "bo@beta.io",
        "+44 20 7946 0000",
        "Bo",
        None,
        None,
        "R2",
        "r2@x.com",
        "Webinar",
        datetime(2026, 11, 23, 9),
    ),
]


def test_a_lead_known_only_by_phone_is_handed_off_as_a_call(warehouse, tmp_path):
    add_handoff_queue(
        warehouse,
        [("L9", None, "+1 555 0100", "Cy", "Doe", None, "R1", "r1@x.com", "Demo request", AS_OF)],
    )
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 1
    write_rep_task_files(warehouse, tmp_path)
    with (tmp_path / rep_file_name("R1")).open(newline="") as handle:
        [task] = list(csv.DictReader(handle))
    assert (task["email"], task["phone"], task["title"]) == ("", "+1 555 0100", "Call Cy Doe")


def test_a_handoff_title_names_only_the_channels_the_lead_has(warehouse):
    add_handoff_queue(warehouse, QUEUE)
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    assert tasks(warehouse, "title") == [
        ("Email Ann Lee at Acme",),  # no phone: never a call
        ("Call or email Bo",),
    ]


CRM_ONLY = (
    "L7", None, None, None, None, "Acme", "R1", "r1@x.com", "Demo request", AS_OF,
    "crm_export", "7f3c9a2e-1b4d/x",
)  # fmt: skip


def test_a_lead_known_only_by_its_record_id_gets_a_task_naming_source_and_record(warehouse):
    add_handoff_queue(warehouse, [CRM_ONLY])
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 1
    assert warehouse.execute("select email, phone, title from ops.sales_tasks").fetchall() == [
        (None, None, "Follow up on crm_export record 7f3c9a2e-1b4d/x at Acme")
    ]


def test_a_crm_url_template_links_the_task_to_the_record(warehouse):
    add_handoff_queue(warehouse, [CRM_ONLY, QUEUE[0]])
    links = CrmLinks(fallback="https://crm.example/{source}/leads/{source_lead_id}?view=full")
    assert create_handoff_tasks(warehouse, "run-1", AS_OF, links) == 2
    assert warehouse.execute("select title from ops.sales_tasks order by lead_id").fetchall() == [
        ("Email Ann Lee at Acme",),  # reached by email: no CRM link
        (
            "Follow up on crm_export record 7f3c9a2e-1b4d/x at Acme "
            "https://crm.example/crm_export/leads/7f3c9a2e-1b4d%2Fx?view=full",
        ),
    ]


def test_a_source_with_its_own_crm_template_links_there_and_the_others_use_the_fallback(
    warehouse,
):
    hubspot = ("L6", *CRM_ONLY[1:10], "hubspot", "901")
    salesforce = ("L8", *CRM_ONLY[1:10], "salesforce", "00Q5e00001")
    add_handoff_queue(warehouse, [CRM_ONLY, hubspot, salesforce])
    links = CrmLinks(
        fallback="https://crm.example/leads/{source_lead_id}",
        by_source={
            "hubspot": "https://app.hubspot.com/contacts/123/record/0-1/{source_lead_id}",
            "salesforce": "https://acme.my.salesforce.com/lightning/r/Lead/{source_lead_id}/view",
        },
    )
    assert create_handoff_tasks(warehouse, "run-1", AS_OF, links) == 3
    assert warehouse.execute("select lead_id, title from ops.sales_tasks order by 1").fetchall() == [
        ("L6", "Follow up on hubspot record 901 at Acme "
               "https://app.hubspot.com/contacts/123/record/0-1/901"),
        ("L7", "Follow up on crm_export record 7f3c9a2e-1b4d/x at Acme "
               "https://crm.example/leads/7f3c9a2e-1b4d%2Fx"),
        ("L8", "Follow up on salesforce record 00Q5e00001 at Acme "
               "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e00001/view"),
    ]  # fmt: skip
    # A source's own template without the fallback: the other sources' tasks have no link.
    warehouse.execute("delete from ops.sales_tasks")
    create_handoff_tasks(warehouse, "run-2", AS_OF, CrmLinks(by_source=links.by_source))
    assert warehouse.execute(
        "select title from ops.sales_tasks where lead_id = 'L7'"
    ).fetchall() == [("Follow up on crm_export record 7f3c9a2e-1b4d/x at Acme",)]


def test_one_handoff_task_per_lead_however_often_it_runs(warehouse):
    add_handoff_queue(warehouse, QUEUE)
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 2
    assert create_handoff_tasks(warehouse, "run-2", AS_OF) == 0
    assert tasks(warehouse, "lead_id, owner_rep_id, why_now, due_at, status, priority, run_id") == [
        ("L1", "R1", "Viewed pricing", datetime(2026, 11, 23, 9), "open", 2050, "run-1"),
        ("L2", "R2", "Webinar", datetime(2026, 11, 23, 9), "open", 2050, "run-1"),
    ]


def test_a_new_handoff_round_supersedes_the_pending_one_and_keeps_it(warehouse):
    add_handoff_queue(warehouse, QUEUE[:1])
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    [(first_task,)] = warehouse.execute("select task_id from ops.sales_tasks").fetchall()
    # Sales recycled the lead and it qualified again: the queue holds it once more.
    warehouse.execute("update main.dim_leads set latest_outcome_at = timestamp '2026-12-01'")
    later = datetime(2026, 12, 2, 9)
    assert create_handoff_tasks(warehouse, "run-2", later) == 1
    assert create_handoff_tasks(warehouse, "run-3", later) == 0
    [(second_task,)] = warehouse.execute(
        "select task_id from ops.sales_tasks where run_id = 'run-2'"
    ).fetchall()
    assert tasks(warehouse, "task_id, step, status, closed_at, close_reason") == [
        (first_task, 1, "superseded", later, f"superseded by task {second_task}"),
        (second_task, 2, "open", None, None),
    ]


def test_a_task_records_the_rule_that_made_its_rep_the_owner(warehouse):
    add_handoff_queue(warehouse, QUEUE)
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    add_lead(warehouse, "L3", owner="R1")  # rule emea_smb gave it to R1
    add_send(warehouse, "k1", lead="L3", owner="R1", step=1)
    add_lead(warehouse, "L4", owner="R2")  # since the email went out, the lead moved to R2
    add_send(warehouse, "k2", lead="L4", owner="R1", step=1)
    create_follow_up_tasks(warehouse, "run-2", AS_OF, {("warm_up", 1): "always"})
    assert tasks(warehouse, "lead_id, reason, owner_rep_id, assignment_rule") == [
        ("L1", "mql_handoff", "R1", "rule_for_R1"),
        ("L2", "mql_handoff", "R2", "rule_for_R2"),
        ("L3", "nurture_follow_up", "R1", "emea_smb"),
        ("L4", "nurture_follow_up", "R1", None),  # no rule makes R1 its owner now
    ]


OPENED_AT = datetime(2026, 11, 25, 14)
CLICKED_AT = datetime(2026, 11, 26, 10)


def test_by_default_only_an_email_the_lead_engaged_with_makes_a_task(warehouse):
    add_lead(warehouse, "L1")
    add_send(warehouse, "k1", step=1)
    add_send(warehouse, "k2", "pending", step=2)
    add_send(warehouse, "k3", "failed", step=3)
    assert create_follow_up_tasks(warehouse, "run-1", AS_OF, {}) == 0  # sent, not opened yet
    add_email_event(warehouse, "k1", "email_open", OPENED_AT)
    add_email_event(warehouse, "k1", "email_open", CLICKED_AT)  # the first open counts
    assert create_follow_up_tasks(warehouse, "run-2", CLICKED_AT, {}) == 1
    assert create_follow_up_tasks(warehouse, "run-3", CLICKED_AT, {}) == 0
    assert tasks(warehouse, "track, step, title, why_now, due_at, status, priority") == [
        (
            "warm_up",
            1,
            "Offer Ann the worksheet (by email)",  # no phone on record
            'Opened the email "A quick idea" on 2026-11-25. Engages with us but the fit score '
            "is below the MQL threshold.",
            datetime(2026, 11, 27, 14),  # two days after the open, not the send
            "open",
            50,
        )
    ]


@pytest.mark.parametrize(
    ("policy", "events", "expected_due"),
    [
        ("always", [], datetime(2026, 11, 24, 9)),
        ("never", [("email_open", OPENED_AT), ("email_click", CLICKED_AT)], None),
        ("opened", [("email_click", CLICKED_AT)], None),
        ("opened", [("email_open", OPENED_AT)], datetime(2026, 11, 27, 14)),
        ("clicked", [("email_open", OPENED_AT)], None),
        ("clicked", [("email_open", OPENED_AT), ("email_click", CLICKED_AT)], datetime(2026, 11, 28, 10)),
        ("engaged", [("email_click", CLICKED_AT)], datetime(2026, 11, 28, 10)),
        ("engaged", [("email_click", CLICKED_AT), ("email_open", OPENED_AT)], datetime(2026, 11, 27, 14)),
    ],
)  # fmt: skip
def test_each_follow_up_policy(warehouse, policy, events, expected_due):
    add_lead(warehouse, "L1", phone="+1 555 0100")
    add_send(warehouse, "k1", step=2)
    add_send(warehouse, "other", step=3)  # another email's events never count for this one
    for event_type, occurred_at in events:
        add_email_event(warehouse, "other", event_type, occurred_at)
        add_email_event(warehouse, "k1", event_type, occurred_at)
    policies = {("warm_up", 2): policy, ("warm_up", 3): "never"}
    created = create_follow_up_tasks(warehouse, "run-1", CLICKED_AT, policies)
    assert tasks(warehouse, "due_at") == ([(expected_due,)] if expected_due else [])
    assert created == (1 if expected_due else 0)


def test_a_click_ranks_a_follow_up_above_an_open_and_the_title_offers_the_phone(warehouse):
    add_lead(warehouse, "L1", phone="+1 555 0100", score=80)
    add_lead(warehouse, "L2", score=20)
    add_send(warehouse, "k1", lead="L1")
    add_send(warehouse, "k2", lead="L2")
    add_email_event(warehouse, "k1", "email_open", OPENED_AT)
    add_email_event(warehouse, "k2", "email_click", CLICKED_AT)
    create_follow_up_tasks(warehouse, "run-1", CLICKED_AT, {})
    assert tasks(warehouse, "lead_id, title, priority, left(why_now, 30)") == [
        ("L1", "Offer Ann the worksheet (call or email)", 80, 'Opened the email "A quick idea'),
        ("L2", "Offer Ann the worksheet (by email)", 1020, 'Clicked a link in the email "A'),
    ]


def test_a_newer_follow_up_supersedes_the_older_and_a_handoff_beats_both(warehouse):
    add_lead(warehouse, "L1")
    add_send(warehouse, "k1", step=1)
    add_email_event(warehouse, "k1", "email_open", OPENED_AT)
    create_follow_up_tasks(warehouse, "run-1", OPENED_AT, {})
    add_send(warehouse, "k2", step=2)
    add_email_event(warehouse, "k2", "email_open", CLICKED_AT)
    create_follow_up_tasks(warehouse, "run-2", CLICKED_AT, {})
    assert tasks(warehouse) == [
        ("L1", "nurture_follow_up", 1, "superseded"),
        ("L1", "nurture_follow_up", 2, "open"),
    ]
    # The lead became sales-ready: the hand-off replaces the follow-up ...
    warehouse.execute("delete from main.dim_leads")
    add_handoff_queue(warehouse, QUEUE[:1])
    handed_off_at = datetime(2026, 11, 27, 9)
    create_handoff_tasks(warehouse, "run-3", handed_off_at)
    # ... and an engagement with an older email after it never pushes the hand-off aside.
    add_send(warehouse, "k3", step=3)
    add_email_event(warehouse, "k3", "email_click", datetime(2026, 11, 28))
    create_follow_up_tasks(warehouse, "run-4", datetime(2026, 11, 28, 9), {})
    assert tasks(warehouse, "reason, step, status") == [
        ("nurture_follow_up", 1, "superseded"),
        ("nurture_follow_up", 2, "superseded"),
        ("mql_handoff", 1, "open"),
        ("nurture_follow_up", 3, "superseded"),
    ]
    [(handoff_task,)] = warehouse.execute(
        "select task_id from ops.sales_tasks where reason = 'mql_handoff'"
    ).fetchall()
    assert warehouse.execute(
        "select close_reason from ops.sales_tasks where step = 3"
    ).fetchall() == [(f"superseded by task {handoff_task}",)]


def capacity(warehouse, rep_id, tasks_per_day):
    warehouse.execute("insert into main.dim_reps values (?, ?, true)", [rep_id, tasks_per_day])


def test_tasks_over_a_reps_capacity_wait_queued_highest_priority_first(warehouse):
    capacity(warehouse, "R1", 2)
    rows = [
        (f"L{n}", f"l{n}@acme.com", None, "A", "B", None, "R1", "r1@x.com", "Why", AS_OF)
        for n in range(1, 5)
    ]
    for row, score in zip(rows, (10, 90, 50, 70), strict=True):
        add_handoff_queue(warehouse, [row], score=score)
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 4
    assert tasks(warehouse, "lead_id, status") == [
        ("L1", "queued"),
        ("L2", "open"),
        ("L3", "queued"),
        ("L4", "open"),
    ]
    assert queued_tasks_by_rep(warehouse) == {"R1": 2}
    # Sales closes one: that day's capacity is spent all the same; the next day's run opens the
    # best of the queue, and only that one.
    warehouse.execute("update ops.sales_tasks set status = 'done' where lead_id = 'L2'")
    arrange_task_queues(warehouse, AS_OF + timedelta(hours=5))
    assert queued_tasks_by_rep(warehouse) == {"R1": 2}
    arrange_task_queues(warehouse, AS_OF + timedelta(days=1))
    arrange_task_queues(warehouse, AS_OF + timedelta(days=1))
    assert tasks(warehouse, "lead_id, status") == [
        ("L1", "queued"),
        ("L2", "done"),
        ("L3", "open"),
        ("L4", "open"),
    ]
    assert queued_tasks_by_rep(warehouse) == {"R1": 1}


def test_rep_files_hold_each_reps_open_tasks_highest_priority_first(warehouse, tmp_path):
    add_handoff_queue(warehouse, QUEUE, score=10)
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    add_lead(warehouse, "L3", score=95)
    add_send(warehouse, "k1", lead="L3")
    add_email_event(warehouse, "k1", "email_click", OPENED_AT)
    create_follow_up_tasks(warehouse, "run-1", AS_OF, {})
    assert write_rep_task_files(warehouse, tmp_path) == {"R1": 2, "R2": 1}
    with (tmp_path / "R1.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # The hand-off comes first although its score is lower and it is due later.
    assert [(r["reason"], r["lead_id"]) for r in rows] == [
        ("mql_handoff", "L1"),
        ("nurture_follow_up", "L3"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R1.csv", "R2.csv"]


def test_rep_file_name_cannot_escape_the_folder():
    assert rep_file_name("../../etc/passwd") == "_.._etc_passwd.csv"
