"""The feature query on a hand-made warehouse: rule flags, decayed events, no leakage."""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pytest

from flows.scoring.features import FeaturesUnavailableError, load_features

AS_OF = datetime(2026, 6, 1)


@pytest.fixture
def warehouse() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(
        """
        create table main.int_leads_progressed as
        select * from (values
            ('won', timestamp '2026-01-01', true, timestamp '2026-05-01'),
            ('open', timestamp '2026-02-01', false, null),
            ('new', timestamp '2026-03-01', false, null)
        ) as leads(lead_id, created_at, has_reached_opportunity, opportunity_at);
        create table main.int_lead_fit_rules_matched as
        select * from (values ('won', 'title_vp'), ('open', 'title_vp'), ('open', 'tiny'))
            as matched(lead_id, rule_id);
        create table main.int_lead_events_scored as
        select * from (values
            ('won', 'demo_request', timestamp '2026-05-01'),  -- at the conversion: excluded
            ('won', 'demo_request', timestamp '2026-04-10'),  -- 21 days before: half a point
            ('won', 'page_view', timestamp '2026-05-20'),     -- after the conversion
            ('open', 'page_view', timestamp '2026-06-01'),    -- at the clock: excluded
            ('open', 'page_view', timestamp '2026-05-11')     -- 21 days before the clock
        ) as events(lead_id, event_type, occurred_at);
        create table main.int_leads_engagement_accrued as
        select timestamp '2026-06-01' as accrued_as_of;
        """
    )
    return connection


def test_rules_are_flags_and_events_count_decayed_before_the_outcome(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    features = load_features(
        warehouse,
        rule_ids=("title_vp", "tiny", "unused"),
        event_types=("demo_request", "page_view"),
        half_life_days=21,
    )
    assert features.names == ("title_vp", "tiny", "unused", "demo_request", "page_view")
    assert features.is_converted.tolist() == [True, False, False]  # oldest lead first
    np.testing.assert_allclose(
        features.matrix,
        np.array([[1, 0, 0, 0.5, 0], [1, 1, 0, 0, 0.5], [0, 0, 0, 0, 0]]),
    )
    assert features.created_at[0] == np.datetime64("2026-01-01")


def test_an_unbuilt_warehouse_says_what_to_run() -> None:
    with pytest.raises(FeaturesUnavailableError, match="run `leadflow run`"):
        load_features(duckdb.connect(), rule_ids=("a",), event_types=(), half_life_days=21)
