"""The decision backtest: calls per week ranked by a score vs at random."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.backtest import capacity_backtest, capacity_grid


def batches() -> pd.DataFrame:
    """Two weeks; week 1: a (converts), b, c; week 2: a again, d (converts), e."""
    return pd.DataFrame({
        "lead_id": ["a", "b", "c", "a", "d", "e"],
        "as_of": pd.to_datetime(["2025-01-06"] * 3 + ["2025-01-13"] * 3),
        "converted": [1, 0, 0, 1, 1, 0],
        "good": [0.9, 0.5, 0.1, 0.9, 0.8, 0.2],
        "bad": [0.1, 0.9, 0.5, 0.1, 0.2, 0.8],
    })


def test_hand_computed_reach_and_no_lead_called_twice() -> None:
    got = capacity_backtest(batches(), ["good", "bad"], [1, 2, 3], n_random=50).set_index(
        ["capacity", "scorer"])
    assert got.attrs["converted_leads"] == 2
    # N=1: good calls a (week 1) then d (week 2; a already called) -> 2 of 2
    assert got.loc[(1, "good"), "reached"] == 2 and got.loc[(1, "good"), "calls"] == 2
    # bad calls b then e -> 0
    assert got.loc[(1, "bad"), "reached"] == 0
    # N=3 calls everyone: every scorer reaches both
    assert got.loc[(3, "good"), "reached"] == got.loc[(3, "bad"), "reached"] == 2
    assert got.loc[(3, "good"), "calls"] == 5
    rnd = got.loc[(1, "random")]
    assert 0 < rnd["reached"] < 2 and rnd["reached_p05"] <= rnd["reached"] <= rnd["reached_p95"]
    assert got.loc[(1, "good"), "share_reached"] == 1.0


def test_a_score_that_knows_the_outcome_beats_random_on_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"lead_id": np.arange(n) % 1000,
                          "as_of": pd.Timestamp("2025-01-06")
                          + pd.to_timedelta(7 * (np.arange(n) // 1000), unit="D")})
    p = rng.random(1000)
    frame["converted"] = (rng.random(n) < p[frame["lead_id"]]).astype(int)
    frame["model"] = p[frame["lead_id"]] + rng.normal(0, 0.05, n)
    got = capacity_backtest(frame, ["model"], [50]).set_index("scorer")
    assert got.loc["model", "reached"] > 1.5 * got.loc["random", "reached"]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="lack"):
        capacity_backtest(batches(), ["missing"], [1])
    with pytest.raises(ValueError, match=">= 1"):
        capacity_backtest(batches(), ["good"], [0])


def test_outcome_labels_follow_the_training_label() -> None:
    from features.snapshots import outcome_labels

    leads = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "converted": [1, 1, 0, 1],
                          "converted_at": pd.to_datetime(["2025-01-10", "2025-03-01", None,
                                                          None])})
    spine = pd.DataFrame({"lead_id": ["a", "a", "b", "c", "d", "x"],
                          "as_of": pd.to_datetime(["2025-01-01", "2025-01-10", "2025-01-01",
                                                   "2025-01-01", "2025-01-01",
                                                   "2025-01-01"])})
    # a: converts 9 days later (in), at as_of itself (out: not after); b: 59 days (out of 30)
    got = outcome_labels(spine, leads, horizon_days=30)
    assert got.tolist() == [1, 0, 0, 0, 0, 0]
    assert outcome_labels(spine, leads, horizon_days=60).tolist() == [1, 0, 1, 0, 0, 0]


def test_capacity_grid_spans_one_to_the_weekly_volume() -> None:
    grid = capacity_grid(batches(), extra=(25,))
    assert grid[0] == 1 and 25 in grid and grid == sorted(set(grid))
