"""The gate's decisions on small frames, validated by the real GX project (copied per module)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from flows.checks.gate import GateConfigError, GateReport, run_gate
from tests.unit.checks.conftest import copy_expectations

DUE_AT = pd.Timestamp("2026-03-02 09:00")


def handoff_row(number: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "lead_id": f"lead-{number:03d}",
        "email": f"person{number}@acme.example",
        "reach_by": "email",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Acme",
        "title": "VP Engineering",
        "country": "GB",
        "segment": "mid_market",
        "owner_rep_id": "rep-1",
        "owner_name": "Rita Rep",
        "owner_email": "rita@leadflow.example",
        "fit_score": 60.0,
        "engagement_score": 75.5,
        "lead_score": 135.5,
        "why_now": "Requested a demo",
        "due_at": DUE_AT,
        # The gate's own columns (flows.checks.frames): a rep with room, no trailing runs yet.
        "owner_rep_status": "active",
        "owner_daily_task_capacity": 40,
        "owner_capacity_left": 40,
        "handoff_volume_ratio": None,
        "source_share_drift": None,
    }
    return row | changes


def nurture_row(number: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "lead_id": f"lead-{number:03d}",
        "email": f"person{number}@acme.example",
        "first_name": "Grace",
        "last_name": "Hopper",
        "company": "Acme",
        "title": "Engineer",
        "owner_rep_id": "rep-2",
        "owner_name": "Sam Seller",
        "owner_email": "sam@leadflow.example",
        "stage": "recycled",
        "stage_reason": "not_ready",
        "nurture_track": "not_ready",
        "next_step": 1,
        "template": "not_ready/1_checking_in.html",
        "due_at": DUE_AT,
        "is_due": True,
        "follow_up_title": "Call after the first email",
        "follow_up_due_days": 3,
        "email_blocker": None,
    }
    return row | changes


def handoff_queue(*rows: dict[str, object], size: int = 10) -> pd.DataFrame:
    return pd.DataFrame(list(rows) or [handoff_row(number) for number in range(size)])


def nurture_queue(*rows: dict[str, object], size: int = 10) -> pd.DataFrame:
    return pd.DataFrame(list(rows) or [nurture_row(number) for number in range(size)])


@pytest.fixture(scope="module")
def expectations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy for the module: these tests only read the project."""
    return copy_expectations(tmp_path_factory.mktemp("gate"))


def gate(expectations_dir: Path, **frames: pd.DataFrame) -> GateReport:
    return run_gate(frames, expectations_dir)


def test_valid_queues_pass_without_warnings(expectations_dir, capfd):
    report = gate(expectations_dir, handoff_queue=handoff_queue(), nurture_queue=nurture_queue())

    assert report.passed
    for asset, result in report.assets.items():
        assert result.asset == asset
        assert result.passed
        assert result.evaluated_rows == 10
        assert result.critical_failures == ()
        assert result.warnings == ()
        assert result.failing_lead_ids == frozenset()
    assert report.explain() == (
        "The gate passed. handoff_queue (10 rows) met every expectation. "
        "nurture_queue (10 rows) met every expectation."
    )
    # No tqdm progress bars or other noise on the terminal.
    assert capfd.readouterr() == ("", "")


def test_empty_queues_pass(expectations_dir):
    empty_handoff = handoff_queue().iloc[0:0]
    empty_nurture = nurture_queue().iloc[0:0]

    report = gate(expectations_dir, handoff_queue=empty_handoff, nurture_queue=empty_nurture)

    assert report.passed
    assert [result.evaluated_rows for result in report.assets.values()] == [0, 0]
    assert all(not result.warnings for result in report.assets.values())


