"""`leadflow scoring fit` as one plain function: features, cross-validation, proposed files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from flows.files import write_atomically
from flows.scoring.features import Features, load_features
from flows.scoring.fit import (
    CrossValidation,
    Thresholds,
    cross_validate,
    fitted_coefficients,
    handed_off,
    integer_points,
    proposed_thresholds,
)
from flows.scoring.seeds import (
    DIFF,
    ENGAGEMENT_POINTS,
    FIT_RULES,
    SUPPRESSION_EVENT_TYPES,
    THRESHOLDS,
    Change,
    diff_markdown,
    read_seed,
    read_vars,
    with_points,
)
from flows.warehouse import Connection

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Proposal:
    lead_count: int
    converted_count: int
    validation: CrossValidation
    current_thresholds: Thresholds
    thresholds: Thresholds
    changes: list[Change]
    written: list[Path]


def propose_points(
    connection: Connection,
    dbt_project_dir: Path,
    out_dir: Path,
    *,
    folds: int = 5,
    precision: float | None = None,
) -> Proposal:
    """Fit points on the warehouse's leads and write the proposed seeds, thresholds and diff."""
    fit_rules = read_seed(dbt_project_dir / "seeds" / FIT_RULES, "rule_id")
    engagement = read_seed(dbt_project_dir / "seeds" / ENGAGEMENT_POINTS, "event_type")
    variables = read_vars(dbt_project_dir / "dbt_project.yml")
    rule_points = fit_rules.points("rule_id")
    event_points = {
        event_type: points
        for event_type, points in engagement.points("event_type").items()
        if event_type not in SUPPRESSION_EVENT_TYPES
    }
    features = load_features(
        connection,
        rule_ids=tuple(rule_points),
        event_types=tuple(event_points),
        half_life_days=variables.engagement_half_life_days,
    )
    current_points = np.array([*rule_points.values(), *event_points.values()], dtype=np.int64)
    non_negative = np.array([False] * len(rule_points) + [True] * len(event_points))
    validation = cross_validate(
        features.matrix,
        features.is_converted,
        features.created_at,
        current_points=current_points,
        non_negative=non_negative,
        k=folds,
    )
    points = integer_points(
        fitted_coefficients(features.matrix, features.is_converted),
        max_points=int(np.abs(current_points).max()),
        non_negative=non_negative,
    )
    current = (variables.mql_fit_threshold, variables.mql_engagement_threshold)
    scores = split_scores(features, current_points)
    fitted_scores = split_scores(features, points)
    current_thresholds = handed_off(*scores, features.is_converted, *current)
    thresholds = proposed_thresholds(
        current_fit=scores[0],
        current_engagement=scores[1],
        fitted_fit=fitted_scores[0],
        fitted_engagement=fitted_scores[1],
        is_converted=features.is_converted,
        current=current,
        precision=precision,
    )
    new_rule_points = dict(zip(rule_points, points[: len(rule_points)].tolist(), strict=True))
    new_event_points = dict(zip(event_points, points[len(rule_points) :].tolist(), strict=True))
    changes = [
        *(
            Change("fit rule", name, rule_points[name], new)
            for name, new in new_rule_points.items()
        ),
        *(
            Change("event type", name, event_points[name], new)
            for name, new in new_event_points.items()
        ),
        Change("threshold", "mql_fit_threshold", current[0], thresholds.fit),
        Change("threshold", "mql_engagement_threshold", current[1], thresholds.engagement),
    ]
    summary = summary_lines(features, validation, current_thresholds, thresholds)
    files = {
        FIT_RULES: with_points(fit_rules, "rule_id", new_rule_points),
        ENGAGEMENT_POINTS: with_points(engagement, "event_type", new_event_points, scale_cap=True),
        THRESHOLDS: yaml.safe_dump(
            {"mql_fit_threshold": thresholds.fit, "mql_engagement_threshold": thresholds.engagement}
        ),
        DIFF: diff_markdown(changes, summary),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomically(out_dir / name, text)
    return Proposal(
        lead_count=len(features.is_converted),
        converted_count=int(features.is_converted.sum()),
        validation=validation,
        current_thresholds=current_thresholds,
        thresholds=thresholds,
        changes=changes,
        written=[out_dir / name for name in files],
    )


def split_scores(features: Features, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each lead's fit score and engagement score under the given points."""
    rules = len(features.rule_ids)
    return (
        features.matrix[:, :rules] @ points[:rules],
        features.matrix[:, rules:] @ points[rules:],
    )


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary_lines(
    features: Features,
    validation: CrossValidation,
    current: Thresholds,
    proposed: Thresholds,
) -> list[str]:
    converted = int(features.is_converted.sum())
    return [
        f"Learned from {len(features.is_converted):,} leads, {converted:,} converted "
        "(opportunity or customer).",
        f"Cross-validated AUC ({validation.folds} folds by person, time-ordered when created_at "
        f"is known): current points {validation.current_auc:.4f}, fitted points "
        f"{validation.fitted_auc:.4f}.",
        f"MQLs today: {current.mql_count:,} (precision {percent(current.precision)}, recall "
        f"{percent(current.recall)}); with the proposal: {proposed.mql_count:,} (precision "
        f"{percent(proposed.precision)}, recall {percent(proposed.recall)}).",
    ]
