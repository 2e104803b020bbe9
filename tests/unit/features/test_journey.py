"""Journey features on hand-built event logs: email streaks, sequences, session landings,
bursts - exact values, point in time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.behaviour import behaviour_features
from features.settings import FeatureSettings, SettingsError

AS_OF = pd.Timestamp("2025-06-01 12:00:00")
SETTINGS = FeatureSettings(
    event_groups={"research": ["site_visit", "blog_read"], "pricing": ["pricing_view"],
                  "email": ["email_sent", "email_open", "email_click"]},
    journey={"sequences": {"click_visit": ["email_click", "site_visit"]},
             "sequence_gap_minutes": 5, "burst_gap_days": 14},
)


def _features(rows: list[tuple[float, str]], settings: FeatureSettings = SETTINGS) -> pd.Series:
    """Features of one snapshot at AS_OF; rows are (days before AS_OF, event type)."""
    events = pd.DataFrame({
        "lead_id": pd.Series(["a"] * len(rows), dtype="str"),
        "timestamp": pd.Series([AS_OF - pd.Timedelta(days=d) for d, _ in rows],
                               dtype="datetime64[us]"),
        "event_type": pd.Series([t for _, t in rows], dtype="str"),
    }).sort_values("timestamp", kind="stable")
    spine = pd.DataFrame({"lead_id": pd.Series(["a"], dtype="str"),
                          "as_of": pd.Series([AS_OF], dtype="datetime64[us]")})
    return behaviour_features(spine, events, settings).iloc[0]


MIN = 1 / 1440


def test_unopened_streak_counts_emails_since_the_last_open() -> None:
    f = _features([(30, "email_sent"), (29, "email_open"), (20, "email_sent"),
                   (10, "email_sent"), (5, "email_sent"), (-1, "email_sent")])
    assert f["streak_unopened_emails"] == 3  # the one after as_of is not seen
    assert f["days_since_email_open"] == pytest.approx(29)
    never = _features([(9, "email_sent"), (3, "email_sent")])
    assert never["streak_unopened_emails"] == 2 and np.isnan(never["days_since_email_open"])


def test_an_email_sent_at_the_moment_of_the_open_is_not_in_the_streak() -> None:
    f = _features([(10, "email_sent"), (10, "email_open"), (2, "email_sent")])
    assert f["streak_unopened_emails"] == 1


def test_a_visit_within_the_gap_after_a_click_is_a_sequence() -> None:
    f = _features([(40, "email_click"), (40 - 3 * MIN, "site_visit"),  # 3 min: yes
                   (20, "email_click"), (20 - 10 * MIN, "site_visit"),  # 10 min: no
                   (3, "email_click"), (3, "site_visit"),  # same moment: yes
                   (2, "site_visit")])  # no click before it within 5 min
    assert f["seq_click_visit_all"] == 2
    assert f["seq_click_visit_90d"] == 2 and f["seq_click_visit_7d"] == 1
    assert f["days_since_seq_click_visit"] == pytest.approx(3)


def test_sessions_land_in_the_group_of_their_first_activity() -> None:
    f = _features([(50, "pricing_view"), (50 - 2 * MIN, "site_visit"),  # lands on pricing
                   (30, "email_sent"),  # outbound email is not activity
                   (30 - 1 * MIN, "blog_read"), (30 - 3 * MIN, "pricing_view"),  # research
                   (100, "site_visit")])  # outside the 90-day window
    assert f["landing_pricing_90d"] == 1 and f["landing_research_90d"] == 1
    assert f["landing_research_all"] == 2 and f["landing_email_all"] == 0


def test_silence_of_the_burst_gap_starts_a_new_burst() -> None:
    f = _features([(60, "site_visit"), (55, "blog_read"),  # burst 1
                   (30, "site_visit"), (29, "pricing_view"), (28, "site_visit"),  # burst 2
                   (20, "email_sent")])  # outbound: never starts or extends a burst
    assert f["bursts_all"] == 2
    assert f["bursts_current_events"] == 3
    assert f["burst_age_days"] == pytest.approx(30)
    assert f["burst_gap_days"] == pytest.approx(25)
    first = _features([(5, "site_visit")])
    assert first["bursts_all"] == 1 and np.isnan(first["burst_gap_days"])


def test_no_events_give_zero_counts_and_missing_ages() -> None:
    f = _features([])
    assert f["streak_unopened_emails"] == 0 and f["bursts_all"] == 0
    assert np.isnan(f["burst_age_days"]) and np.isnan(f["days_since_seq_click_visit"])


def test_journey_can_be_switched_off_and_is_validated() -> None:
    off = FeatureSettings(event_groups=SETTINGS.event_groups, journey={"enabled": False})
    assert not any(c.startswith(("streak_", "seq_", "landing_", "burst"))
                   for c in _features([(1, "site_visit")], off).index)
    with pytest.raises(SettingsError, match="two event types"):
        FeatureSettings(journey={"sequences": {"x": ["a"]}})
    with pytest.raises(SettingsError, match="two different event types"):
        FeatureSettings(journey={"sequences": {"x": ["a", "a"]}})
    with pytest.raises(SettingsError, match="`features.journey.gap` is not a known setting"):
        FeatureSettings(journey={"gap": 3})