@pytest.mark.parametrize(
    ("bad_row", "column", "expectation"),
    [
        (
            handoff_row(3, owner_rep_status="inactive"),
            "owner_rep_status",
            "expect_column_values_to_be_in_set",
        ),
        (
            handoff_row(3, owner_rep_status="not_a_rep", owner_daily_task_capacity=None),
            "owner_rep_status",
            "expect_column_values_to_be_in_set",
        ),
        (
            handoff_row(3, owner_daily_task_capacity=0, owner_capacity_left=0),
            "owner_daily_task_capacity",
            "expect_column_values_to_be_between",
        ),
        (
            handoff_row(3, owner_capacity_left=-2),
            "owner_capacity_left",
            "expect_column_values_to_be_between",
        ),
        (
            handoff_row(3, email="person3.acme.example"),
            "email",
            "expect_column_values_to_match_regex",
        ),
        (handoff_row(3, email="two@@acme.example"), "email", "expect_column_values_to_match_regex"),
        (handoff_row(3, fit_score=250.0), "fit_score", "expect_column_values_to_be_between"),
        (
            handoff_row(3, engagement_score=-1.0),
            "engagement_score",
            "expect_column_values_to_be_between",
        ),
    ],
)
def test_a_bad_handoff_row_blocks_the_queue_and_is_named(
    expectations_dir, bad_row, column, expectation
):
    rows = [handoff_row(number) for number in range(10) if number != 3] + [bad_row]

    result = gate(expectations_dir, handoff_queue=handoff_queue(*rows)).assets["handoff_queue"]

    assert not result.passed
    assert result.failing_lead_ids == {"lead-003"}
    [failure] = result.critical_failures
    assert (failure.suite, failure.column, failure.expectation) == (
        "handoff_queue.critical",
        column,
        expectation,
    )
    assert failure.unexpected_count == 1
    assert failure.sample_lead_ids == ("lead-003",)
    assert column in failure.message and "lead-003" in failure.message


def test_the_owner_check_names_the_owner_status_in_the_suite_files_own_words(expectations_dir):
    rows = [handoff_row(number) for number in range(5)] + [
        handoff_row(5, owner_rep_id="rep-gone", owner_rep_status="not_a_rep")
    ]

    report = gate(expectations_dir, handoff_queue=handoff_queue(*rows))

    [failure] = report.assets["handoff_queue"].critical_failures
    assert failure.name == "owner_is_an_active_rep"
    assert failure.message == (
        "1 of 6 rows are owned by no active rep in dim_reps (owner_rep_status not_a_rep) "
        "(lead_id lead-005)."
    )
    assert f"owner_is_an_active_rep: {failure.message}" in report.explain()


def test_every_failing_row_is_listed_not_only_the_summary_sample(expectations_dir):
    # GX's SUMMARY format samples 20 rows; the gate must still name all 30 bad ones.
    rows = [
        handoff_row(number, owner_rep_status="inactive" if number < 30 else "active")
        for number in range(40)
    ]

    result = gate(expectations_dir, handoff_queue=handoff_queue(*rows)).assets["handoff_queue"]

    assert result.failing_lead_ids == {f"lead-{number:03d}" for number in range(30)}
    [failure] = result.critical_failures
    assert failure.unexpected_count == 30
    assert len(failure.sample_lead_ids) == 5
    assert failure.message.startswith("30 of 40 rows are owned by no active rep")


def test_rows_are_named_by_lead_id_whatever_index_the_frame_has(expectations_dir):
    rows = [
        handoff_row(number, owner_rep_status="unassigned" if number == 4 else "active")
        for number in range(8)
    ]
    frame = handoff_queue(*rows).set_axis(["x", "y", "z", "w", "v", "u", "t", "s"])

    result = gate(expectations_dir, handoff_queue=frame.iloc[::-1]).assets["handoff_queue"]

    assert result.failing_lead_ids == {"lead-004"}
    assert result.critical_failures[0].sample_lead_ids == ("lead-004",)


