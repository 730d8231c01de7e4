from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from flows.dbt_selection import (
    CLOCK_MACRO,
    EVENTS_SOURCE,
    EVENTS_TESTED_THROUGH,
    LAST_BUILD_FINISHED_AT,
    SourceTable,
    build_selection,
    clock_readers,
    definitions_fingerprint,
    earlier_build,
    events_tested_through,
    forget_build,
    forget_inputs,
    incremental_models,
    inputs_fingerprint,
    last_build_finished_at,
    nothing_new,
    quiet_selection,
    save_build,
    save_inputs,
    saved_inputs,
    source_watermarks,
)


def make_project(root: Path) -> Path:
    project = root / "dbt_project"
    project.mkdir()
    (project / "dbt_project.yml").write_text("vars:\n  mql_fit_threshold: 35\n")
    (project / "profiles.yml").write_text("leadflow: {}\n")
    return project


def make_target(root: Path) -> Path:
    target = root / "target"
    target.mkdir()
    (target / "manifest.json").write_text('{"nodes": {}}')
    (target / "sources.json").write_text('{"results": []}')
    write_build_results(target, "2026-03-01T10:00:05.123456Z")
    return target


def write_build_results(folder: Path, generated_at: str) -> None:
    metadata = {"generated_at": generated_at, "invocation_started_at": "2026-03-01T10:00:00Z"}
    (folder / "run_results.json").write_text(json.dumps({"metadata": metadata, "results": []}))


def test_a_saved_build_is_the_next_runs_reference(tmp_path):
    project, target, state = make_project(tmp_path), make_target(tmp_path), tmp_path / "state"
    assert earlier_build(state, project) is None
    save_build(target, state, project)
    assert earlier_build(state, project) == state
    assert (state / "manifest.json").read_text() == '{"nodes": {}}'


def test_a_changed_var_or_profile_means_no_reference(tmp_path):
    """dbt does not see a changed var as a changed model: rebuild everything instead."""
    project, target, state = make_project(tmp_path), make_target(tmp_path), tmp_path / "state"
    save_build(target, state, project)
    (project / "dbt_project.yml").write_text("vars:\n  mql_fit_threshold: 40\n")
    assert earlier_build(state, project) is None
    (project / "dbt_project.yml").write_text("vars:\n  mql_fit_threshold: 35\n")
    assert earlier_build(state, project) == state
    (project / "profiles.yml").write_text("leadflow: {target: other}\n")
    assert earlier_build(state, project) is None


def test_an_incomplete_or_forgotten_build_is_no_reference(tmp_path):
    project, target, state = make_project(tmp_path), make_target(tmp_path), tmp_path / "state"
    save_build(target, state, project)
    (state / "sources.json").unlink()
    assert earlier_build(state, project) is None
    save_build(target, state, project)
    forget_build(state)
    assert earlier_build(state, project) is None


def test_nodes_that_read_the_clock_directly_or_through_macros():
    node_macros = {
        "int_leads_staged": [CLOCK_MACRO, "macro.dbt.hash"],
        "fct_lead_events": ["macro.leadflow.decayed"],
        "int_lead_events_scored": ["macro.dbt.hash", "macro.leadflow.in_list"],
        "dim_leads": [],
    }
    macro_macros = {
        "macro.leadflow.decayed": ["macro.leadflow.days_between", CLOCK_MACRO],
        "macro.leadflow.days_between": ["macro.dbt.datediff"],
        # Macros may call each other in a cycle: the walk still ends.
        "macro.leadflow.in_list": ["macro.leadflow.quoted"],
        "macro.leadflow.quoted": ["macro.leadflow.in_list"],
    }
    assert clock_readers(node_macros, macro_macros) == ["fct_lead_events", "int_leads_staged"]


def test_a_macro_reaches_the_clock_through_a_cycle_whatever_the_order():
    """b calls a, a calls b and then c, c reads the clock: both a and b read it."""
    macro_macros = {
        "macro.leadflow.a": ["macro.leadflow.b", "macro.leadflow.c"],
        "macro.leadflow.b": ["macro.leadflow.a"],
        "macro.leadflow.c": [CLOCK_MACRO],
    }
    node_macros = {"calls_a": ["macro.leadflow.a"], "calls_b": ["macro.leadflow.b"]}
    assert clock_readers(node_macros, macro_macros) == ["calls_a", "calls_b"]


def test_without_a_reference_everything_is_built_and_tested():
    selection = build_selection(None, ["int_leads_staged"], changed=None)
    assert selection.arguments == ()
    assert "everything" in selection.description
    # Empty, not absent: the runner's process may hold an earlier run's value.
    assert selection.environment == {EVENTS_TESTED_THROUGH: "", LAST_BUILD_FINISHED_AT: ""}


