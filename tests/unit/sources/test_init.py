"""`leadflow sources init`: a starting profile from an export's header and sampled values."""

from __future__ import annotations

from datetime import datetime

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.sources.check import check_files
from flows.sources.init import InitError, draft_profile, profile_column, write_profile
from flows.sources.mapping import load_mapping

EXPORT = (
    "Prospect ID,Lead Number,Email Address,Lead Origin,Do Not Email,TotalVisits,"
    "Total Time Spent on Website,Country,What is your current occupation,Tags,Lead Quality,"
    "Create Date\n"
    "7927b2df,660737,a@x.com,API,No,5,1532,India,Unemployed,Ringing,Low in Relevance,"
    "2026-10-01 09:00:00\n"
    "2a272436,660728,b@x.com,Landing Page Submission,Yes,2,71,Select,Select,,Might be,"
    "2026-10-02 10:30:00\n"
    "8cc8c611,660727,c@x.com,API,No,,0,India,Working Professional,Will revert,,"
    "2026-10-03 11:15:00\n"
)


def test_column_kinds_placeholders_and_flags():
    flag = profile_column("Do Not Email", ["No", "Yes", None, "No"])
    assert (flag.kind, flag.yes_no) == ("yes_no", ("No", "Yes"))
    occupation = profile_column("Occupation", ["Select", "Student", " ", "Select"])
    assert (occupation.kind, occupation.placeholders) == ("text", ("Select",))
    assert profile_column("Visits", ["5", "12", None]).kind == "integer"
    assert profile_column("Pages", ["2.5", "1"]).kind == "number"
    when = profile_column("Created", ["03/01/2026 10:00", "12/31/2025 09:30"])
    assert (when.kind, when.timestamp_format) == ("timestamp", "%m/%d/%Y %H:%M")
    assert profile_column("Nothing", [None, "N/A"]).kind == "empty"


def test_a_crm_export_gets_targets_attributes_and_outcome_only_columns(tmp_path):
    export = tmp_path / "Leads_2026-11-01.csv"
    export.write_text(EXPORT)
    draft = draft_profile(export)
    assert {target: column.name for target, column in draft.columns.items()} == {
        "source_lead_id": "Prospect ID",
        "email": "Email Address",
        "lead_source": "Lead Origin",
        "is_do_not_email": "Do Not Email",
        "created_at": "Create Date",
        "country": "Country",
    }
    assert list(draft.attributes) == [
        "lead_number",
        "totalvisits",
        "total_time_spent_on_website",
        "what_is_your_current_occupation",
    ]
    assert [column.name for column in draft.outcome_only] == ["Tags", "Lead Quality"]
    assert (draft.source, draft.files) == ("leads", "Leads_*.csv")


def test_the_written_profile_loads_and_the_export_checks(tmp_path):
    export = tmp_path / "leads-export.csv"
    export.write_text(EXPORT)
    profile = write_profile(draft_profile(export, source="crm"), export, tmp_path / "crm.yml")
    mapping = load_mapping(profile)
    assert mapping.values["*"] == {"Select": None}
    assert mapping.values["is_do_not_email"] == {"No": "false", "Yes": "true"}
    assert mapping.default_timestamp == "file_mtime"  # no update date in the export
    (check,) = check_files(export, mappings=[mapping], as_of=datetime(2030, 1, 1))
    assert (check.rows_read, check.rows_loaded, check.error) == (3, 3, None)


def test_other_entities_leave_unrecognised_columns_out(tmp_path):
    export = tmp_path / "activity.csv"
    export.write_text(
        "Activity ID,Email,Activity Type,Activity Date,Notes\n"
        "e1,a@x.com,Email Opened,2026-10-01 09:00:00,hello\n"
    )
    draft = draft_profile(export, "events")
    assert set(draft.columns) == {"event_id", "email", "event_type", "occurred_at"}
    assert draft.attributes == {}
    assert [column.name for column in draft.unmapped] == ["Notes"]


def test_mistakes_name_the_file_and_the_fix(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InitError, match=r"empty\.csv: the file is empty"):
        draft_profile(empty)
    with pytest.raises(InitError, match="--entity contacts: must be one of leads"):
        draft_profile(empty, "contacts")
    export = tmp_path / "x.csv"
    export.write_text(EXPORT)
    existing = tmp_path / "x.yml"
    existing.write_text("mine")
    with pytest.raises(InitError, match=r"x\.yml exists; give another --output or add --force"):
        write_profile(draft_profile(export), export, existing)
    assert existing.read_text() == "mine"


def test_the_command_writes_the_profile(tmp_path):
    export = tmp_path / "partner.csv"
    export.write_text(EXPORT)
    output = tmp_path / "profiles" / "partner.yml"
    result = CliRunner().invoke(app, ["sources", "init", str(export), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "source_lead_id <- Prospect ID" in result.output
    assert load_mapping(output).source == "partner"
    missing = CliRunner().invoke(app, ["sources", "init", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1
    assert "nope.csv is not a file" in " ".join(missing.output.split())
