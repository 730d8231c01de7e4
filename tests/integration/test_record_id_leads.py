"""A CRM export that knows its leads only by record id, end to end (issue 20).

A generated export shaped like a real public CRM lead export (UUID ids, a lead number, no
phone, name or timestamp, Yes/No flags, "Select" placeholders), its activity and sales'
feedback naming the leads by record id, through the real pipeline: every row loaded or
quarantined with a reason; the leads known only by record id scored, staged and handed off
with ``reach_by = crm``, linked to the record by the export's own CRM link (its profile's
``crm_url_template``) while a partner's record-id-only leads get LEADFLOW_CRM_URL_TEMPLATE;
the tags sales wrote, loaded as outcomes with a reason, put the
contactable leads in that reason's nurture track; nobody who asked not to be emailed emailed.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.pipeline import lead_pipeline
from flows.report import RunSummary
from flows.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

RUN_AT = datetime(2026, 11, 1, 8, 30)
EXPORTED_AT = RUN_AT - timedelta(days=1)
PROFILES = PROJECT_ROOT / "tests" / "fixtures" / "profiles"
CRM_URL_TEMPLATE = "https://crm.example/leads/{source_lead_id}"  # every source without its own
# The export's own link (crm_prospects.yml `crm_url_template`).
EXPORT_CRM_URL_TEMPLATE = "https://prospects.example/record/{source_lead_id}?view=lead"
PARTNER_SOURCE = "partner_crm"  # files by convention: no profile, so no link of its own
PARTNER_HOT_LEADS = 3
HEADER = (
    "Prospect ID", "Lead Number", "Lead Origin", "Lead Source", "Do Not Email", "Do Not Call",
    "TotalVisits", "Total Time Spent on Website", "Page Views Per Visit", "Last Activity",
    "Country", "Specialization", "What is your current occupation", "Tags", "Email",
)  # fmt: skip
# Marketing ops scores the export's occupation (the seed is the agreement both teams edit).
OCCUPATION_RULE = {
    "rule_id": "occupation_professional",
    "attribute": "title",
    "operator": "contains_any",
    "value": "working professional|businessman",
    "points": "20",
    "description": "Working professional or business owner",
}
HOT_EVENTS = (("demo_request", 2), ("pricing_page_view", 3), ("webinar_attended", 5))
# Sales' tags -> the reason profile crm_prospects_tags.yml maps them to, and the nurture track
# seed lifecycle_reasons gives that reason (None: disqualified, never nurtured).
TAG_TRACKS = {
    "Will revert after reading the email": ("not_ready", "recycle_timing"),
    "Lost to EINS": ("competitor", "competitor_winback"),
    "Ringing": ("unresponsive", "reengage"),
    "Interested in other courses": ("bad_fit", None),
}


@dataclass(frozen=True)
class Export:
    rows: int
    hot_record_ids: frozenset[str]  # key-only leads that fit and engage: handed off
    partner_record_ids: frozenset[str]  # the partner's key-only leads, hot too
    rejected_record_id: str  # a hot key-only lead sales already rejected, by record id
    do_not_email_with_email: frozenset[str]
    tags: dict[str, str]  # record id -> the tag sales wrote, for the rows with one
    bad_lead_rows: dict[str, int]  # reason code -> rows the leads load quarantines
    bad_rows: dict[str, int]  # reason code -> rows every load together quarantines


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def generate_export(inbox: Path, leads: int = 1200, seed: int = 20) -> Export:
    """The export, the activity and the feedback that name its leads by record id, and reps."""
    draw = random.Random(seed)
    inbox.mkdir(parents=True)
    rows: list[tuple[object, ...]] = []
    hot: set[str] = set()
    do_not_email: set[str] = set()
    tags: dict[str, str] = {}
    for number in range(leads):
        record_id = str(uuid.UUID(int=draw.getrandbits(128), version=4))
        is_hot = number % 25 == 0
        email = f"person{number}@company{number % 97}.com" if number % 10 == 3 else ""
        flag = "Yes" if number % 20 == 3 else draw.choice(("No", "No", "Yes"))
        # Sales has not called a hot lead yet: no tag.
        tag = "" if is_hot else draw.choice(("", *TAG_TRACKS))
        if is_hot:
            email, flag = "", "No"
            hot.add(record_id)
        elif email and flag == "Yes":
            do_not_email.add(record_id)
        if tag:
            tags[record_id] = tag
        rows.append(
            (
                record_id,
                660000 + number,
                draw.choice(("Landing Page Submission", "API", "Lead Add Form")),
                "Reference" if is_hot else draw.choice(("Google", "Direct Traffic", "Olark Chat")),
                flag,
                draw.choice(("No", "Yes")),
                draw.randint(0, 30),
                draw.randint(0, 2400),
                round(draw.uniform(0, 8), 2),
                draw.choice(("Email Opened", "SMS Sent", "Page Visited on Website", "Select")),
                "India" if is_hot else draw.choice(("India", "United States", "unknown", "")),
                "IT Projects Management"
                if is_hot
                else draw.choice(("Select", "Finance Management", "Marketing Management")),
                "Working Professional"
                if is_hot
                else draw.choice(("Unemployed", "Student", "Select", "")),
                tag,
                email,
            )
        )
    # Rows no lead (and no outcome) can come from: no record id at all, and a broken email.
    rows.append(("", 669998, "API", "Google", "No", "No", 1, 10, 1, "Select", "", "", "", "", ""))
    rows.append(
        (
            str(uuid.UUID(int=draw.getrandbits(128), version=4)),
            669999, "API", "Google", "No", "No", 1, 10, 1, "Select", "", "", "", "Ringing", "a@b",
        )
    )  # fmt: skip
    export = inbox / "crm-prospects-2026-10-31.csv"
    _write_csv(export, HEADER, rows)
    exported = EXPORTED_AT.replace(tzinfo=UTC).timestamp()
    os.utime(export, (exported, exported))

    # The activity and the feedback name their lead by record id only (no email column).
    hot_ids = sorted(hot)
    events = [
        (f"{record_id}-{event_type}", record_id, event_type, str(RUN_AT - timedelta(days=days)))
        for record_id in hot_ids
        for event_type, days in HOT_EVENTS
    ]
    _write_csv(
        inbox / "events__crm_export.csv",
        ("event_id", "source_lead_id", "event_type", "occurred_at"),
        events,
    )
    rejected = hot_ids[0]
    _write_csv(
        inbox / "outcomes__crm_export.csv",
        ("outcome_id", "source_lead_id", "outcome", "reason", "occurred_at"),
        [("o-1", rejected, "rejected", "bad_timing", str(RUN_AT - timedelta(hours=12)))],
    )
    _write_csv(
        inbox / "reps__crm_export.csv",
        ("rep_id", "name", "email", "region", "segment", "is_active"),
        [
            (f"R-{region}", f"Rep {region}", f"rep.{region.lower()}@leadflow.example", region,
             "", "true")
            for region in ("NA", "EMEA", "APAC", "LATAM")
        ],
    )  # fmt: skip
    partner_ids = [f"P-{number}" for number in range(PARTNER_HOT_LEADS)]
    _write_csv(
        inbox / f"leads__{PARTNER_SOURCE}.csv",
        ("source_lead_id", "created_at", "updated_at", "country", "title", "industry",
         "lead_source"),
        [
            (record_id, str(EXPORTED_AT), str(EXPORTED_AT), "IN", "Working Professional",
             "software", "referral")
            for record_id in partner_ids
        ],
    )  # fmt: skip
    _write_csv(
        inbox / f"events__{PARTNER_SOURCE}.csv",
        ("event_id", "source_lead_id", "event_type", "occurred_at"),
        [
            (f"{record_id}-{event_type}", record_id, event_type, str(RUN_AT - timedelta(days=days)))
            for record_id in partner_ids
            for event_type, days in HOT_EVENTS
        ],
    )
    bad_lead_rows = {"missing_required": 1, "malformed_email": 1}
    # The tags load quarantines the same two rows, and every row without a tag.
    untagged = leads - len(tags)
    return Export(
        rows=len(rows),
        hot_record_ids=frozenset(hot),
        partner_record_ids=frozenset(partner_ids),
        rejected_record_id=rejected,
        do_not_email_with_email=frozenset(do_not_email),
        tags=tags,
        bad_lead_rows=bad_lead_rows,
        bad_rows={"missing_required": 2 + untagged, "malformed_email": 2},
    )


def project_with_occupation_rule(root: Path) -> Path:
    """The LeadFlow project with one more fit rule in seed fit_rules."""
    project = root / "project"
    project.mkdir()
    for name in ("expectations", "templates"):
        (project / name).symlink_to(PROJECT_ROOT / name)
    shutil.copytree(
        PROJECT_ROOT / "dbt_project",
        project / "dbt_project",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    rules = project / "dbt_project" / "seeds" / "fit_rules.csv"
    text = rules.read_text(encoding="utf-8")
    row = io.StringIO()
    columns = next(csv.reader(io.StringIO(text)))
    csv.DictWriter(row, fieldnames=columns, restval="", lineterminator="\n").writerow(
        OCCUPATION_RULE
    )
    rules.write_text(text.rstrip("\n") + "\n" + row.getvalue(), encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary, Export]:
    root = tmp_path_factory.mktemp("record-ids")
    data = root / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADFLOW_DATA_DIR", str(data))
        patch.setenv("LEADFLOW_PROJECT_DIR", str(project_with_occupation_rule(root)))
        patch.setenv("LEADFLOW_MAPPINGS_DIR", str(PROFILES))
        patch.setenv("LEADFLOW_CRM_URL_TEMPLATE", CRM_URL_TEMPLATE)
        export = generate_export(data / "inbox")
        summary = lead_pipeline(as_of=RUN_AT)
    return data / "warehouse.duckdb", summary, export


def test_every_row_of_the_export_is_loaded_or_quarantined_with_a_reason(run):
    warehouse, summary, export = run
    assert summary.file_errors == []
    assert summary.quarantine_reasons == export.bad_rows
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        (read, loaded, quarantined), *_ = connection.execute(
            "select rows_read, rows_loaded, rows_quarantined from ops.loads "
            "where entity = 'leads' and source = 'crm_export'"
        ).fetchall()
        assert (read, loaded + quarantined) == (export.rows, export.rows)
        assert quarantined == sum(export.bad_lead_rows.values())
        # Record-id-only rows load: no email, no phone, a placeholder mapped to null.
        assert (
            connection.execute(
                "select count(*) from raw.leads where source = 'crm_export' and email is null "
                "and phone is null and created_at = ?",
                [EXPORTED_AT],
            ).fetchone()[0]
            > export.rows / 2
        )
        assert connection.execute(
            "select count(*) from raw.leads where industry = 'Select' or title = 'Select'"
        ).fetchone() == (0,)
        assert connection.execute(
            "select rows_loaded, rows_quarantined from ops.loads where entity <> 'leads' "
            "and source = 'crm_export' order by entity, rows_loaded"
        ).fetchall() == [
            (len(export.hot_record_ids) * len(HOT_EVENTS), 0),
            (1, 0),  # sales' feedback by record id
            (len(export.tags), export.rows - len(export.tags)),  # the export's tags
            (4, 0),
        ]


def test_leads_known_only_by_record_id_are_scored_staged_and_handed_off_in_the_crm(run):
    warehouse, summary, export = run
    handed_off = export.hot_record_ids - {export.rejected_record_id}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        staged = dict(
            connection.execute(
                "select stage, count(*) from dim_leads where source = 'crm_export' "
                "and email is null and fit_score is not null group by all"
            ).fetchall()
        )
        assert sum(staged.values()) > export.rows / 2 and staged.get("mql", 0) >= len(handed_off)
        # Their activity found them by (source, record id): every event counts.
        events = dict(
            connection.execute(
                "select leads.source_lead_id, count(*) from fct_lead_events as events "
                "inner join dim_leads as leads using (lead_id) "
                "where leads.source = 'crm_export' group by all"
            ).fetchall()
        )
        assert events == {record_id: len(HOT_EVENTS) for record_id in export.hot_record_ids}
        tasks = connection.execute(
            "select leads.source_lead_id, tasks.email, tasks.phone, tasks.title "
            "from ops.sales_tasks as tasks inner join dim_leads as leads using (lead_id) "
            "where tasks.reason = 'mql_handoff' and leads.email is null"
        ).fetchall()
        # Each linked to its record: the export's own CRM, the partner's by the setting.
        assert sorted(tasks) == sorted(
            [
                *(
                    (
                        record_id,
                        None,
                        None,
                        f"Follow up on crm_export record {record_id} "
                        + EXPORT_CRM_URL_TEMPLATE.format(source_lead_id=record_id),
                    )
                    for record_id in handed_off
                ),
                *(
                    (
                        record_id,
                        None,
                        None,
                        f"Follow up on {PARTNER_SOURCE} record {record_id} "
                        + CRM_URL_TEMPLATE.format(source_lead_id=record_id),
                    )
                    for record_id in export.partner_record_ids
                ),
            ]
        )
        # Sales' feedback named its lead by record id: rejected, so not handed off.
        assert connection.execute(
            "select latest_outcome from dim_leads where source_lead_id = ?",
            [export.rejected_record_id],
        ).fetchone() == ("rejected",)
    assert summary.handed_off >= len(handed_off)


def test_tags_mapped_to_reasons_put_contactable_leads_in_that_reasons_nurture_track(run):
    warehouse, _, export = run
    expected = {record_id: TAG_TRACKS[tag] for record_id, tag in export.tags.items()}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        staged = {
            record_id: (reason, track)
            for record_id, reason, track in connection.execute(
                "select source_lead_id, stage_reason, nurture_track from dim_leads "
                "where source = 'crm_export' and latest_outcome is not null "
                "and source_lead_id <> ?",
                [export.rejected_record_id],
            ).fetchall()
        }
        assert staged == expected
        queued = dict(
            connection.execute(
                "select leads.source_lead_id, queue.nurture_track "
                "from fct_nurture_queue as queue inner join dim_leads as leads using (lead_id) "
                "where leads.source = 'crm_export' and leads.email is not null "
                "and not leads.is_do_not_email"
            ).fetchall()
        )
        contactable = {
            record_id
            for (record_id,) in connection.execute(
                "select source_lead_id from dim_leads where source = 'crm_export' "
                "and email is not null and not is_do_not_email"
            ).fetchall()
        }
        tagged_contactable = {
            record_id: track
            for record_id, (_, track) in expected.items()
            if track is not None and record_id in contactable
        }
        # Every track a tag leads to, with contactable leads in it, queued in that track.
        assert set(tagged_contactable.values()) == {
            track for _, track in TAG_TRACKS.values() if track is not None
        }
        assert {record_id: queued.get(record_id) for record_id in tagged_contactable} == (
            tagged_contactable
        )
        # Leads who asked not to be emailed keep their track, and no email.
        tagged_do_not_email = export.do_not_email_with_email & {
            record_id for record_id, (_, track) in expected.items() if track is not None
        }
        assert tagged_do_not_email
        assert connection.execute(
            "select count(*) from ops.email_sends as sends inner join dim_leads as leads "
            "using (lead_id) where leads.source_lead_id in (select unnest(?))",
            [sorted(tagged_do_not_email)],
        ).fetchone() == (0,)


def test_nobody_who_asked_not_to_be_emailed_and_nobody_without_an_email_is_emailed(run):
    warehouse, summary, export = run
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        flagged = connection.execute(
            "select count(*) from dim_leads where is_do_not_email and email is not null "
            "and source = 'crm_export'"
        ).fetchone()[0]
        assert flagged == len(export.do_not_email_with_email) > 0
        assert connection.execute(
            "select count(*) from ops.email_sends as sends inner join dim_leads as leads "
            "using (lead_id) where leads.is_do_not_email or leads.email is null"
        ).fetchone() == (0,)
        assert connection.execute(
            "select count(*) from fct_nurture_queue as queue inner join dim_leads as leads "
            "using (lead_id) where queue.is_due and (leads.is_do_not_email or leads.email is null)"
        ).fetchone() == (0,)
    assert summary.emails_sent == len(list((warehouse.parent / "outbox").glob("*.eml")))
