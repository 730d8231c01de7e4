from __future__ import annotations

import csv
from datetime import datetime

from flows.sales.sinks import rep_file_name, write_rep_task_files
from flows.sales.tasks import create_follow_up_tasks, create_handoff_tasks

AS_OF = datetime(2026, 11, 22, 9)


def add_handoff_queue(warehouse, rows):
    """Queue rows (lead_id, email, phone, first_name, last_name, company, owner_rep_id,
    owner_email, why_now, due_at), optionally followed by (source, source_lead_id)."""
    warehouse.execute(
        """
        create or replace table main.fct_handoff_queue (
            lead_id varchar, email varchar, phone varchar, first_name varchar,
            last_name varchar, company varchar, owner_rep_id varchar, owner_email varchar,
            why_now varchar, due_at timestamp, source varchar, source_lead_id varchar,
            reach_by varchar as (
                case when email is not null then 'email'
                     when phone is not null then 'phone' else 'crm' end))
        """
    )
    warehouse.execute(
        "create or replace table main.dim_leads (lead_id varchar, latest_outcome_at timestamp)"
    )
    for row in rows:
        record = (*row, "crm", "C-" + row[0])[:12]
        warehouse.execute(
            "insert into main.fct_handoff_queue (lead_id, email, phone, first_name, last_name, "
            "company, owner_rep_id, owner_email, why_now, due_at, source, source_lead_id) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            record,
        )
        warehouse.execute("insert into main.dim_leads values (?, null)", [row[0]])


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


def test_a_lead_known_only_by_phone_is_handed_off_with_its_phone(warehouse, tmp_path):
    add_handoff_queue(
        warehouse,
        [("L9", None, "+1 555 0100", "Cy", "Doe", None, "R1", "r1@x.com", "Demo request", AS_OF)],
    )
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 1
    write_rep_task_files(warehouse, tmp_path)
    with (tmp_path / rep_file_name("R1")).open(newline="") as handle:
        [task] = list(csv.DictReader(handle))
    assert (task["email"], task["phone"], task["title"]) == (
        "",
        "+1 555 0100",
        "Follow up with Cy Doe",
    )


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
    template = "https://crm.example/{source}/leads/{source_lead_id}?view=full"
    assert create_handoff_tasks(warehouse, "run-1", AS_OF, template) == 2
    assert warehouse.execute("select title from ops.sales_tasks order by lead_id").fetchall() == [
        ("Follow up with Ann Lee at Acme",),  # reached by email: no CRM link
        (
            "Follow up on crm_export record 7f3c9a2e-1b4d/x at Acme "
            "https://crm.example/crm_export/leads/7f3c9a2e-1b4d%2Fx?view=full",
        ),
    ]


def test_one_handoff_task_per_lead_however_often_it_runs(warehouse):
    add_handoff_queue(warehouse, QUEUE)
    assert create_handoff_tasks(warehouse, "run-1", AS_OF) == 2
    assert create_handoff_tasks(warehouse, "run-2", AS_OF) == 0
    tasks = warehouse.execute(
        "select lead_id, owner_rep_id, title, why_now, due_at, run_id from ops.sales_tasks order by 1"
    ).fetchall()
    assert tasks == [
        (
            "L1",
            "R1",
            "Follow up with Ann Lee at Acme",
            "Viewed pricing",
            datetime(2026, 11, 23, 9),
            "run-1",
        ),
        ("L2", "R2", "Follow up with Bo", "Webinar", datetime(2026, 11, 23, 9), "run-1"),
    ]


def test_a_lead_handed_off_again_after_feedback_gets_a_new_round(warehouse):
    add_handoff_queue(warehouse, QUEUE[:1])
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    # Sales recycled the lead and it qualified again: the queue holds it once more.
    warehouse.execute("update main.dim_leads set latest_outcome_at = timestamp '2026-12-01'")
    assert create_handoff_tasks(warehouse, "run-2", AS_OF) == 1
    assert create_handoff_tasks(warehouse, "run-3", AS_OF) == 0
    rounds = warehouse.execute("select step, run_id from ops.sales_tasks order by step").fetchall()
    assert rounds == [(1, "run-1"), (2, "run-2")]


def add_send(warehouse, key, status, step=1, owner="R1"):
    warehouse.execute(
        """
        insert into ops.email_sends (message_key, lead_id, email, track, step, template, subject,
            status, provider, owner_rep_id, owner_email, follow_up_title, follow_up_due_days,
            why_now, created_at, sent_at, run_id)
        values (?, 'L1', 'ann@acme.com', 'warm_up', ?, 't.html', 'Hi', ?, 'outbox', ?, 'r1@x.com',
                'Call Ann', 2, 'Email went out', ?, ?, 'run-1')
        """,
        [key, step, status, owner, AS_OF, AS_OF if status == "sent" else None],
    )


def test_follow_up_task_for_each_sent_step_only(warehouse):
    add_send(warehouse, "k1", "sent", step=1)
    add_send(warehouse, "k2", "pending", step=2)
    add_send(warehouse, "k3", "failed", step=3)
    assert create_follow_up_tasks(warehouse, "run-1", AS_OF) == 1
    assert create_follow_up_tasks(warehouse, "run-2", AS_OF) == 0
    assert warehouse.execute(
        "select track, step, title, due_at from ops.sales_tasks"
    ).fetchall() == [("warm_up", 1, "Call Ann", datetime(2026, 11, 24, 9))]


def test_rep_files_hold_each_reps_open_tasks_soonest_first(warehouse, tmp_path):
    add_handoff_queue(warehouse, QUEUE)
    create_handoff_tasks(warehouse, "run-1", AS_OF)
    add_send(warehouse, "k1", "sent")
    create_follow_up_tasks(warehouse, "run-1", AS_OF)
    assert write_rep_task_files(warehouse, tmp_path) == {"R1": 2, "R2": 1}
    with (tmp_path / "R1.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["reason"] for r in rows] == ["mql_handoff", "nurture_follow_up"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R1.csv", "R2.csv"]


def test_rep_file_name_cannot_escape_the_folder():
    assert rep_file_name("../../etc/passwd") == "_.._etc_passwd.csv"
