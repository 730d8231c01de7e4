"""The learning data of `leadflow scoring fit`, built by one set-based query over the warehouse.

One row per lead (lead_id is the person): whether it converted (became an opportunity or a
customer), when it was created (for time-ordered folds), a 1/0 column per fit rule it matched
and, per engagement event type, its events before the outcome, each decayed by the project's
half-life to the lead's cut-off. The cut-off is the conversion for a converted lead and the
warehouse's clock for the rest: nothing that happened after the outcome is a feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flows.warehouse import Connection

if TYPE_CHECKING:
    from numpy.typing import NDArray

# The models the query reads, in the schema dbt builds into.
MATCHED_RULES = "main.int_lead_fit_rules_matched"
PROGRESS = "main.int_leads_progressed"
SCORED_EVENTS = "main.int_lead_events_scored"
ACCRUED = "main.int_leads_engagement_accrued"


class FeaturesUnavailableError(Exception):
    """The warehouse has not been built (or has no leads) yet."""


@dataclass(frozen=True)
class Features:
    """The feature matrix, its column names, and each lead's outcome and creation order."""

    created_at: NDArray[np.datetime64]
    is_converted: NDArray[np.bool_]
    matrix: NDArray[np.float64]
    rule_ids: tuple[str, ...]
    event_types: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.rule_ids + self.event_types


def feature_query(rule_count: int, event_type_count: int) -> str:
    """The one query; rule ids, then event types, then the half-life are its parameters.

    It reads int_lead_fit_rules_matched by rule id only, so rules with any operator count.
    """
    rule_columns = "".join(
        f",\n            count(*) filter (where rule_id = ?) > 0 as rule_{index}"
        for index in range(rule_count)
    )
    event_columns = "".join(
        f",\n            sum(decay) filter (where event_type = ?) as event_{index}"
        for index in range(event_type_count)
    )
    outputs = "".join(
        f",\n            coalesce(rules.rule_{index}, false)::double as feature_rule_{index}"
        for index in range(rule_count)
    ) + "".join(
        f",\n            coalesce(events.event_{index}, 0)::double as feature_event_{index}"
        for index in range(event_type_count)
    )
    # Leads are joined and grouped on a 64-bit hash of lead_id, which takes a third less time
    # than the text at a million leads. A collision (odds about 1 in 10^7 there) would give two
    # leads each other's features: no fitted point would move.
    return f"""
        with
        clock as (
            select coalesce(
                (select max(accrued_as_of) from {ACCRUED}),
                (select max(occurred_at) from {SCORED_EVENTS})
            ) as as_of
        ),
        conversions as (
            select hash(lead_id) as lead_key, opportunity_at
            from {PROGRESS}
            where has_reached_opportunity
        ),
        rules as (
            select hash(lead_id) as lead_key{rule_columns}
            from {MATCHED_RULES}
            group by lead_key
        ),
        -- A converted lead's events until its conversion, anyone else's until the clock.
        cut_off_events as (
            select
                hash(scored_events.lead_id) as lead_key,
                scored_events.event_type,
                scored_events.occurred_at,
                case
                    when conversions.lead_key is null then clock.as_of
                    else conversions.opportunity_at
                end as cut_off_at
            from {SCORED_EVENTS} as scored_events
            cross join clock
            left join conversions
                on hash(scored_events.lead_id) = conversions.lead_key
        ),
        decayed_events as (
            select
                lead_key,
                event_type,
                pow(0.5, epoch(cut_off_at - occurred_at) / 86400.0 / ?) as decay
            from cut_off_events
            where occurred_at < cut_off_at
        ),
        events as (
            select lead_key{event_columns}
            from decayed_events
            group by lead_key
        )
        select
            progress.created_at,
            progress.has_reached_opportunity as is_converted{outputs}
        from (select *, hash(lead_id) as lead_key from {PROGRESS}) as progress
        left join rules on progress.lead_key = rules.lead_key
        left join events on progress.lead_key = events.lead_key
        order by progress.created_at nulls first, progress.lead_key
    """


def load_features(
    connection: Connection,
    *,
    rule_ids: tuple[str, ...],
    event_types: tuple[str, ...],
    half_life_days: float,
) -> Features:
    """Run the feature query; the rows come back ordered by creation (oldest first)."""
    import duckdb

    # In the order the query text holds its placeholders: the half-life sits between.
    parameters: list[object] = [*rule_ids, half_life_days, *event_types]
    try:
        columns = connection.execute(
            feature_query(len(rule_ids), len(event_types)), parameters
        ).fetchnumpy()
    except duckdb.CatalogException as error:
        raise FeaturesUnavailableError(
            "the warehouse has no scored leads yet: run `leadflow run` (or `leadflow demo`) "
            f"first ({error})"
        ) from None
    lead_count = len(columns["is_converted"])
    if lead_count == 0:
        raise FeaturesUnavailableError("the warehouse has no leads: load and run some first")
    names = [f"feature_rule_{index}" for index in range(len(rule_ids))]
    names += [f"feature_event_{index}" for index in range(len(event_types))]
    matrix = np.empty((lead_count, len(names)), dtype=np.float64)
    for position, name in enumerate(names):
        matrix[:, position] = columns.pop(name)
    created_at = columns["created_at"]
    if np.ma.isMaskedArray(created_at):  # leads without a creation time: NaT, oldest first
        created_at = np.ma.filled(created_at.astype("datetime64[us]"), np.datetime64("NaT"))
    return Features(
        created_at=np.asarray(created_at, dtype="datetime64[us]"),
        is_converted=np.asarray(columns["is_converted"], dtype=bool),
        matrix=matrix,
        rule_ids=rule_ids,
        event_types=event_types,
    )