def write_freshness(state: Path, events_loaded_at: str | None) -> None:
    results = [
        {"unique_id": "source.leadflow.raw.leads", "max_loaded_at": "2026-03-01T08:00:00+00:00"}
    ]
    if events_loaded_at is not None:
        results.append({"unique_id": EVENTS_SOURCE, "max_loaded_at": events_loaded_at})
    (state / "sources.json").write_text(json.dumps({"results": results}))


def test_with_a_reference_what_fresher_data_changes_and_the_clock_reach(tmp_path):
    write_freshness(tmp_path, "2026-03-01T09:30:00.250000+00:00")
    write_build_results(tmp_path, "2026-03-01T10:00:05.123456Z")
    selection = build_selection(tmp_path, ["fct_lead_events", "int_leads_staged"], changed=None)
    arguments = list(selection.arguments)
    assert arguments[0] == "--select"
    assert arguments[arguments.index("--state") + 1] == str(tmp_path)
    selectors = arguments[1 : arguments.index("--state")]
    assert selectors == [
        "source_status:fresher+",
        "state:modified+",
        "source:ops+",
        "fct_lead_events+",
        "int_leads_staged+",
    ]
    assert "--exclude-resource-type" not in arguments


def test_event_tests_read_the_loads_after_the_ones_the_reference_tested(tmp_path):
    write_freshness(tmp_path, "2026-03-01T09:30:00.250000+00:00")
    write_build_results(tmp_path, "2026-03-01T10:00:05.123456Z")
    selection = build_selection(tmp_path, [], changed=None)
    assert selection.environment[EVENTS_TESTED_THROUGH] == "2026-03-01 09:30:00.250000"


def test_tests_of_per_lead_rows_read_those_written_after_the_reference_finished(tmp_path):
    """The end of the build, not its start: its own rows are marked with its start."""
    write_freshness(tmp_path, None)
    write_build_results(tmp_path, "2026-03-01T10:00:05.123456Z")
    selection = build_selection(tmp_path, [], changed=None)
    assert selection.environment[LAST_BUILD_FINISHED_AT] == "2026-03-01 10:00:05.123456"


def test_results_without_an_end_time_leave_every_row_to_test(tmp_path):
    (tmp_path / "run_results.json").write_text('{"metadata": {}, "results": []}')
    assert last_build_finished_at(tmp_path) == ""


def test_a_reference_without_events_leaves_every_event_to_test(tmp_path):
    write_freshness(tmp_path, None)
    assert events_tested_through(tmp_path) == ""


def test_unit_tests_run_only_when_a_definition_changed(tmp_path):
    write_freshness(tmp_path, "2026-03-01T09:30:00+00:00")
    write_build_results(tmp_path, "2026-03-01T10:00:05.123456Z")
    unchanged = build_selection(tmp_path, ["dim_leads"], changed=[])
    assert unchanged.arguments[-2:] == ("--exclude-resource-type", "unit_test")
    assert "no unit tests" in unchanged.description
    changed = build_selection(tmp_path, ["dim_leads"], changed=["dim_leads"])
    assert "unit_test" not in changed.arguments


MATERIALIZATIONS = {
    "int_leads_staged": "incremental",
    "int_lead_events_scored": "incremental",
    "dim_leads": "table",
    "stg_raw__events": "view",
}


def test_the_incremental_models_among_the_changed_definitions_are_refreshed():
    changed = ["dim_leads", "int_leads_staged", "engagement_points", "a_unit_test"]
    assert incremental_models(MATERIALIZATIONS, changed) == ["int_leads_staged"]
    assert incremental_models(MATERIALIZATIONS, []) == []


def test_an_incremental_model_reading_a_changed_view_is_refreshed_through_other_views():
    """A view is read afresh and marks nothing, so what its change altered is in the stored
    rows of the incremental models reading it, directly or through another view."""
    materializations = {
        **MATERIALIZATIONS,
        "stg_ops__sales_tasks": "view",
        "stg_raw__events_typed": "view",
    }
    parents = {
        "int_leads_staged": ["stg_ops__sales_tasks", "dim_leads"],
        "int_lead_events_scored": ["stg_raw__events"],
        "stg_raw__events": ["stg_raw__events_typed"],
    }
    assert incremental_models(materializations, ["stg_ops__sales_tasks"], parents) == [
        "int_leads_staged"
    ]
    assert incremental_models(materializations, ["stg_raw__events_typed"], parents) == [
        "int_lead_events_scored"
    ]
    # A changed table is rebuilt whole, with a new built_at its readers compare.
    assert incremental_models(materializations, ["dim_leads"], parents) == []


def test_when_it_is_unknown_what_changed_every_incremental_model_is_refreshed():
    assert incremental_models(MATERIALIZATIONS, None) == [
        "int_lead_events_scored",
        "int_leads_staged",
    ]