def test_failing_rows_of_several_expectations_are_united(expectations_dir):
    rows = [
        handoff_row(0, owner_rep_status="inactive"),
        handoff_row(1, email="not-an-email"),
        handoff_row(2),
    ]

    report = gate(expectations_dir, handoff_queue=handoff_queue(*rows))

    result = report.assets["handoff_queue"]
    assert result.failing_lead_ids == {"lead-000", "lead-001"}
    assert {failure.column for failure in result.critical_failures} == {"owner_rep_status", "email"}
    assert report.explain().startswith(
        "The gate blocked handoff_queue. handoff_queue (3 rows) is blocked by 2 critical "
        "failures involving 2 leads:"
    )


def test_a_warning_only_problem_passes_with_the_warning(expectations_dir):
    rows = [handoff_row(number, company=None if number < 3 else "Acme") for number in range(10)]

    report = gate(expectations_dir, handoff_queue=handoff_queue(*rows))

    result = report.assets["handoff_queue"]
    assert report.passed and result.passed
    assert result.critical_failures == ()
    assert result.failing_lead_ids == frozenset()
    [warning] = result.warnings
    assert (warning.suite, warning.column, warning.unexpected_count) == (
        "handoff_queue.warning",
        "company",
        3,
    )
    assert warning.sample_lead_ids == ("lead-000", "lead-001", "lead-002")
    assert report.explain() == (
        "The gate passed with warnings. handoff_queue (10 rows) passed with 1 warning: "
        "expect_column_values_to_not_be_null: 3 of 10 rows have no company; at most 10% may "
        "(lead_id lead-000, lead-001, lead-002)."
    )


def test_company_gaps_within_the_allowed_share_raise_no_warning(expectations_dir):
    rows = [handoff_row(number, company=None if number == 0 else "Acme") for number in range(10)]

    result = gate(expectations_dir, handoff_queue=handoff_queue(*rows)).assets["handoff_queue"]

    assert result.passed and result.warnings == ()


def test_a_missing_contract_column_blocks_and_says_which(expectations_dir):
    frame = handoff_queue().drop(columns=["owner_email"])

    result = gate(expectations_dir, handoff_queue=frame).assets["handoff_queue"]

    assert not result.passed
    messages = " ".join(failure.message for failure in result.critical_failures)
    assert "lacks contract column(s) owner_email" in messages


def test_the_nurture_queue_allows_one_lead_on_several_steps_but_not_the_same_step_twice(
    expectations_dir,
):
    two_steps = nurture_queue(nurture_row(1), nurture_row(1, next_step=2), nurture_row(2))
    same_step_twice = nurture_queue(nurture_row(1), nurture_row(1), nurture_row(2))

    assert gate(expectations_dir, nurture_queue=two_steps).passed
    result = gate(expectations_dir, nurture_queue=same_step_twice).assets["nurture_queue"]
    assert not result.passed
    assert result.failing_lead_ids == {"lead-001"}
    [failure] = result.critical_failures
    assert failure.expectation == "expect_compound_columns_to_be_unique"
    assert failure.column == "lead_id, nurture_track, next_step"


def test_the_nurture_queue_accepts_any_track_name_marketing_authors(expectations_dir):
    frame = nurture_queue(nurture_row(1, nurture_track="brand_new_track_from_marketing"))

    assert gate(expectations_dir, nurture_queue=frame).passed


@pytest.mark.parametrize(
    ("changes", "column"),
    [
        ({"is_due": "yes"}, "is_due"),
        ({"email_blocker": "unsubscribe"}, "email_blocker"),
        ({"email_blocker": "do_not_email"}, "email_blocker"),
        ({"email": "nobody@localhost"}, "email"),
    ],
)
def test_a_bad_nurture_row_blocks_the_queue(expectations_dir, changes, column):
    frame = nurture_queue(nurture_row(0), nurture_row(1, **changes), nurture_row(2))

    result = gate(expectations_dir, nurture_queue=frame).assets["nurture_queue"]

    assert not result.passed
    assert result.failing_lead_ids == {"lead-001"}
    assert {failure.column for failure in result.critical_failures} == {column}


