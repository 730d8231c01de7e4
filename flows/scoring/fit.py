"""Fit points to outcomes, cross-validate them, and choose the MQL thresholds: plain functions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, TimeSeriesSplit

Folds = Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]


def person_folds(
    created_at: NDArray[np.datetime64], is_converted: NDArray[np.bool_], k: int
) -> Folds:
    """k folds over the leads (one row per person, so no person is on both sides).

    With creation times, rows are taken oldest first (the feature query orders them) and each
    fold trains on the leads created before the ones it tests: the future never teaches the
    past. Without any, stratified shuffled folds with a fixed seed.
    """
    rows = np.arange(len(is_converted))
    if np.isnat(created_at).all():
        yield from StratifiedKFold(n_splits=k, shuffle=True, random_state=0).split(
            rows, is_converted
        )
    else:
        yield from TimeSeriesSplit(n_splits=k).split(rows)


# Beyond this many leads a fit learns from every converted lead and a sample of the others.
MAX_TRAINING_ROWS = 200_000


def training_rows(is_converted: NDArray[np.bool_], max_rows: int) -> NDArray[np.intp]:
    """Every converted lead and, if that makes more than max_rows, a seeded random sample of
    the others (case-control sampling), in their original order.

    The balanced class weights give both outcomes the same total weight whatever their counts,
    so a large sample of the unconverted moves the coefficients by far less than their
    uncertainty, and the fit's time stops growing with the leads.
    """
    rows = np.arange(len(is_converted))
    if len(rows) <= max_rows:
        return rows
    converted = rows[is_converted]
    others = rows[~is_converted]
    wanted = max(max_rows - len(converted), len(converted))
    if len(others) <= wanted:
        return rows
    sample = np.random.default_rng(0).choice(others, size=wanted, replace=False)
    return np.sort(np.concatenate([converted, sample]))


def fitted_coefficients(
    matrix: NDArray[np.float64],
    is_converted: NDArray[np.bool_],
    *,
    max_rows: int = MAX_TRAINING_ROWS,
) -> NDArray[np.float64]:
    """L2-regularised logistic regression with balanced class weights: one weight per feature.

    It learns from at most max_rows leads (training_rows). The solver works on standardised
    features (decayed event sums and 0/1 rule flags differ in scale by orders of magnitude,
    which takes L-BFGS twice the iterations); each coefficient is then divided by its feature's
    spread, so it weighs the feature as the points will. A feature that never varies gets 0.
    """
    sample = training_rows(is_converted, max_rows)
    if len(sample) < len(is_converted):
        matrix, is_converted = matrix[sample], is_converted[sample]
    spread = matrix.std(axis=0)
    varies = spread > 0
    standardised = (matrix[:, varies] - matrix[:, varies].mean(axis=0)) / spread[varies]
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    model.fit(standardised, is_converted)
    coefficients = np.zeros(matrix.shape[1], dtype=np.float64)
    coefficients[varies] = model.coef_[0] / spread[varies]
    return coefficients


def integer_points(
    coefficients: NDArray[np.float64], *, max_points: int, non_negative: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Coefficients scaled so the largest |coefficient| is worth max_points, rounded.

    One scale for every feature keeps the model's ranking. Features marked non_negative (event
    types: the engagement score only counts positive points) get at least 0.
    """
    largest = float(np.abs(coefficients).max()) if len(coefficients) else 0.0
    if largest == 0.0:
        return np.zeros(len(coefficients), dtype=np.int64)
    points = np.rint(coefficients * (max_points / largest)).astype(np.int64)
    return np.where(non_negative, np.maximum(points, 0), points)


def auc(is_converted: NDArray[np.bool_], scores: NDArray[np.float64]) -> float | None:
    """ROC AUC, or None when only one outcome is present."""
    if is_converted.all() or not is_converted.any():
        return None
    return float(roc_auc_score(is_converted, scores))


@dataclass(frozen=True)
class CrossValidation:
    current_auc: float
    fitted_auc: float
    folds: int


