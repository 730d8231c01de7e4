from __future__ import annotations

import gzip
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.sources.inbox import (
    SourceFileError,
    commit_staged,
    parsing_connection,
    scan_inbox,
    stage_file,
)
from flows.sources.mapping import SHIPPED_PROFILES, MappingError, load_mapping, load_mappings

EXPORTS = Path(__file__).parents[2] / "fixtures" / "exports"
AS_OF = datetime(2026, 11, 22)


def load(warehouse, inbox: Path, mappings) -> list:
    scan = scan_inbox(warehouse, inbox, mappings)
    with parsing_connection(warehouse) as parser:
        staged = [stage_file(warehouse, parser, f, AS_OF, i) for i, f in enumerate(scan.new)]
        commit_staged(warehouse, staged, "run-1")
    return staged


def write_profile(folder: Path, text: str, name: str = "profile.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_hubspot_export_loads_through_the_shipped_profile(warehouse, tmp_path):
    shutil.copy(EXPORTS / "hubspot-crm-exports-all-contacts-2026-11-22.csv", tmp_path)
    (staged,) = load(warehouse, tmp_path, load_mappings([SHIPPED_PROFILES]))
    assert (staged.file.source, staged.file.entity.name) == ("hubspot", "leads")
    assert staged.reasons == {"malformed_email": 1, "invalid_timestamp": 1}
    row = warehouse.execute(
        "select source_lead_id, email, company, employee_count, country, lead_source, "
        "is_do_not_email, created_at, source from raw.leads"
    ).fetchall()
    assert row == [
        (
            "101",
            " Ana.Ruiz@Example.com ",
            "Acme, Inc.",
            250,
            "ES",
            "paid_search",
            False,
            datetime(2026, 3, 15, 10, 30),
            "hubspot",
        ),
    ]
    record = warehouse.execute(
        "select record->>'$.\"Job Title\"', reason from ops.quarantine where record_key = '103'"
    ).fetchone()
    assert record == ("CTO", 'created_at "15/03/2026 10:30" is not a date (expected ISO 8601)')


def test_placeholders_become_nulls_not_values(warehouse, tmp_path):
    export = EXPORTS / "hubspot-crm-exports-all-contacts-2026-11-22.csv"
    # Row 102 holds "Select", "N/A" and "-" placeholders; give it a valid email so it loads.
    fixed = export.read_bytes().replace(b'"bo@example"', b'"bo@example.com"')
    (tmp_path / export.name).write_bytes(fixed)
    load(warehouse, tmp_path, load_mappings([SHIPPED_PROFILES]))
    assert warehouse.execute(
        "select title, industry, employee_count, is_do_not_email, country "
        "from raw.leads where source_lead_id = '102'"
    ).fetchall() == [(None, None, None, True, "US")]


def test_salesforce_report_with_us_dates_and_opt_out_flags(warehouse, tmp_path):
    shutil.copy(EXPORTS / "salesforce-leads-2026-11-22.csv", tmp_path)
    (staged,) = load(warehouse, tmp_path, load_mappings([SHIPPED_PROFILES]))
    assert staged.rows_loaded == 2, staged.reasons
    rows = warehouse.execute(
        "select source_lead_id, phone, lead_source, country, is_do_not_email, updated_at "
        "from raw.leads order by 1"
    ).fetchall()
    assert rows == [
        ("00Q1", None, "web_forms", "US", False, datetime(2026, 3, 18, 16, 5)),
        ("00Q2", None, "other", "GB", True, datetime(2026, 3, 16, 9, 0)),
    ]


def test_latin1_semicolon_gzip_export_with_a_custom_profile(warehouse, tmp_path):
    profiles, inbox = tmp_path / "profiles", tmp_path / "inbox"
    profiles.mkdir()
    inbox.mkdir()
    write_profile(
        profiles,
        """
source: trade_show
entity: leads
files: ["badge-scans-*.csv.gz"]
format: {delimiter: ";", encoding: latin-1}
columns: {source_lead_id: Badge, email: Mail, first_name: Vorname, created_at: Scanned}
constants: {updated_at: "2026-10-01 00:00:00", lead_source: event}
timestamp_formats: {created_at: "%d.%m.%Y"}
values: {"*": {"k.A.": ~}}
""",
    )
    with gzip.open(inbox / "badge-scans-berlin.csv.gz", "wt", encoding="latin-1") as handle:
        handle.write(
            "Badge;Mail;Vorname;Scanned\nB1;jurgen@example.de;J\xfcrgen;30.09.2026\nB2;k.A.;Eva;30.09.2026\n"
        )
    (staged,) = load(warehouse, inbox, load_mappings([profiles]))
    assert staged.reasons == {}  # B2's "k.A." is no email: the badge id still finds Eva
    assert warehouse.execute(
        "select first_name, email, created_at, updated_at, lead_source, source from raw.leads"
        " order by source_line"
    ).fetchall() == [
        ("Jürgen", "jurgen@example.de", datetime(2026, 9, 30), datetime(2026, 10, 1), "event",
         "trade_show"),
        ("Eva", None, datetime(2026, 9, 30), datetime(2026, 10, 1), "event", "trade_show"),
    ]  # fmt: skip


def test_a_profile_column_missing_from_the_export_names_the_profile(warehouse, parser, tmp_path):
    profile = write_profile(
        tmp_path,
        "source: crm\nentity: reps\nfiles: ['reps-*.csv']\n"
        "columns: {rep_id: Id, name: Name, email: Mail, region: Territory}\n",
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "reps-2026.csv").write_text("Id,Name,Mail\nr1,Ann,ann@x.com\n")
    (inbox_file,) = scan_inbox(warehouse, inbox, [load_mapping(profile)]).new
    with pytest.raises(
        SourceFileError, match=r"lacks column\(s\) Territory that mapping profile .*profile\.yml"
    ):
        stage_file(warehouse, parser, inbox_file, AS_OF, 0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "source: crm\nentity: deals\nfiles: ['x']\n",
            "key `entity`: Value error, must be one of leads",
        ),
        (
            "source: crm\nentity: reps\nfiles: ['x']\ncolumns: {rep_id: a, name: b, email: c, region: d, colour: e}\n",
            "colour are not columns of reps",
        ),
        (
            "source: crm\nentity: reps\nfiles: ['x']\ncolumns: {rep_id: a}\n",
            "must map the required column(s) name, email, region",
        ),
        (
            "source: crm\nentity: reps\nfiles: ['x']\nformat: {encoding: ebcdic}\ncolumns: {rep_id: a, name: b, email: c, region: d}\n",
            "key `format.encoding`",
        ),
        ("source: CRM!\nentity: reps\nfiles: ['x']\n", "key `source`"),
        (
            "source: crm\nentity: leads\nfiles: ['x']\ndefault_timestamp: yesterday\n"
            "columns: {source_lead_id: a, email: b}\n",
            "must be file_mtime (the file's export time) or a timestamp",
        ),
        (
            "source: crm\nentity: leads\nfiles: ['x']\nrequired: [company]\n"
            "columns: {source_lead_id: a, email: b, created_at: c, updated_at: d}\n",
            "key `required` lists company, which `columns` does not map",
        ),
        (
            "source: crm\nentity: leads\nfiles: ['x']\ncolumns: {source_lead_id: a, email: b}\n",
            "or set `default_timestamp`",
        ),
        ("source: crm\nentity: reps\n  files: [\n", "not valid YAML"),
        ("- a list\n", "a profile is a YAML mapping"),
    ],
)
def test_profile_mistakes_name_the_file_and_the_key(tmp_path, text, fragment):
    profile = write_profile(tmp_path, text)
    with pytest.raises(MappingError) as raised:
        load_mapping(profile)
    assert str(profile) in str(raised.value)
    assert fragment in str(raised.value)


