"""The demo generator: contract-shaped, deterministic inbox files whose malformed rows are
exactly the rows that break the rules of docs/data-contracts.md."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.demo import GeneratedDataset, GenerateError, generate_dataset
from flows.demo.vocabulary import COMPETITOR_DOMAINS, PERSONAL_EMAIL_DOMAINS, UNSERVED_COUNTRIES

# From docs/data-contracts.md, "Inbox files" (no shared constant exists yet; the extract could
# own one): entity -> (required columns, optional columns).
CONTRACT_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "leads": (
        ("source_lead_id", "email", "created_at", "updated_at"),
        ("first_name", "last_name", "company", "title", "industry", "employee_count", "country",
         "phone", "lead_source", "first_campaign", "is_do_not_email"),
    ),
    "events": (
        ("event_id", "email", "event_type", "occurred_at"),
        ("campaign", "url", "message_key"),
    ),
    "outcomes": (
        ("outcome_id", "email", "outcome", "occurred_at"),
        ("reason", "rep_id", "task_id", "amount"),
    ),
    "reps": (("rep_id", "name", "email", "region"), ("segment", "is_active")),
}  # fmt: skip
KEYS = {"leads": "source_lead_id", "events": "event_id", "outcomes": "outcome_id", "reps": "rep_id"}
TIMESTAMPS = {"leads": ("created_at", "updated_at"), "events": ("occurred_at",),
              "outcomes": ("occurred_at",), "reps": ()}  # fmt: skip
EVENT_TYPES = (
    "email_open", "email_click", "page_view", "pricing_page_view", "content_download",
    "form_fill", "webinar_attended", "demo_request", "unsubscribe", "bounce", "spam_report",
)  # fmt: skip
OUTCOMES = ("accepted", "rejected", "opportunity", "won", "lost", "no_response")
REASONS = ("not_ready", "no_budget", "bad_timing", "bad_fit", "student", "competitor",
           "unresponsive", "duplicate")  # fmt: skip
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
SEGMENTS = ("smb", "mid_market", "enterprise")
BOOLEANS = ("true", "false", "1", "0", "yes", "no")
HIGH_INTENT = ("pricing_page_view", "demo_request", "webinar_attended")
FILES = (
    "leads__crm.csv", "leads__web_forms.csv", "events__marketing_automation.csv",
    "outcomes__crm.csv", "reps__crm.csv",
)  # fmt: skip

AS_OF = datetime(2026, 3, 1, 12, 0)
LEADS = 2000
SEED = 11


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(
        tmp_path_factory.mktemp("demo") / "not" / "yet" / "there",
        leads=LEADS,
        seed=SEED,
        as_of=AS_OF,
    )


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _contract_checks(entity: str) -> list[tuple[str, str]]:
    """(reason_code, SQL condition that breaks it) in the contract's order, over raw strings."""
    required, _ = CONTRACT_COLUMNS[entity]
    timestamps = TIMESTAMPS[entity]
    as_of = f"timestamp '{AS_OF.isoformat()}'"
    # A lead needs no email (its source record id finds it); an event or outcome needs an email
    # or a source record id, and the demo's carry no record id (contact keys).
    optional_email = entity in ("leads", "events", "outcomes")
    checks = [
        ("missing_required", " or ".join(
            f"{column} is null" for column in required
            if not (optional_email and column == "email")
        )),
        ("missing_contact_key", "email is null" if entity in ("events", "outcomes") else "false"),
        ("malformed_email", r"not regexp_full_match(trim(email), '[^@\s]+@[^@\s]+\.[^@\s]+')"),
        ("invalid_timestamp", " or ".join(
            f"try_cast({column} as timestamp) is null" for column in timestamps) or "false"),
        ("impossible_date", " or ".join(
            f"try_cast({column} as timestamp) not between timestamp '1990-01-01' "
            f"and {as_of} + interval 1 day" for column in timestamps) or "false"),
    ]  # fmt: skip
    numbers = {"leads": "employee_count", "outcomes": "amount"}
    if entity in numbers:
        number = numbers[entity]
        checks.append(
            ("invalid_number", f"coalesce(try_cast({number} as double) < 0, {number} is not null)")
        )
    booleans = {"leads": "is_do_not_email", "reps": "is_active"}
    if entity in booleans:
        checks.append(
            ("invalid_boolean", f"lower({booleans[entity]}) not in ({_sql_list(BOOLEANS)})")
        )
    unknown_values = {
        "events": f"event_type not in ({_sql_list(EVENT_TYPES)})",
        "outcomes": f"outcome not in ({_sql_list(OUTCOMES)}) or reason not in ({_sql_list(REASONS)})",
        "reps": f"region not in ({_sql_list(REGIONS)}) or segment not in ({_sql_list(SEGMENTS)})",
    }
    if entity in unknown_values:
        checks.append(("unknown_value", unknown_values[entity]))
    if entity == "leads":
        checks.append(
            (
                "out_of_order",
                "try_cast(updated_at as timestamp) < try_cast(created_at as timestamp)",
            )
        )
    return checks