def cross_validate(
    matrix: NDArray[np.float64],
    is_converted: NDArray[np.bool_],
    created_at: NDArray[np.datetime64],
    *,
    current_points: NDArray[np.int64],
    non_negative: NDArray[np.bool_],
    k: int,
) -> CrossValidation:
    """Mean AUC on held-out folds of the current points and of points fitted without the fold.

    The fitted points are the integers the fit would propose, not the raw coefficients, so the
    figure is that of the seeds a reviewer would apply.
    """
    current: list[float] = []
    fitted: list[float] = []
    max_points = int(np.abs(current_points).max()) if len(current_points) else 0
    for train, test in person_folds(created_at, is_converted, k):
        if len(np.unique(is_converted[train])) < 2:
            continue  # a training side with one outcome teaches nothing
        held_out = auc(is_converted[test], matrix[test] @ current_points)
        if held_out is None:
            continue
        # Sampled before the rows are copied out: a fold can hold most of a million leads.
        sample = train[training_rows(is_converted[train], MAX_TRAINING_ROWS)]
        points = integer_points(
            fitted_coefficients(matrix[sample], is_converted[sample]),
            max_points=max_points,
            non_negative=non_negative,
        )
        current.append(held_out)
        fitted.append(float(roc_auc_score(is_converted[test], matrix[test] @ points)))
    if not current:
        raise ValueError(
            "no fold has both converted and unconverted leads: too few outcomes to fit on "
            "(record opportunities and wins, or lower --folds)"
        )
    return CrossValidation(float(np.mean(current)), float(np.mean(fitted)), len(current))


@dataclass(frozen=True)
class Thresholds:
    """MQL thresholds and what they hand to sales on the learning data."""

    fit: int
    engagement: int
    mql_count: int
    precision: float | None
    recall: float | None


def handed_off(
    fit_scores: NDArray[np.float64],
    engagement_scores: NDArray[np.float64],
    is_converted: NDArray[np.bool_],
    fit: int,
    engagement: int,
) -> Thresholds:
    """The MQLs of a pair of thresholds: a lead reaches both."""
    is_mql = (fit_scores >= fit) & (engagement_scores >= engagement)
    count = int(is_mql.sum())
    hits = int((is_mql & is_converted).sum())
    converted = int(is_converted.sum())
    return Thresholds(
        fit=fit,
        engagement=engagement,
        mql_count=count,
        precision=hits / count if count else None,
        recall=hits / converted if converted else None,
    )


def quantile_matched(
    old_scores: NDArray[np.float64], old_threshold: int, new_scores: NDArray[np.float64]
) -> int:
    """The new threshold that passes as many leads as the old one passed on the old scores."""
    passing = int((old_scores >= old_threshold).sum())
    if passing == 0:
        return int(np.ceil(new_scores.max())) + 1
    return int(np.floor(np.sort(new_scores)[::-1][passing - 1]))


def proposed_thresholds(
    *,
    current_fit: NDArray[np.float64],
    current_engagement: NDArray[np.float64],
    fitted_fit: NDArray[np.float64],
    fitted_engagement: NDArray[np.float64],
    is_converted: NDArray[np.bool_],
    current: tuple[int, int],
    precision: float | None,
) -> Thresholds:
    """Thresholds for the fitted points.

    The fit threshold passes as many leads as today's does. The engagement threshold is the
    lowest that keeps the agreed hand-off volume (no more MQLs than today's points make), or,
    given a target precision, the lowest whose MQLs convert at least that often.
    """
    fit = quantile_matched(current_fit, current[0], fitted_fit)
    volume = handed_off(current_fit, current_engagement, is_converted, *current).mql_count
    candidates = np.unique(np.floor(fitted_engagement)).astype(np.int64)
    for engagement in candidates:
        chosen = handed_off(fitted_fit, fitted_engagement, is_converted, fit, int(engagement))
        if precision is None and chosen.mql_count <= volume:
            return chosen
        if precision is not None and chosen.precision is not None and chosen.precision >= precision:
            return chosen
    return handed_off(fitted_fit, fitted_engagement, is_converted, fit, int(candidates.max()) + 1)