def test_yes_and_no_stay_text_in_value_maps(tmp_path):
    profile = write_profile(
        tmp_path,
        "source: crm\nentity: leads\nfiles: ['x']\n"
        "columns: {source_lead_id: a, email: b, created_at: c, updated_at: d, is_do_not_email: e}\n"
        "values: {is_do_not_email: {Yes: true, No: false, 1: true}}\n",
    )
    assert load_mapping(profile).values["is_do_not_email"] == {
        "Yes": "true",
        "No": "false",
        "1": "true",
    }


def test_shipped_profiles_load():
    names = {m.name: m.source for m in load_mappings([SHIPPED_PROFILES])}
    assert names == {"hubspot_contacts": "hubspot", "salesforce_leads": "salesforce"}


def test_nested_json_fields_are_mapped_by_dotted_path(warehouse, tmp_path):
    profile = write_profile(
        tmp_path,
        "source: crm_api\nentity: leads\nfiles: ['contacts-*.jsonl']\n"
        "columns: {source_lead_id: id, email: properties.email, title: properties.job.title,"
        " created_at: createdAt, updated_at: updatedAt}\n",
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "contacts-1.jsonl").write_text(
        '{"id": "1", "properties": {"email": "a@b.com", "job": {"title": "CFO"}}, '
        '"createdAt": "2026-01-01T00:00:00", "updatedAt": "2026-01-02T00:00:00"}\n'
    )
    load(warehouse, inbox, [load_mapping(profile)])
    assert warehouse.execute("select email, title from raw.leads").fetchall() == [
        ("a@b.com", "CFO")
    ]