def _quarantine_reasons(path: Path) -> dict[str, int]:
    """Rows per first failing reason, checked independently of the generator, with duckdb."""
    entity = path.name.split("__")[0]
    reason = " ".join(
        f"when coalesce({condition}, false) then '{code}'"
        for code, condition in _contract_checks(entity)
    )
    with duckdb.connect() as connection:
        rows = connection.execute(f"""
            with checked as (
                select *, case {reason} end as broken_rule
                from read_csv('{path}', header = true, all_varchar = true)
            )
            select broken_rule, count(*) from checked where broken_rule is not null group by all
            union all
            select 'duplicate_key', count(*) - count(distinct {KEYS[entity]})
            from checked where broken_rule is null
        """).fetchall()
    return {code: count for code, count in rows if count}


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        yield from csv.DictReader(file)


@pytest.fixture(scope="module")
def inbox(dataset: GeneratedDataset) -> Iterator[duckdb.DuckDBPyConnection]:
    """The generated files as views of their good rows (strings), for checking the content."""
    connection = duckdb.connect()
    for name in FILES:
        path = dataset.out_dir / name
        entity = name.split("__")[0]
        broken = " or ".join(
            f"coalesce({condition}, false)" for _, condition in _contract_checks(entity)
        )
        connection.execute(f"""
            create view {name.removesuffix(".csv")} as
            select * from read_csv('{path}', header = true, all_varchar = true)
            where not ({broken})
            qualify row_number() over (partition by {KEYS[entity]}) = 1
        """)
    yield connection
    connection.close()


def _scalar(connection: duckdb.DuckDBPyConnection, query: str) -> float:
    row = connection.execute(query).fetchone()
    assert row is not None
    return float(row[0])


def test_same_seed_and_clock_give_byte_identical_files(
    dataset: GeneratedDataset, tmp_path: Path
) -> None:
    again = generate_dataset(tmp_path, leads=LEADS, seed=SEED, as_of=AS_OF)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (dataset.out_dir / name).read_bytes(), name
    assert again.files == dataset.files
    assert again.bad_rows_by_reason == dataset.bad_rows_by_reason


def test_an_aware_clock_is_read_as_utc(dataset: GeneratedDataset, tmp_path: Path) -> None:
    an_hour_east = timezone(timedelta(hours=1))
    as_of = AS_OF.replace(tzinfo=UTC).astimezone(an_hour_east)
    generate_dataset(tmp_path, leads=LEADS, seed=SEED, as_of=as_of)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (dataset.out_dir / name).read_bytes(), name


def test_another_seed_gives_other_data(dataset: GeneratedDataset, tmp_path: Path) -> None:
    generate_dataset(tmp_path, leads=LEADS, seed=SEED + 1, as_of=AS_OF)
    for name in FILES:
        assert (tmp_path / name).read_bytes() != (dataset.out_dir / name).read_bytes(), name


def test_writes_the_contract_files_and_nothing_else(dataset: GeneratedDataset) -> None:
    assert sorted(path.name for path in dataset.out_dir.iterdir()) == sorted(FILES)
    assert set(dataset.files) == set(FILES)
    for name in FILES:
        entity = name.split("__")[0]
        required, optional = CONTRACT_COLUMNS[entity]
        with (dataset.out_dir / name).open(newline="", encoding="utf-8") as file:
            header = next(csv.reader(file))
        assert sorted(header) == sorted(required + optional), name
        assert dataset.files[name] == sum(1 for _ in _rows(dataset.out_dir / name)), name


def test_bad_rows_are_exactly_the_rows_that_break_a_contract_rule(
    dataset: GeneratedDataset,
) -> None:
    found = {name: _quarantine_reasons(dataset.out_dir / name) for name in FILES}
    assert found == {name: dataset.bad_rows_by_reason.get(name, {}) for name in FILES}
    assert dataset.bad_rows == sum(sum(reasons.values()) for reasons in found.values())
    # Every kind of defect the brief asks for is there, and the files stay mostly clean.
    assert set(found["leads__crm.csv"]) == {
        "malformed_email", "invalid_timestamp", "impossible_date",
        "invalid_number", "out_of_order",
    }  # fmt: skip
    assert set(found["events__marketing_automation.csv"]) == {
        "missing_contact_key", "invalid_timestamp", "unknown_value", "duplicate_key",
    }  # fmt: skip
    for name in ("leads__crm.csv", "leads__web_forms.csv"):
        assert 0.005 <= sum(found[name].values()) / dataset.files[name] <= 0.01, name


