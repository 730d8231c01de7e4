"""Proposed seeds: only the points move, caps follow their points, applying keeps comments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.scoring.seeds import (
    SeedError,
    apply_proposal,
    read_seed,
    read_vars,
    replaced_var,
    with_points,
)

ENGAGEMENT = """event_type,points,daily_cap,activity_label,description
email_open,1,3,Opened our emails,Opened a marketing or nurture email
form_fill,10,20,Filled in a form,"Submitted a form (contact, newsletter or trial)"
unsubscribe,0,0,Unsubscribed,No points: suppresses all nurture email
"""

PROJECT = """name: leadflow
vars:
  # A lead is an MQL when its fit score AND its engagement score both reach these thresholds.
  mql_fit_threshold: 35
  mql_engagement_threshold: 40  # agreed with sales
  engagement_half_life_days: 21
"""


def test_only_points_change_and_daily_caps_follow_them(tmp_path: Path) -> None:
    path = tmp_path / "engagement_points.csv"
    path.write_text(ENGAGEMENT)
    seed = read_seed(path, "event_type")
    text = with_points(seed, "event_type", {"email_open": 4, "form_fill": 0}, scale_cap=True)
    assert text.splitlines() == [
        "event_type,points,daily_cap,activity_label,description",
        "email_open,4,12,Opened our emails,Opened a marketing or nurture email",
        'form_fill,0,0,Filled in a form,"Submitted a form (contact, newsletter or trial)"',
        "unsubscribe,0,0,Unsubscribed,No points: suppresses all nurture email",
    ]


def test_unchanged_points_write_the_seed_back_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "engagement_points.csv"
    path.write_text(ENGAGEMENT)
    seed = read_seed(path, "event_type")
    assert with_points(seed, "event_type", seed.points("event_type"), scale_cap=True) == ENGAGEMENT


def test_points_that_are_not_whole_numbers_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "fit_rules.csv"
    path.write_text("rule_id,points\ntitle_vp,20\ntitle_cto,lots\n")
    with pytest.raises(SeedError, match=r"fit_rules.csv, line 3: points 'lots'"):
        read_seed(path, "rule_id")


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "fit_rules.csv"
    path.write_text("rule,points\ntitle_vp,20\n")
    with pytest.raises(SeedError, match="no column 'rule_id'"):
        read_seed(path, "rule_id")


def test_replacing_a_var_keeps_comments_and_layout() -> None:
    text = replaced_var(PROJECT, "mql_engagement_threshold", 22)
    assert text == PROJECT.replace("threshold: 40  #", "threshold: 22  #")
    with pytest.raises(SeedError, match="no line `sla_hours: <number>`"):
        replaced_var(PROJECT, "sla_hours", 1)


def test_apply_copies_the_seeds_and_sets_the_thresholds(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    (project / "seeds").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(PROJECT)
    proposal = tmp_path / "proposed"
    proposal.mkdir()
    (proposal / "fit_rules.csv").write_text("rule_id,points\ntitle_vp,44\n")
    (proposal / "engagement_points.csv").write_text(ENGAGEMENT)
    (proposal / "mql_thresholds.yml").write_text(
        yaml.safe_dump({"mql_fit_threshold": 70, "mql_engagement_threshold": 22})
    )
    apply_proposal(proposal, project)
    assert (project / "seeds" / "fit_rules.csv").read_text() == "rule_id,points\ntitle_vp,44\n"
    applied = (project / "dbt_project.yml").read_text()
    assert "# A lead is an MQL when" in applied and "# agreed with sales" in applied
    variables = read_vars(project / "dbt_project.yml")
    assert (variables.mql_fit_threshold, variables.mql_engagement_threshold) == (70, 22)


def test_apply_without_a_proposal_says_to_fit_first(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="run `leadflow scoring fit` first"):
        apply_proposal(tmp_path, tmp_path)
