"""Turning Great Expectations results into failures a person can read.

GX reports a failed expectation as a dict of counts and partial lists; the gate turns each into
an ``ExpectationFailure``: which suite and expectation, which column, how many rows, a few
``lead_id`` samples and one sentence that says what is wrong in the words of the data contract.

GX names failing rows by their index label. The gate validates frames with a fresh RangeIndex
and maps those labels to ``lead_id`` itself: GX's own ``unexpected_index_column_names`` looks
each failing row up one at a time (about 90 µs a row on Arrow strings), which made a passing
``mostly`` expectation with 100,000 tolerated gaps cost 9 s on a 1M-row queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

ROW_ID_COLUMN = "lead_id"
SAMPLE_SIZE = 5


@dataclass(frozen=True)
class ExpectationFailure:
    """One expectation that did not hold on one asset."""

    suite: str
    name: str  # the expectation's meta.name in its suite file, else its type
    expectation: str
    column: str | None
    unexpected_count: int
    sample_lead_ids: tuple[str, ...]
    message: str

    def named(self) -> str:
        """The message after the expectation's name, as the run summary and gate_results say it."""
        return f"{self.name}: {self.message}"


def describe_failure(
    suite: str, result: ExpectationValidationResult, lead_ids: pd.Series | None
) -> ExpectationFailure:
    """``lead_ids`` is the validated frame's lead_id column (None if it has none)."""
    config = result.expectation_config
    assert config is not None  # a result always carries the expectation it checked
    kwargs: Mapping[str, Any] = config.kwargs
    meta: Mapping[str, Any] = config.meta or {}
    details: Mapping[str, Any] = result.result or {}
    column = _column_label(kwargs)
    unexpected_count = int(details.get("unexpected_count") or 0)
    samples = tuple(_row_ids(details, lead_ids)[:SAMPLE_SIZE])
    errors = _exception_messages(result.exception_info or {})
    if errors:
        problem = f"{column or 'the table'} could not be checked ({config.type}): {errors[0]}"
    elif "problem" in meta:
        problem = _authored_problem(str(meta["problem"]), details, unexpected_count)
    else:
        problem = _problem(config.type, kwargs, details, unexpected_count)
    mostly = kwargs.get("mostly")
    if mostly is not None and not errors:
        problem += f"; at most {1 - float(mostly):.0%} may"
    if samples:
        problem += f" ({ROW_ID_COLUMN} {', '.join(samples)})"
    return ExpectationFailure(
        suite=suite,
        name=str(meta.get("name") or config.type),
        expectation=config.type,
        column=column,
        unexpected_count=unexpected_count,
        sample_lead_ids=samples,
        message=f"{problem[0].upper()}{problem[1:]}.",
    )


def has_failing_rows(result: ExpectationValidationResult) -> bool:
    """Whether the failure is about particular rows (so their lead_ids can be listed)."""
    details = result.result or {}
    return not result.success and int(details.get("unexpected_count") or 0) > 0


def failing_row_ids(
    results: Iterable[ExpectationValidationResult], lead_ids: pd.Series | None
) -> frozenset[str]:
    """The lead_ids of every row the results single out (rows with no lead_id cannot be named)."""
    return frozenset(
        row_id for result in results for row_id in _row_ids(result.result or {}, lead_ids)
    )


def _row_ids(details: Mapping[str, Any], lead_ids: pd.Series | None) -> list[str]:
    # COMPLETE results list every failing row, SUMMARY results the first few.
    positions = details.get("unexpected_index_list") or details.get("partial_unexpected_index_list")
    if lead_ids is None or not positions:
        return []
    named = lead_ids.iloc[list(positions)].dropna().astype(str)
    return list(dict.fromkeys(named))


def _column_label(kwargs: Mapping[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_list" in kwargs:
        return ", ".join(str(name) for name in kwargs["column_list"])
    return None


def _exception_messages(exception_info: Mapping[str, Any]) -> list[str]:
    # GX nests exception details per metric when a metric fails, flat otherwise.
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    return [
        str(info.get("exception_message"))
        for info in infos
        if isinstance(info, Mapping) and info.get("raised_exception")
    ]


def _authored_problem(template: str, details: Mapping[str, Any], unexpected_count: int) -> str:
    """The suite file's own words for the failure: ``{rows}`` and ``{value}`` are filled in.

    ``{rows}`` is "N of M rows"; ``{value}`` the first unexpected value (the observed value of
    an aggregate expectation), so a batch-wide figure repeated on every row is said once.
    """
    unexpected = details.get("partial_unexpected_list") or [details.get("observed_value")]
    value = unexpected[0]
    return template.format(
        rows=_rows(details, unexpected_count),
        value=f"{value:.2f}" if isinstance(value, Real) else value,
    )


def _rows(details: Mapping[str, Any], unexpected_count: int) -> str:
    return f"{unexpected_count:,} of {int(details.get('element_count') or 0):,} rows"


def _problem(
    expectation: str,
    kwargs: Mapping[str, Any],
    details: Mapping[str, Any],
    unexpected_count: int,
) -> str:
    rows = _rows(details, unexpected_count)
    phrase = _ROW_PHRASES.get(expectation)
    if phrase is not None:
        return f"{rows} {phrase(kwargs)}"
    if expectation == "expect_table_columns_to_match_set":
        missing = details.get("details", {}).get("mismatched", {}).get("missing", [])
        return f"the table lacks contract column(s) {', '.join(missing)}"
    if unexpected_count:
        return f"{rows} fail {expectation}"
    return f"{expectation} failed (observed {details.get('observed_value')!r})"


def _out_of_range(kwargs: Mapping[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if high is None:
        return f"below {low:g}"
    if low is None:
        return f"above {high:g}"
    return f"outside {low:g}..{high:g}"


_ROW_PHRASES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "expect_column_values_to_not_be_null": lambda kw: f"have no {kw['column']}",
    "expect_column_values_to_be_unique": lambda kw: f"share their {kw['column']} with another row",
    "expect_compound_columns_to_be_unique": lambda kw: (
        f"repeat the combination ({', '.join(kw['column_list'])})"
    ),
    "expect_column_values_to_match_regex": lambda kw: (
        f"have {kw['column']} not matching {kw['regex']}"
    ),
    "expect_column_values_to_be_between": lambda kw: f"have {kw['column']} {_out_of_range(kw)}",
    "expect_column_values_to_be_in_set": lambda kw: (
        f"have {kw['column']} outside {{{', '.join(map(str, kw['value_set']))}}}"
    ),
}