def test_about_the_requested_number_of_people(inbox: duckdb.DuckDBPyConnection) -> None:
    people_with_email = _scalar(
        inbox,
        """
        select count(distinct lower(trim(email)))
        from (select email from leads__crm union all select email from leads__web_forms)
    """,
    )
    # Known only by phone: CRM records without an email, each a person of its own.
    phone_only = _scalar(inbox, "select count(*) from leads__crm where email is null")
    assert 0 < phone_only < 0.02 * LEADS
    assert people_with_email + phone_only == LEADS


def test_web_form_people_reappear_in_the_crm_written_differently(
    inbox: duckdb.DuckDBPyConnection,
) -> None:
    inbox.execute("""
        create temp table overlap as
        select
            web.email as web_email, crm.email as crm_email, web.title as web_title,
            crm.title as crm_title, web.updated_at::timestamp as web_updated_at,
            crm.updated_at::timestamp as crm_updated_at
        from leads__web_forms as web
        inner join leads__crm as crm on lower(trim(web.email)) = lower(trim(crm.email))
    """)
    share = _scalar(inbox, "select count(*) / (select count(*) from leads__web_forms) from overlap")
    assert 0.25 <= share <= 0.35
    assert _scalar(inbox, "select count(*) from overlap where crm_email <> trim(crm_email)") > 0
    assert (
        _scalar(inbox, "select count(*) from overlap where trim(crm_email) <> lower(web_email)") > 0
    )
    assert _scalar(inbox, "select count(*) from overlap where crm_title = web_title") == 0
    assert (
        _scalar(inbox, "select count(*) from overlap where crm_updated_at <= web_updated_at") == 0
    )


def test_leads_carry_the_negative_signals_scoring_looks_for(
    inbox: duckdb.DuckDBPyConnection,
) -> None:
    inbox.execute("""
        create temp table leads as
        select *, split_part(lower(trim(email)), '@', 2) as domain
        from (select * from leads__crm union all select * from leads__web_forms)
    """)
    for domains in (PERSONAL_EMAIL_DOMAINS, COMPETITOR_DOMAINS):
        assert (
            _scalar(inbox, f"select count(*) from leads where domain in ({_sql_list(domains)})") > 0
        )
    students = "domain like '%.edu' and title like '%Student'"
    assert _scalar(inbox, f"select count(*) from leads where {students}") > 0
    assert _scalar(inbox, "select count(*) from leads where is_do_not_email = 'true'") > 0
    unserved = _sql_list(tuple(UNSERVED_COUNTRIES))
    assert _scalar(inbox, f"select count(*) from leads where country in ({unserved})") > 0


def test_events_happen_in_the_180_days_before_as_of(inbox: duckdb.DuckDBPyConnection) -> None:
    inbox.execute("""
        create temp table event_times as
        select occurred_at::timestamp as occurred_at from events__marketing_automation
    """)
    assert _scalar(inbox, f"select count(*) from event_times where occurred_at > '{AS_OF}'") == 0
    within = f"occurred_at >= timestamp '{AS_OF}' - interval 180 day"
    assert _scalar(inbox, f"select avg(({within})::int) from event_times") >= 0.95
    per_lead = _scalar(inbox, f"select count(*) / {LEADS} from event_times")
    assert 8 <= per_lead <= 12


def test_events_are_written_in_time_order(dataset: GeneratedDataset) -> None:
    times = []
    for row in _rows(dataset.out_dir / "events__marketing_automation.csv"):
        try:
            times.append(datetime.fromisoformat(row["occurred_at"]))
        except ValueError:  # the rows with an unparseable timestamp
            continue
    assert times == sorted(times)


def test_a_minority_of_leads_is_recently_highly_engaged(inbox: duckdb.DuckDBPyConnection) -> None:
    keen = _scalar(
        inbox,
        f"""
        select count(*) from (
            select lower(email)
            from events__marketing_automation
            where event_type in ({_sql_list(HIGH_INTENT)})
                and occurred_at::timestamp >= timestamp '{AS_OF}' - interval 30 day
            group by lower(email)
            having count(*) >= 2
        )
    """,
    )
    assert 0.05 <= keen / LEADS <= 0.15