def test_a_hubspot_export_of_picked_columns_loads_through_the_shipped_profile(warehouse, tmp_path):
    export = tmp_path / "hubspot-crm-exports-picked-contacts-2026-11-22.csv"
    shutil.copy(EXPORTS / export.name, export)
    exported_at = datetime(2026, 11, 22, 8, 15)
    os.utime(export, (exported_at.replace(tzinfo=UTC).timestamp(),) * 2)
    (staged,) = load(warehouse, tmp_path, load_mappings([SHIPPED_PROFILES]))
    assert staged.reasons == {}  # 202, with no email nor phone, is known by its record id
    assert "Create Date" in staged.absent_columns and "Job Title" in staged.absent_columns
    assert warehouse.execute(
        "select source_lead_id, company, title, is_do_not_email, created_at, updated_at "
        "from raw.leads order by 1"
    ).fetchall() == [
        ("201", "Delta GmbH", None, False, exported_at, exported_at),
        ("202", "Epsilon", None, True, exported_at, exported_at),
        ("203", None, None, False, exported_at, exported_at),
    ]


def test_a_profile_names_what_an_export_must_have(warehouse, parser, tmp_path):
    profile = write_profile(
        tmp_path,
        "source: partner\nentity: leads\nfiles: ['partner-*.csv']\n"
        "columns: {source_lead_id: Id, email: Mail, company: Firm, created_at: Created,"
        " updated_at: Updated}\n"
        "required: [company]\n",
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "partner-1.csv").write_text("Id,Mail,Created\n1,a@b.com,2026-01-01\n")
    (inbox_file,) = scan_inbox(warehouse, inbox, [load_mapping(profile)]).new
    # Firm: marked required; Updated: required by leads, with no default_timestamp to stand in.
    with pytest.raises(SourceFileError, match=r"lacks column\(s\) Firm, Updated that"):
        stage_file(warehouse, parser, inbox_file, AS_OF, 0)


def test_a_fixed_default_timestamp_stands_in_for_absent_timestamps(warehouse, tmp_path):
    profile = write_profile(
        tmp_path,
        "source: partner\nentity: leads\nfiles: ['partner-*.csv']\n"
        "columns: {source_lead_id: Id, email: Mail, created_at: Created}\n"
        "default_timestamp: '2026-10-01 00:00:00'\n",
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "partner-1.csv").write_text("Id,Mail,Created\n1,a@b.com,2026-09-01\n2,c@d.com,\n")
    (staged,) = load(warehouse, inbox, [load_mapping(profile)])
    # Only an absent column takes the default: an empty cell of a present one is still empty.
    assert staged.reasons == {"missing_required": 1}
    assert warehouse.execute("select created_at, updated_at from raw.leads").fetchall() == [
        (datetime(2026, 9, 1), datetime(2026, 10, 1))
    ]
