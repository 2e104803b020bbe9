"""Golden values of the behavioural features on hand-built events."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.behaviour import behaviour_columns, behaviour_features
from features.settings import FeatureSettings

AS_OF = pd.Timestamp("2025-03-01 12:00:00")
DAY = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)
SETTINGS = FeatureSettings(
    event_groups={"research": ["site_visit"], "pricing": ["pricing_view"],
                  "email": ["email_sent", "email_open", "email_click"]},
)


def events_frame(rows: list[tuple[str, pd.Timestamp, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"lead_id": pd.Series([r[0] for r in rows], dtype="str"),
         "timestamp": pd.Series([r[1] for r in rows]).astype("datetime64[us]"),
         "event_type": pd.Series([r[2] for r in rows], dtype="str")}
    )


def spine_frame(rows: list[tuple[str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": pd.Series([r[0] for r in rows], dtype="str"),
                         "as_of": pd.Series([r[1] for r in rows]).astype("datetime64[us]")})


GOLDEN_EVENTS = [
    ("a", AS_OF, "site_visit"),                       # exactly at as_of: never seen
    ("a", AS_OF + DAY, "pricing_view"),               # after as_of: never seen
    ("a", AS_OF - US, "site_visit"),                  # 1 microsecond before: seen
    ("a", AS_OF - 7 * DAY, "site_visit"),             # exactly 7 days: inside the 7d window
    ("a", AS_OF - 7 * DAY - US, "site_visit"),        # just outside the 7d window
    ("a", AS_OF - 10 * DAY, "pricing_view"),
    ("a", AS_OF - 100 * DAY, "site_visit"),           # only in `all`
    ("a", AS_OF - 20 * DAY, "email_sent"),
    ("a", AS_OF - 5 * DAY, "email_sent"),
    ("a", AS_OF - 5 * DAY + pd.Timedelta(hours=1), "email_open"),
    ("a", AS_OF - 5 * DAY + pd.Timedelta(hours=2), "email_click"),
    ("b", AS_OF - DAY, "site_visit"),                 # another lead: never mixed in
]


@pytest.fixture(scope="module")
def golden() -> pd.Series:
    frame = behaviour_features(spine_frame([("a", AS_OF)]), events_frame(GOLDEN_EVENTS),
                               SETTINGS)
    return frame.iloc[0]


def test_window_counts_respect_strict_as_of_and_inclusive_window_start(golden):
    assert golden["evt_site_visit_7d"] == 2
    assert golden["evt_site_visit_30d"] == 3
    assert golden["evt_site_visit_90d"] == 3
    assert golden["evt_site_visit_all"] == 4
    assert golden["evt_pricing_view_all"] == 1
    assert golden["grp_research_7d"] == 2
    assert golden["grp_email_30d"] == 4
    assert golden["events_all"] == 9
    assert golden["events_7d"] == 5


def test_recency_in_days(golden):
    assert golden["days_since_last_pricing"] == pytest.approx(10.0)
    assert golden["days_since_last_research"] == pytest.approx(1e-6 / 86400, abs=1e-15)
    assert golden["days_since_first_activity"] == pytest.approx(100.0)
    assert golden["days_since_last_activity"] == pytest.approx(1e-6 / 86400, abs=1e-15)


def test_sessions_and_active_days(golden):
    # activity (email_sent excluded): -100d | -10d | -7d-1us,-7d | -5d+1h | -5d+2h | -1us
    assert golden["sessions_all"] == 6
    assert golden["sessions_90d"] == 5
    # calendar days: 2024-11-21, 02-19, 02-22, 02-24, 03-01; 90d = days >= 2024-12-02
    assert golden["active_days_all"] == 5
    assert golden["active_days_90d"] == 4


def test_email_rates(golden):
    assert golden["email_open_rate"] == pytest.approx(0.5)
    assert golden["email_click_rate"] == pytest.approx(0.5)
    assert golden["email_click_to_open_rate"] == pytest.approx(1.0)


def test_trend_is_rate_difference(golden):
    # activity in [as_of-7d, as_of): -7d, -5d+1h, -5d+2h, -1us = 4; in [as_of-37d, as_of-7d): 2
    assert golden["trend_7d_vs_prior_30d"] == pytest.approx(4 / 7 - 2 / 30)


def test_decay_score(golden):
    ages = [100, 10, 7 + 1e-6 / 86400, 7, 5 - 1 / 24, 5 - 2 / 24, 1e-6 / 86400]
    expected = sum(math.exp(-math.log(2) * a / 14.0) for a in ages)
    assert golden["decay_score"] == pytest.approx(expected, rel=1e-12)
    assert golden["decay_pricing"] == pytest.approx(math.exp(-math.log(2) * 10 / 14))
    # email group decay includes the outbound sends
    email_ages = [20, 5, 5 - 1 / 24, 5 - 2 / 24]
    assert golden["decay_email"] == pytest.approx(
        sum(math.exp(-math.log(2) * a / 14.0) for a in email_ages))


def test_no_events_gives_zeros_and_nan():
    frame = behaviour_features(spine_frame([("z", AS_OF)]), events_frame(GOLDEN_EVENTS),
                               SETTINGS).iloc[0]
    assert frame["events_all"] == 0
    assert frame["evt_site_visit_all"] == 0
    assert frame["sessions_all"] == 0
    assert math.isnan(frame["days_since_last_research"])
    assert math.isnan(frame["days_since_first_activity"])
    assert math.isnan(frame["email_open_rate"])
    assert frame["decay_score"] == 0.0


def test_no_events_frame_at_all():
    frame = behaviour_features(spine_frame([("a", AS_OF)]), None, SETTINGS)
    assert list(frame.columns) == behaviour_columns([], SETTINGS)
    assert frame["events_all"].tolist() == [0]
    assert frame["grp_research_30d"].tolist() == [0]


@pytest.mark.parametrize(("gap_minutes", "sessions"), [(30, 1), (30.0001, 1), (29.999, 2)])
def test_session_gap_boundary(gap_minutes, sessions):
    # two visits exactly 30 minutes apart: a gap must be *longer* than 30 min to split
    events = events_frame([("a", AS_OF - DAY, "site_visit"),
                           ("a", AS_OF - DAY + pd.Timedelta(minutes=30), "site_visit")])
    s = FeatureSettings(event_groups=SETTINGS.event_groups, session_gap_minutes=gap_minutes)
    frame = behaviour_features(spine_frame([("a", AS_OF)]), events, s)
    assert frame["sessions_all"].tolist() == [sessions]


def test_several_snapshots_keep_spine_order_and_index():
    spine = spine_frame([("a", AS_OF), ("a", AS_OF - 8 * DAY), ("b", AS_OF)])
    spine.index = [10, 11, 12]
    frame = behaviour_features(spine, events_frame(GOLDEN_EVENTS), SETTINGS)
    assert list(frame.index) == [10, 11, 12]
    # at as_of - 8 days only the -10d pricing view, the -20d send and the -100d visit exist
    assert frame["events_all"].tolist() == [9, 3, 1]
    assert frame["evt_site_visit_all"].tolist() == [4, 1, 1]


def test_columns_are_deterministic_and_typed_counts():
    frame = behaviour_features(spine_frame([("a", AS_OF)]), events_frame(GOLDEN_EVENTS),
                               SETTINGS)
    types = ["email_click", "email_open", "email_sent", "pricing_view", "site_visit"]
    assert list(frame.columns) == behaviour_columns(types, SETTINGS)
    assert frame["evt_email_open_all"].dtype == np.int32


def test_inputs_are_not_mutated():
    events = events_frame(GOLDEN_EVENTS).sample(frac=1.0, random_state=3)
    spine = spine_frame([("b", AS_OF), ("a", AS_OF)])
    before_e, before_s = events.copy(deep=True), spine.copy(deep=True)
    behaviour_features(spine, events, SETTINGS)
    pd.testing.assert_frame_equal(events, before_e)
    pd.testing.assert_frame_equal(spine, before_s)


def test_unsorted_input_gives_same_result():
    events = events_frame(GOLDEN_EVENTS)
    spine = spine_frame([("a", AS_OF), ("b", AS_OF), ("a", AS_OF - 3 * DAY)])
    a = behaviour_features(spine, events, SETTINGS)
    b = behaviour_features(spine, events.iloc[::-1].reset_index(drop=True), SETTINGS)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_duckdb_sort_matches_numpy_sort(monkeypatch):
    import features.behaviour as behaviour

    rng = np.random.default_rng(0)
    k = rng.integers(0, 5, 200).astype(np.int32)
    ts = rng.integers(0, 50, 200).astype(np.int64)[::-1]  # a negative-stride view
    c = rng.integers(0, 3, 200).astype(np.int16)
    small = behaviour._sort_events(k, ts, c)
    monkeypatch.setattr(behaviour, "_NUMPY_SORT_MAX", 0)
    big = behaviour._sort_events(k, ts, c)
    for a, b in zip(small, big, strict=True):
        np.testing.assert_array_equal(a, b)


def test_duckdb_encode_path_matches_numpy_path(monkeypatch):
    import features.behaviour as behaviour

    events = events_frame(GOLDEN_EVENTS).iloc[::-1].reset_index(drop=True)
    spine = spine_frame([("a", AS_OF), ("b", AS_OF), ("a", AS_OF - 3 * DAY)])
    small = behaviour_features(spine, events, SETTINGS)
    monkeypatch.setattr(behaviour, "_NUMPY_SORT_MAX", 2)
    assert behaviour._looks_unsorted(events)
    big = behaviour_features(spine, events, SETTINGS)
    pd.testing.assert_frame_equal(small, big, check_exact=True)
