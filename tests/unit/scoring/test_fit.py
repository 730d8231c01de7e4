"""Fitting points: scaling to integers, person folds in time order, AUCs and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from flows.scoring.fit import (
    cross_validate,
    fitted_coefficients,
    handed_off,
    integer_points,
    person_folds,
    proposed_thresholds,
    quantile_matched,
    training_rows,
)


def test_the_largest_coefficient_gets_the_current_maximum_and_events_never_go_negative() -> None:
    points = integer_points(
        np.array([2.0, -1.0, 0.26, -0.5]),
        max_points=100,
        non_negative=np.array([False, False, False, True]),
    )
    assert points.tolist() == [100, -50, 13, 0]


def test_no_signal_gives_no_points() -> None:
    points = integer_points(np.zeros(3), max_points=30, non_negative=np.zeros(3, dtype=bool))
    assert points.tolist() == [0, 0, 0]


def test_folds_with_creation_times_train_only_on_older_leads() -> None:
    created_at = np.arange(100).astype("datetime64[D]")
    is_converted = np.arange(100) % 4 == 0
    folds = list(person_folds(created_at, is_converted, 4))
    assert len(folds) == 4
    for train, test in folds:
        assert train.max() < test.min()
        assert not set(train) & set(test)


def test_folds_without_creation_times_cover_every_lead_once() -> None:
    created_at = np.full(40, np.datetime64("NaT"), dtype="datetime64[us]")
    is_converted = np.arange(40) % 5 == 0
    tested = np.concatenate([test for _, test in person_folds(created_at, is_converted, 4)])
    assert sorted(tested.tolist()) == list(range(40))


def synthetic_leads(count: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature 0 drives conversion; feature 1 is noise; feature 2 an event count."""
    random = np.random.default_rng(7)
    matrix = np.column_stack(
        [random.integers(0, 2, count), random.integers(0, 2, count), random.poisson(2, count)]
    ).astype(np.float64)
    odds = -3 + 2.5 * matrix[:, 0] + 0.4 * matrix[:, 2]
    is_converted = random.random(count) < 1 / (1 + np.exp(-odds))
    created_at = np.arange(count).astype("datetime64[h]").astype("datetime64[us]")
    return matrix, is_converted, created_at


def test_fitted_points_beat_points_that_weight_the_wrong_rule() -> None:
    matrix, is_converted, created_at = synthetic_leads()
    result = cross_validate(
        matrix,
        is_converted,
        created_at,
        current_points=np.array([0, 30, 1]),
        non_negative=np.array([False, False, True]),
        k=5,
    )
    assert result.folds == 5
    assert result.fitted_auc > result.current_auc + 0.1


def test_coefficients_weigh_features_in_their_own_units_and_a_constant_one_gets_none() -> None:
    matrix, is_converted, _ = synthetic_leads()
    coefficients = fitted_coefficients(matrix, is_converted)
    # The event count in thousandths: the same weight per event, a thousandth per unit.
    rescaled = matrix * np.array([1.0, 1.0, 1000.0])
    with_constant = np.column_stack([rescaled, np.ones(len(matrix))])
    rescaled_coefficients = fitted_coefficients(with_constant, is_converted)
    assert rescaled_coefficients[:2] == pytest.approx(coefficients[:2], rel=1e-3)
    assert rescaled_coefficients[2] * 1000 == pytest.approx(coefficients[2], rel=1e-3)
    assert rescaled_coefficients[3] == 0
    assert coefficients[0] > 5 * abs(coefficients[1])  # the rule that drives conversion


def test_training_rows_keep_every_converted_lead_and_a_sample_of_the_others() -> None:
    is_converted = np.arange(1000) % 20 == 0
    rows = training_rows(is_converted, 200)
    assert len(rows) == 200
    assert set(np.flatnonzero(is_converted)) <= set(rows)
    assert rows.tolist() == sorted(rows.tolist())
    assert rows.tolist() == training_rows(is_converted, 200).tolist()  # seeded
    assert training_rows(is_converted, 1000).tolist() == list(range(1000))


def test_a_sampled_fit_learns_the_same_points_as_the_full_one() -> None:
    matrix, is_converted, _ = synthetic_leads(40_000)
    full = fitted_coefficients(matrix, is_converted, max_rows=len(matrix))
    sampled = fitted_coefficients(matrix, is_converted, max_rows=15_000)
    non_negative = np.array([False, False, True])
    assert integer_points(sampled, max_points=30, non_negative=non_negative).tolist() == (
        integer_points(full, max_points=30, non_negative=non_negative).tolist()
    )


def test_too_few_outcomes_is_a_clear_error() -> None:
    matrix, _, created_at = synthetic_leads(50)
    with pytest.raises(ValueError, match="too few outcomes"):
        cross_validate(
            matrix,
            np.zeros(50, dtype=bool),
            created_at,
            current_points=np.array([1, 1, 1]),
            non_negative=np.array([False, False, True]),
            k=3,
        )


def test_handed_off_counts_precision_and_recall_of_both_thresholds() -> None:
    fit = np.array([50.0, 50, 50, 10, 50])
    engagement = np.array([40.0, 40, 0, 40, 45])
    is_converted = np.array([True, False, True, True, False])
    result = handed_off(fit, engagement, is_converted, 35, 40)
    assert (result.mql_count, result.precision, result.recall) == (3, 1 / 3, 1 / 3)


def test_quantile_matched_passes_as_many_leads() -> None:
    old = np.array([10.0, 20, 30, 40, 50])
    new = np.array([1.0, 7, 3, 9, 5])
    threshold = quantile_matched(old, 30, new)
    assert threshold == 5
    assert int((new >= threshold).sum()) == int((old >= 30).sum())


def test_thresholds_keep_the_volume_or_reach_the_precision() -> None:
    fit = np.full(6, 50.0)
    engagement = np.array([10.0, 20, 30, 40, 50, 60])
    is_converted = np.array([False, False, True, False, True, True])
    common = {
        "current_fit": fit,
        "current_engagement": engagement,
        "fitted_fit": fit,
        "fitted_engagement": engagement * 2,
        "is_converted": is_converted,
        "current": (35, 40),
    }
    by_volume = proposed_thresholds(**common, precision=None)  # type: ignore[arg-type]
    assert (by_volume.engagement, by_volume.mql_count) == (80, 3)
    by_precision = proposed_thresholds(**common, precision=0.7)  # type: ignore[arg-type]
    assert by_precision.engagement == 60
    assert by_precision.precision == 0.75