def test_a_changed_incremental_model_makes_the_build_start_afresh(tmp_path):
    """Its stored rows were written by the old definition, and a run rewrites only some."""
    write_freshness(tmp_path, "2026-03-01T09:30:00+00:00")
    write_build_results(tmp_path, "2026-03-01T10:00:05.123456Z")
    changed = build_selection(
        tmp_path,
        ["int_leads_staged"],
        changed=["int_leads_staged"],
        materializations=MATERIALIZATIONS,
    )
    assert changed.arguments[-1] == "--full-refresh"
    assert (
        "incremental models changed or read a changed view (int_leads_staged)"
        in changed.description
    )
    unchanged = build_selection(
        tmp_path, ["int_leads_staged"], changed=["dim_leads"], materializations=MATERIALIZATIONS
    )
    assert "--full-refresh" not in unchanged.arguments


# --- a run with nothing new --------------------------------------------------------------


def test_any_definition_file_changes_the_definitions_fingerprint(tmp_path):
    project = make_project(tmp_path)
    (project / "models").mkdir()
    model = project / "models" / "dim_leads.sql"
    model.write_text("select 1 as lead_id")
    before = definitions_fingerprint(project)
    # What dbt writes or never reads as a definition does not count.
    (project / "target").mkdir()
    (project / "target" / "manifest.json").write_text("{}")
    assert definitions_fingerprint(project) == before

    model.write_text("select 2 as lead_id")
    changed = definitions_fingerprint(project)
    (project / "macros").mkdir()
    (project / "macros" / "new.sql").write_text("{% macro x() %}1{% endmacro %}")

    assert len({before, changed, definitions_fingerprint(project)}) == 3


RAW = SourceTable("raw", "events", "loaded_at")
OPS = SourceTable("ops", "sales_tasks", None)


@pytest.fixture
def warehouse():
    connection = duckdb.connect()
    connection.execute("create schema raw; create schema ops")
    connection.execute("create table raw.events (event_id varchar, loaded_at timestamp)")
    connection.execute("insert into raw.events values ('e1', '2026-03-01 08:00')")
    connection.execute("create table ops.sales_tasks (task_id varchar, status varchar)")
    connection.execute("insert into ops.sales_tasks values ('t1', 'open'), ('t2', 'open')")
    yield connection
    connection.close()


@pytest.mark.parametrize(
    "change",
    [
        "insert into raw.events values ('e2', '2026-03-01 09:00')",
        # A task closed in place: same row count, one value changed.
        "update ops.sales_tasks set status = 'closed' where task_id = 't1'",
        "delete from ops.sales_tasks where task_id = 't2'",
    ],
)
def test_new_rows_and_rows_changed_in_place_change_the_watermarks(warehouse, change):
    before = source_watermarks(warehouse, [RAW, OPS])
    assert source_watermarks(warehouse, [RAW, OPS]) == before
    warehouse.execute(change)
    assert source_watermarks(warehouse, [RAW, OPS]) != before


def test_a_source_table_not_created_yet_counts_as_absent(warehouse):
    marks = source_watermarks(warehouse, [SourceTable("ops", "email_sends", None)])
    assert marks == {"ops.email_sends": ["absent"]}


def test_only_a_successful_build_with_the_same_inputs_lets_a_run_build_what_the_clock_reaches(
    tmp_path,
):
    state = tmp_path / "last-build"
    inputs = inputs_fingerprint("definitions", {"raw.events": ["1", "2026-03-01 08:00:00"]})
    save_inputs(state, inputs)
    saved = saved_inputs(state)

    assert nothing_new(state, ["dim_leads"], saved, inputs)
    # New rows, a changed definition: compared as usual.
    assert not nothing_new(state, ["dim_leads"], saved, inputs_fingerprint("definitions", {}))
    assert not nothing_new(state, ["dim_leads"], saved, inputs_fingerprint("changed", {}))
    # No earlier build, no warehouse yet, nothing reads the clock.
    assert not nothing_new(None, ["dim_leads"], saved, inputs)
    assert not nothing_new(state, ["dim_leads"], saved, None)
    assert not nothing_new(state, [], saved, inputs)
    # A build starts by forgetting them: one that fails or crashes leaves none to compare.
    forget_inputs(state)
    assert not nothing_new(state, ["dim_leads"], saved_inputs(state), inputs)


def test_a_quiet_run_selects_what_reads_the_clock_and_no_unit_tests(tmp_path):
    write_freshness(tmp_path, "2026-03-01T09:30:00+00:00")
    write_build_results(tmp_path, "2026-03-01T10:00:05Z")

    selection = quiet_selection(tmp_path, ["dim_leads", "fct_nurture_queue"])

    assert selection.arguments == (
        "--select", "dim_leads+", "fct_nurture_queue+",
        "--exclude-resource-type", "unit_test",
    )  # fmt: skip
    # Tests read what the earlier build left as tested, as in any incremental run.
    assert selection.environment == {
        EVENTS_TESTED_THROUGH: "2026-03-01 09:30:00",
        LAST_BUILD_FINISHED_AT: "2026-03-01 10:00:05",
    }