def test_a_missing_project_is_a_config_error_and_nothing_is_scaffolded(tmp_path):
    missing = tmp_path / "expectations"

    with pytest.raises(GateConfigError, match=r"great_expectations\.yml not found"):
        gate(missing, handoff_queue=handoff_queue())
    assert not missing.exists()


def test_a_broken_project_file_is_a_config_error_naming_it(expectations_dir, tmp_path):
    broken = tmp_path / "expectations"
    shutil.copytree(expectations_dir, broken)
    (broken / "gx" / "great_expectations.yml").write_text("stores: [unclosed\n")

    with pytest.raises(GateConfigError, match=r"great_expectations\.yml cannot be loaded"):
        gate(broken, handoff_queue=handoff_queue())


def test_an_asset_without_a_gate_is_a_config_error_listing_the_gated_ones(expectations_dir):
    with pytest.raises(GateConfigError) as error:
        gate(expectations_dir, leads=handoff_queue())

    assert "leads.pre_send_gate.json not found" in str(error.value)
    assert "handoff_queue, nurture_queue" in str(error.value)


def test_a_checkpoint_that_validates_another_asset_is_a_config_error(expectations_dir, tmp_path):
    crossed = tmp_path / "expectations"
    shutil.copytree(expectations_dir, crossed)
    checkpoint = crossed / "gx" / "checkpoints" / "handoff_queue.pre_send_gate.json"
    nurture = (crossed / "gx" / "checkpoints" / "nurture_queue.pre_send_gate.json").read_text()
    checkpoint.write_text(
        nurture.replace('"nurture_queue.pre_send_gate"', '"handoff_queue.pre_send_gate"')
    )

    with pytest.raises(GateConfigError, match="not a valid gate for 'handoff_queue'"):
        gate(crossed, handoff_queue=handoff_queue())


def test_an_expectation_gx_cannot_read_is_a_config_error_not_a_silently_weaker_gate(
    expectations_dir, tmp_path
):
    typo = tmp_path / "expectations"
    shutil.copytree(expectations_dir, typo)
    suite = typo / "gx" / "expectations" / "handoff_queue" / "critical.json"
    suite.write_text(
        suite.read_text().replace(
            '"expect_column_values_to_be_in_set"', '"expect_column_values_to_be_in_sett"'
        )
    )

    with pytest.raises(GateConfigError) as error:
        gate(typo, handoff_queue=handoff_queue())

    assert str(error.value).startswith(
        f"{suite}: GX cannot read expect_column_values_to_be_in_sett"
    )


def test_a_hand_off_volume_far_from_the_trailing_runs_warns_once_with_the_ratio(
    expectations_dir,
):
    rows = [handoff_row(number, handoff_volume_ratio=3.0) for number in range(10)]

    report = gate(expectations_dir, handoff_queue=handoff_queue(*rows))

    result = report.assets["handoff_queue"]
    assert report.passed and result.passed
    [warning] = result.warnings
    assert warning.name == "handoff_volume_near_trailing_runs"
    assert warning.message.startswith(
        "The hand-off queue is 3.00 times the median size of the trailing runs"
    )


def test_a_drifting_source_share_warns_and_a_steady_one_does_not(expectations_dir):
    steady = [handoff_row(number, source_share_drift=0.05) for number in range(10)]
    drifting = [
        handoff_row(number, source_share_drift=0.35 if number < 4 else -0.35)
        for number in range(10)
    ]

    assert (
        gate(expectations_dir, handoff_queue=handoff_queue(*steady))
        .assets["handoff_queue"]
        .warnings
        == ()
    )
    result = gate(expectations_dir, handoff_queue=handoff_queue(*drifting)).assets["handoff_queue"]
    assert result.passed
    [warning] = result.warnings
    assert (warning.name, warning.unexpected_count) == ("source_share_steady", 10)
    assert "moved by 0.35 from the trailing runs" in warning.message
