"""Custom attributes end to end: an export's unmapped columns loaded through a profile (real
extract), merged per person and scored by fit rules in the seed (real dbt)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from flows.dbt_runner import dbt_session
from flows.sources.inbox import load_file, scan_inbox
from flows.sources.mapping import load_mapping
from flows.warehouse import ensure_schema

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
AS_OF = datetime(2026, 11, 22)
EXPORT = (
    "Prospect ID,Email,Total Visits,Total Time Spent on Website,Occupation,Tags\n"
    "p1,reader@acme.com,4,1532,Working Professional,Ringing\n"
    "p2,browser@acme.com,many,120,Select,\n"
    "p3,quiet@acme.com,,,Student,Interested in other courses\n"
)
PROFILE = """
source: crm_export
entity: leads
files: ["crm-*.csv"]
default_timestamp: '2026-11-01 00:00:00'
columns: {source_lead_id: Prospect ID, email: Email}
attributes: {visits: Total Visits, time_on_site: Total Time Spent on Website}
values: {"*": {Select: ~}}
outcome_only: [Tags]
"""
RULES = """
long_visit,time_on_site,gte,900,15,,15+ minutes on the website
return_visitor,visits,between,3|20,8,,Came back 3 to 20 times
no_visit_data,time_on_site,is_missing,,-2,,No visit data
"""


@pytest.mark.slow
def test_fit_rules_score_custom_attributes_of_a_loaded_export(tmp_path, monkeypatch):
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    with (project / "seeds" / "fit_rules.csv").open("a") as seed:
        seed.write(RULES.lstrip())
    warehouse = tmp_path / "warehouse.duckdb"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "crm-2026-11.csv").write_text(EXPORT)
    (tmp_path / "crm_export.yml").write_text(PROFILE)
    with duckdb.connect(str(warehouse)) as connection:
        ensure_schema(connection)
        (export,) = scan_inbox(connection, inbox, [load_mapping(tmp_path / "crm_export.yml")]).new
        assert load_file(connection, export, AS_OF, "run-1").rows_loaded == 3
        attributes = connection.execute(
            "select attributes from raw.leads order by source_lead_id"
        ).fetchall()
    assert [json.loads(row[0]) for row in attributes][1] == {
        "visits": "many",
        "time_on_site": "120",
    }

    monkeypatch.setenv("LEADFLOW_WAREHOUSE_PATH", str(warehouse))
    with dbt_session():
        result = dbtRunner().invoke(
            [
                "build",
                "--project-dir", str(project),
                "--profiles-dir", str(project),
                "--select", "+int_leads_fit_scored",
                "--indirect-selection", "cautious",  # not the tests that reach the marts
                "--vars", json.dumps({"as_of": AS_OF.isoformat(sep=" ")}),
            ]
        )  # fmt: skip
    assert result.success, result.exception

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        matched = connection.execute(
            """
            select leads.email, list(matched.rule_id order by matched.rule_id)
            from main.int_leads_deduplicated as leads
            left join main.int_lead_fit_rules_matched as matched using (lead_id)
            where matched.rule_id in ('long_visit', 'return_visitor', 'no_visit_data')
            group by all order by 1
            """
        ).fetchall()
    assert matched == [
        ("quiet@acme.com", ["no_visit_data"]),
        ("reader@acme.com", ["long_visit", "return_visitor"]),
    ]
