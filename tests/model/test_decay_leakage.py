"""Leakage invariance of the learned-decay features `<group>_decayed_hl`: events at or after
as_of (exactly at it, or later) change nothing; events before it do. Fails if the event
filter becomes `timestamp <= as_of`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.settings import FeatureSettings
from models.decay import add_decayed_features

AS_OF = pd.Timestamp("2025-06-01 10:00:00")
SETTINGS = FeatureSettings(event_groups={"demo": ("demo_request",), "blog": ("blog_read",)})
HALF_LIVES = {"demo": 3.5, "blog": 40.0}


def _events(rng: np.random.Generator, n: int, low_days: float, high_days: float):
    return pd.DataFrame({
        "lead_id": rng.choice(["a", "b", "c"], n),
        "event_type": rng.choice(["demo_request", "blog_read", "site_visit"], n),
        "timestamp": AS_OF + pd.to_timedelta(rng.uniform(low_days, high_days, n), unit="D"),
    })


def test_events_at_or_after_as_of_change_no_decayed_feature() -> None:
    rng = np.random.default_rng(7)
    spine = pd.DataFrame({"lead_id": ["a", "b", "c", "a"],
                          "as_of": [AS_OF, AS_OF, AS_OF, AS_OF - pd.Timedelta(days=10)]})
    before = _events(rng, 60, -90, -1e-6)
    base = add_decayed_features(spine, before, SETTINGS, HALF_LIVES)
    at = pd.DataFrame({"lead_id": ["a", "b", "c"] * 2,
                       "event_type": ["demo_request", "blog_read", "demo_request"] * 2,
                       "timestamp": [AS_OF] * 6})
    after = _events(rng, 60, 0, 30)
    later = pd.concat([before, at, after], ignore_index=True).sample(frac=1, random_state=1)
    got = add_decayed_features(spine, later, SETTINGS, HALF_LIVES)
    pd.testing.assert_frame_equal(got, base)
    # the 10-days-earlier snapshot of a ignores a's events in its own last 10 days
    only_old = before[before["timestamp"] < AS_OF - pd.Timedelta(days=10)]
    old = add_decayed_features(spine.iloc[[3]], only_old, SETTINGS, HALF_LIVES)
    pd.testing.assert_frame_equal(old, base.iloc[[3]])


def test_an_event_just_before_as_of_does_count() -> None:
    spine = pd.DataFrame({"lead_id": ["a"], "as_of": [AS_OF]})
    ev = pd.DataFrame({"lead_id": ["a"], "event_type": ["demo_request"],
                       "timestamp": [AS_OF - pd.Timedelta(microseconds=1)]})
    got = add_decayed_features(spine, ev, SETTINGS, HALF_LIVES)
    assert got["demo_decayed_hl"].iloc[0] == pytest.approx(1.0)
    assert got["blog_decayed_hl"].iloc[0] == 0.0
