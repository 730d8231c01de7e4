"""The marts and ledger rows a round of sales tasks reads, for the tests of flows/sales/tasks.py."""

from __future__ import annotations

from datetime import datetime

AS_OF = datetime(2026, 11, 22, 9)


def create_task_marts(warehouse) -> None:
    """The dbt marts the task rounds read: dim_leads, dim_reps and the reasons seed."""
    warehouse.execute(
        "create table main.dim_leads (lead_id varchar, latest_outcome_at timestamp, "
        "phone varchar, lead_score double, stage_reason varchar, owner_rep_id varchar, "
        "assignment_rule varchar)"
    )
    warehouse.execute(
        "create table main.dim_reps (rep_id varchar, daily_task_capacity integer, "
        "is_active boolean)"
    )
    warehouse.execute(
        "create table main.lifecycle_reasons (reason_code varchar, description varchar)"
    )
    warehouse.execute(
        "insert into main.lifecycle_reasons values ('not_ready_low_fit', 'Engages with us but "
        "the fit score is below the MQL threshold.')"
    )
    warehouse.execute(
        """
        create table main.fct_handoff_queue (
            lead_id varchar, email varchar, phone varchar, first_name varchar,
            last_name varchar, company varchar, owner_rep_id varchar, owner_email varchar,
            why_now varchar, due_at timestamp, source varchar, source_lead_id varchar,
            lead_score double, assignment_rule varchar,
            reach_by varchar as (
                case when email is not null then 'email'
                     when phone is not null then 'phone' else 'crm' end))
        """
    )


def add_lead(warehouse, lead_id, *, phone=None, score=50.0, reason="not_ready_low_fit", owner="R1"):
    """A lead that rule `emea_smb` gave to ``owner``."""
    warehouse.execute(
        "insert into main.dim_leads values (?, null, ?, ?, ?, ?, 'emea_smb')",
        [lead_id, phone, score, reason, owner],
    )


def add_handoff_queue(warehouse, rows, score=50.0):
    """Queue rows (lead_id, email, phone, first_name, last_name, company, owner_rep_id,
    owner_email, why_now, due_at), optionally followed by (source, source_lead_id)."""
    for row in rows:
        record = (*row, "crm", "C-" + row[0])[:12]
        warehouse.execute(
            "insert into main.fct_handoff_queue (lead_id, email, phone, first_name, last_name, "
            "company, owner_rep_id, owner_email, why_now, due_at, source, source_lead_id, "
            "lead_score, assignment_rule) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*record, score, f"rule_for_{row[6]}"],
        )
        add_lead(warehouse, row[0], phone=row[2], score=score, owner=row[6])


def add_send(warehouse, key, status="sent", *, step=1, owner="R1", lead="L1", track="warm_up"):
    warehouse.execute(
        """
        insert into ops.email_sends (message_key, lead_id, email, track, step, template, subject,
            status, provider, owner_rep_id, owner_email, follow_up_title, follow_up_due_days,
            why_now, created_at, sent_at, run_id)
        values (?, ?, 'ann@acme.com', ?, ?, 't.html', 'A quick idea', ?, 'outbox', ?,
                'r1@x.com', 'Offer Ann the worksheet', 2, 'the lead is engaged because x', ?, ?,
                'run-1')
        """,
        [key, lead, track, step, status, owner, AS_OF, AS_OF if status == "sent" else None],
    )


def add_email_event(warehouse, key, event_type, occurred_at):
    warehouse.execute(
        """
        insert into raw.events (event_id, email, event_type, occurred_at, message_key, load_id,
            source, source_file, source_line, loaded_at)
        values (?, 'ann@acme.com', ?, ?, ?, 'load-1', 'sendgrid', 'events.jsonl', 1, ?)
        """,
        [f"{key}-{event_type}-{occurred_at}", event_type, occurred_at, key, occurred_at],
    )
