"""Lift over the holdout: finds a built-in difference, says so when there is none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.lift import as_records, lift_table, required_holdout


def _outcomes(n: int, p_treated: float, p_holdout: float, share: float = 0.05,
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    held = rng.random(n) < share
    p = np.where(held, p_holdout, p_treated)
    converted = (rng.random(n) < p).astype(int)
    band = np.where(rng.random(n) < 0.3, "hot", "cold")
    return pd.DataFrame({"holdout": held, "converted": converted, "temperature": band,
                         "days_to_conversion": rng.integers(1, 30, n),
                         "revenue": converted * 100.0})


def test_a_real_lift_is_found_with_its_interval():
    rows = lift_table(_outcomes(60_000, 0.15, 0.10), weeks=10)
    top = rows[0]
    assert top.group == "all leads"
    assert top.diff_low > 0 and top.diff_low < 0.05 < top.diff_high
    assert top.verdict.startswith("scored leads convert more")
    assert top.treated.revenue_per_lead == pytest.approx(100 * top.treated.rate)


def test_no_difference_on_enough_data_says_so():
    rows = lift_table(_outcomes(200_000, 0.10, 0.10, seed=3), weeks=20)
    top = rows[0]
    assert top.diff_low < 0 < top.diff_high
    assert top.verdict.startswith("no difference of")
    assert top.needed_holdout is not None and top.holdout.n >= top.needed_holdout


def test_too_little_data_gives_weeks_to_wait():
    frame = _outcomes(2_000, 0.10, 0.10, seed=1)
    top = lift_table(frame, weeks=4)[0]
    assert top.verdict.startswith("not enough data yet: about")
    per_week = top.holdout.n / 4
    assert top.weeks_more == pytest.approx((top.needed_holdout - top.holdout.n) / per_week)


def test_groups_per_band_and_missing_arm():
    frame = _outcomes(5_000, 0.2, 0.1)
    rows = lift_table(frame, weeks=5, band_columns=("temperature",))
    assert {r.group for r in rows} == {"all leads", "temperature = hot", "temperature = cold"}
    assert sum(r.treated.n + r.holdout.n for r in rows[1:]) == len(frame)
    none_held = lift_table(frame.assign(holdout=False), weeks=5)[0]
    assert "no held-out leads" in none_held.verdict
    assert as_records([none_held])[0]["diff"] is None


def test_required_holdout_matches_the_textbook_formula():
    # p2 = 0.10, p1 = 0.12, equal arms, 80 % power, 5 % two-sided: about 3,841 per arm
    assert required_holdout(0.10, 0.02, 1.0) == pytest.approx(3_841, abs=5)
    assert required_holdout(0.10, 0.02, 19.0) < required_holdout(0.10, 0.02, 1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="holdout"):
        lift_table(pd.DataFrame({"converted": [1]}), weeks=1)
    with pytest.raises(ValueError, match="0 or 1"):
        lift_table(pd.DataFrame({"holdout": [True], "converted": [2]}), weeks=1)
