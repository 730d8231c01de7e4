from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from flows.sources.catalog import ENTITIES
from flows.sources.validation import (
    NESTED_COLUMN,
    rejected_rows_sql,
    row_rules,
    typed_columns_sql,
)


def classify(
    entity_name: str, rows: list[dict[str, str | None]]
) -> list[tuple[str | None, str | None]]:
    entity = ENTITIES[entity_name]
    connection = duckdb.connect()
    columns = ", ".join(f"{c} varchar" for c in entity.columns)
    connection.execute(
        f"create table staged (record_number bigint, {columns}, {NESTED_COLUMN} varchar)"
    )
    for number, row in enumerate(rows, start=1):
        values = [row.get(c) for c in (*entity.columns, NESTED_COLUMN)]
        placeholders = ", ".join("?" for _ in values)
        connection.execute(f"insert into staged values ({number}, {placeholders})", values)
    return connection.execute(
        "select rejection_code, rejection_reason from staged left join "
        f"({rejected_rows_sql(entity, 'staged', datetime(2026, 11, 22))}) using (record_number) "
        "order by record_number"
    ).fetchall()


EVENT = {
    "event_id": "e1",
    "email": "a@b.com",
    "event_type": "page_view",
    "occurred_at": "2026-11-01",
}
OUTCOME = {
    "outcome_id": "o1",
    "email": "a@b.com",
    "outcome": "won",
    "occurred_at": "2026-11-01",
}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({}, None),
        ({"event_type": "tweet"}, "unknown_value"),
        ({"event_type": None}, "missing_required"),
        ({"occurred_at": "2026-11-22T23:00:00"}, None),  # within a day of the clock: clock skew
        ({"occurred_at": "2026-11-24"}, "impossible_date"),
        ({"occurred_at": "yesterday"}, "invalid_timestamp"),
        ({"email": "   "}, "missing_contact_key"),
        # An event may name its lead by source record id instead of email.
        ({"email": None, "source_lead_id": "7f3c9a2e-crm"}, None),
    ],
)
def test_event_rules(change, code):
    [(reason_code, reason)] = classify("events", [EVENT | change])
    assert reason_code == code
    assert (reason is None) == (code is None)


LEAD = {
    "source_lead_id": "L1",
    "email": "ann@acme.com",
    "created_at": "2026-10-01",
    "updated_at": "2026-10-02",
}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({}, None),
        # A lead the CRM knows only by phone loads: sales can call, identity is its source key.
        ({"email": None, "phone": "+44 20 7946 0000"}, None),
        # Known only by its source record id: it loads and is worked in the CRM.
        ({"email": " ", "phone": ""}, None),
        ({"email": None, "phone": "+1 555 0100", "source_lead_id": None}, "missing_required"),
        ({"email": "ann-at-acme.com", "phone": "+1 555 0100"}, "malformed_email"),
    ],
)
def test_lead_needs_only_its_source_record_id(change, code):
    [(reason_code, reason)] = classify("leads", [LEAD | change])
    assert reason_code == code
    assert (reason is None) == (code is None)


@pytest.mark.parametrize(
    ("entity", "keys"),
    [
        ("events", "email and no source_lead_id"),
        ("outcomes", "email and no source_lead_id and no lead_id and no task_id"),
    ],
)
def test_an_event_or_outcome_needs_a_key_to_find_its_person(entity, keys):
    row = {"events": EVENT, "outcomes": OUTCOME}[entity] | {"email": "", "source_lead_id": " "}
    [(reason_code, reason)] = classify(entity, [row])
    assert reason_code == "missing_contact_key"
    assert reason == f"no {keys}: nothing to find the person by"


def test_unknown_value_message_lists_the_accepted_values():
    [(_, reason)] = classify(
        "outcomes",
        [{"outcome_id": "o1", "email": "a@b.com", "outcome": "maybe", "occurred_at": "2026-01-01"}],
    )
    assert reason.startswith('outcome "maybe" is not one of: accepted, rejected')


def test_optional_enum_may_be_empty_but_not_unknown():
    rows = [
        {"rep_id": "r1", "name": "Ann", "email": "ann@x.com", "region": "EMEA"},
        {"rep_id": "r2", "name": "Bo", "email": "bo@x.com", "region": "EMEA", "segment": "huge"},
    ]
    assert [code for code, _ in classify("reps", rows)] == [None, "unknown_value"]


def test_first_failing_rule_wins():
    [(code, _)] = classify("events", [EVENT | {"email": "bad", "event_type": "tweet"}])
    assert code == "malformed_email"


def test_every_entity_has_a_duplicate_rule_and_casts_every_column():
    for entity in ENTITIES.values():
        assert row_rules(entity, datetime(2026, 11, 22))[-1].code == "duplicate_key"
        select_list = typed_columns_sql(entity).split(",\n")
        assert [item.rsplit(" as ", 1)[1].strip() for item in select_list] == list(entity.columns)
