"""`leadprop lift`: first-scored leads, outcomes after scoring, censoring, the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.holdout import assign_holdout
from pipeline.errors import DataError
from pipeline.stages import lift as stage

T0 = pd.Timestamp("2026-01-05")
END = pd.Timestamp("2026-06-01")


def world(n: int, p_treated: float, p_holdout: float, seed: int = 0):
    """Leads scored in weekly batches (each lead in two batches), conversion after scoring
    at the given rates by arm."""
    rng = np.random.default_rng(seed)
    ids = [f"L{i:06d}" for i in range(n)]
    held = assign_holdout(ids, 0.1, key="k", source="crm")
    week = rng.integers(0, 10, n)
    first = T0 + pd.to_timedelta(7 * week, unit="D")
    rows = []
    for extra in (0, 7):   # each lead also sits in the next batch
        rows.append(pd.DataFrame({"lead_id": ids, "as_of": first + pd.Timedelta(days=extra),
                                  "holdout": held,
                                  "lifecycle_stage": rng.choice(["lead", "MQL", "SQL"], n)}))
    history = pd.concat(rows, ignore_index=True)
    p = np.where(held, p_holdout, p_treated)
    conv = rng.random(n) < p
    conv_at = first + pd.to_timedelta(rng.uniform(1, 25, n), unit="D")
    leads = pd.DataFrame({"lead_id": ids, "converted": conv.astype(int),
                          "converted_at": pd.Series(conv_at).where(conv),
                          "revenue": np.where(conv, 1000.0, 0.0)})
    return history, leads


def test_a_built_in_lift_is_found_per_lead_once():
    history, leads = world(40_000, 0.15, 0.08)
    result = stage.run(history, leads, T0, 30, END)
    assert result["counts"]["first_scored"] == 40_000 == result["counts"]["compared"]
    top = result["rows"][0]
    assert top["treated"]["n"] + top["holdout"]["n"] == 40_000
    assert result["verdict"].startswith("scored leads convert more")
    assert top["diff_low"] > 0
    assert top["treated"]["revenue_per_lead"] == pytest.approx(1000 * top["treated"]["rate"])
    assert {r["group"] for r in result["rows"][1:]} == {
        "lifecycle_stage = lead", "lifecycle_stage = MQL", "lifecycle_stage = SQL"}
    assert 1 <= top["treated"]["median_days"] <= 25


def test_no_difference_is_said_plainly():
    history, leads = world(40_000, 0.1, 0.1, seed=2)
    verdict = stage.run(history, leads, T0, 30, END)["verdict"]
    assert verdict.startswith(("no difference", "not enough data yet"))


def test_open_outcome_windows_are_left_out_not_counted_as_losses():
    history, leads = world(2_000, 0.2, 0.1)
    end = T0 + pd.Timedelta(days=7 * 5 + 30)     # batches of weeks 6-9 are still open
    result = stage.run(history, leads, T0, 30, end)
    first = history.sort_values("as_of").drop_duplicates("lead_id")
    still_open = int((first["as_of"] + pd.Timedelta(days=30) > end).sum())
    assert result["counts"]["censored"] == still_open > 0
    assert result["counts"]["compared"] == 2_000 - still_open


def test_since_filters_batches_and_refusals_are_clear():
    history, leads = world(1_000, 0.2, 0.1)
    later = stage.first_scored(history, T0 + pd.Timedelta(days=21))
    assert (later["as_of"] >= T0 + pd.Timedelta(days=21)).all()
    with pytest.raises(DataError, match="no scored batch since"):
        stage.run(history, leads, END, 30, END)
    with pytest.raises(DataError, match="holdout flag"):
        stage.run(history.drop(columns="holdout"), leads, T0, 30, END)
    with pytest.raises(DataError, match="finished outcome window"):
        stage.run(history, leads, T0, 30, T0 + pd.Timedelta(days=20))


def test_the_volume_is_new_held_out_leads_a_week_not_the_backlog():
    history, leads = world(2_000, 0.1, 0.1)
    result = stage.run(history, leads, T0, 30, END)
    first = stage.first_scored(history, T0)
    weeks = (pd.to_datetime(history["as_of"]).max() - T0) / pd.Timedelta(days=7)
    assert result["weeks"] == pytest.approx(weeks)
    assert result["holdout_per_week"] == pytest.approx(first["holdout"].sum() / weeks)
    top = result["rows"][0]
    if top["weeks_more"]:
        assert top["weeks_more"] == pytest.approx(
            (top["needed_holdout"] - top["holdout"]["n"]) / result["holdout_per_week"])