def test_outcomes_follow_the_lead_and_precede_as_of(inbox: duckdb.DuckDBPyConnection) -> None:
    inbox.execute("""
        create temp table worked as
        select outcomes.*, first_seen
        from outcomes__crm as outcomes
        inner join (
            select lower(trim(email)) as person, min(created_at::timestamp) as first_seen
            from (select * from leads__crm union all select * from leads__web_forms)
            group by person
        ) on person = lower(trim(outcomes.email))
    """)
    assert _scalar(inbox, "select count(*) from worked") == _scalar(
        inbox, "select count(*) from outcomes__crm"
    )
    assert (
        _scalar(
            inbox,
            f"""
        select count(*) from worked
        where occurred_at::timestamp not between first_seen and timestamp '{AS_OF}'
    """,
        )
        == 0
    )
    share = _scalar(inbox, f"select count(distinct lower(email)) / {LEADS} from outcomes__crm")
    assert 0.03 <= share <= 0.08
    assert (
        _scalar(
            inbox,
            """
        select count(*) from outcomes__crm
        where (amount is not null) <> (outcome in ('opportunity', 'won'))
            or (reason is not null) <> (outcome in ('rejected', 'lost', 'no_response'))
            or rep_id not in (select rep_id from reps__crm)
    """,
        )
        == 0
    )
    assert {row[0] for row in inbox.execute("select outcome from outcomes__crm").fetchall()} == set(
        OUTCOMES
    )


def _converter_auc(inbox: duckdb.DuckDBPyConnection, column: str) -> float:
    """How well ``column`` alone ranks converters (AUC: the chance a converter has more than
    someone who did not convert, ties counting half)."""
    return _scalar(
        inbox,
        f"""
        select avg(case when converter.{column} > other.{column} then 1.0
                        when converter.{column} = other.{column} then 0.5 else 0 end)
        from people as converter, people as other
        where converter.is_converted and not other.is_converted
    """,
    )


def test_conversion_goes_with_intent_and_fit_not_with_event_volume(
    inbox: duckdb.DuckDBPyConnection,
) -> None:
    inbox.execute(f"""
        create temp table people as
        with leads as (
            select lower(trim(email)) as person, any_value(employee_count::integer)
                as employee_count
            from (select * from leads__crm union all select * from leads__web_forms)
            group by person
        ),

        events as (
            select
                lower(email) as person,
                count(*) filter (where event_type in ({_sql_list(HIGH_INTENT)})) as intent_events,
                count(*) filter (where event_type not in ({_sql_list(HIGH_INTENT)}))
                    as everyday_events
            from events__marketing_automation group by person
        ),

        converted as (
            select distinct lower(email) as person
            from outcomes__crm where outcome in ('opportunity', 'won')
        )

        select
            leads.*,
            coalesce(events.intent_events, 0) as intent_events,
            coalesce(events.everyday_events, 0) as everyday_events,
            converted.person is not null as is_converted
        from leads
        left join events using (person)
        left join converted using (person)
    """)
    by_conversion = {
        is_converted: (intent_events, employees)
        for is_converted, intent_events, employees in inbox.execute("""
            select is_converted, avg(intent_events), median(employee_count)
            from people group by is_converted
        """).fetchall()
    }
    converted, others = by_conversion[True], by_conversion[False]
    assert converted[0] > 2 * others[0]  # pricing page views, webinars, demo requests
    assert converted[1] > others[1]  # company size
    # High-intent events rank converters well; the volume of opens and page views, which the
    # shipped points reward, hardly does: what `leadflow scoring fit` can learn from outcomes.
    assert _converter_auc(inbox, "intent_events") > 0.7
    assert _converter_auc(inbox, "everyday_events") < 0.6


def test_reps_cover_every_region(inbox: duckdb.DuckDBPyConnection) -> None:
    regions = {row[0] for row in inbox.execute("select region from reps__crm").fetchall()}
    assert regions == set(REGIONS)
    assert _scalar(inbox, "select count(distinct email) from reps__crm") == _scalar(
        inbox, "select count(*) from reps__crm"
    )
    assert 10 <= _scalar(inbox, "select count(*) from reps__crm") <= 14


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"leads": 0, "seed": 1, "as_of": AS_OF}, "leads must be between 1"),
        ({"leads": 10, "seed": 2**64, "as_of": AS_OF}, "seed must fit in 64 bits"),
        ({"leads": 10, "seed": 1, "as_of": datetime(1991, 1, 1)}, "pass an as_of after 2000"),
    ],
)
def test_refuses_what_it_cannot_make(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(GenerateError, match=message):
        generate_dataset(tmp_path / "inbox", **arguments)
    assert not (tmp_path / "inbox").exists()
