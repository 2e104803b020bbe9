"""Fit and engagement sub-scores: sides, grades, grid, monotonicity, log-odds shares."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from models.metrics import evaluate_scores
from models.settings import parse_bands, parse_calibration, parse_split, parse_train
from models.subscores import (
    cut_grades,
    grade,
    grid_table,
    log_odds_shares,
    monotone_breaks,
    subscore_columns,
    subscore_frame,
)
from models.training import train_all

GROUPS = {"grp_demo_30d": "behaviour:demo", "events_30d": "behaviour:activity",
          "fit_industry": "fit:industry", "fit_log_company_size": "fit:company_size",
          "extra_budget": "extra:budget", "lead_age_days": "lead_age"}
FEATURES = list(GROUPS)


def snapshots(n_leads: int, seed: int) -> pd.DataFrame:
    """Fit (industry, size) and engagement (demo requests) both drive conversion."""
    rng = np.random.default_rng(seed)
    n = 2 * n_leads
    industry = rng.choice(["software", "retail", "other"], n)
    size = rng.normal(4, 1.5, n)
    demo = rng.poisson(0.6, n).astype(float)
    logit = 1.0 * (industry == "software") + 0.4 * size + 1.2 * demo - 4.5
    return pd.DataFrame({
        "grp_demo_30d": demo, "events_30d": demo + rng.poisson(3, n),
        "fit_industry": pd.Categorical(industry), "fit_log_company_size": size,
        "extra_budget": rng.normal(0, 1, n), "lead_age_days": np.tile([1.0, 30.0], n_leads),
        "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        "lead_id": [f"L{i:05d}" for i in np.repeat(np.arange(n_leads), 2)],
    })


def test_sides_follow_the_report_groups() -> None:
    sides = subscore_columns(FEATURES, GROUPS)
    assert sides == {"fit": ["fit_industry", "fit_log_company_size", "extra_budget"],
                     "engagement": ["grp_demo_30d", "events_30d"]}
    assert subscore_columns(["fit_industry"], GROUPS) == {"fit": ["fit_industry"]}


def test_grades_hold_their_shares_and_labels() -> None:
    p = np.linspace(0, 1, 1000, endpoint=False)
    cuts = cut_grades(p)
    got = pd.Series(grade(p, cuts, list("ABCD"))).value_counts(normalize=True)
    assert got["A"] == pytest.approx(0.15, abs=0.002)
    assert got["B"] == pytest.approx(0.25, abs=0.002)
    assert got["D"] == pytest.approx(0.30, abs=0.002)
    assert grade(np.array([cuts[0]]), cuts, list("ABCD"))[0] == "A"   # p == cutoff: higher
    with pytest.raises(ValueError, match="sum below 1"):
        cut_grades(p, (0.5, 0.6))


def test_grid_and_monotone_breaks() -> None:
    fit = np.array(["A"] * 100 + ["B"] * 100)
    eng = np.array(["1"] * 200)
    y = np.r_[np.zeros(100), np.ones(50), np.zeros(50)]     # A1 converts less than B1
    table = grid_table(fit, eng, y)
    assert len(table) == 16
    a1 = table.set_index("cell").loc["A1"]
    assert (a1["n"], a1["conversions"]) == (100, 0) and a1["ci_low"] == 0.0
    assert monotone_breaks(table) == ["A1 converts less than B1"]
    assert monotone_breaks(grid_table(fit, eng, y[::-1])) == []


def test_log_odds_shares_sum_to_one() -> None:
    contrib = pd.DataFrame({"fit_industry": [1.0, 0.0, 0.0], "grp_demo_30d": [-3.0, 0.0, 2.0],
                            "lead_age_days": [0.0, 0.0, 2.0], "bias": [5.0, 5.0, 5.0]})
    got = log_odds_shares(contrib, GROUPS)
    assert got.iloc[0].tolist() == [0.25, 0.75, 0.0]
    assert got.iloc[1].isna().all()
    assert got.iloc[2].tolist() == [0.0, 0.5, 0.5]


def test_train_all_fits_calibrated_sub_scores_that_do_not_serve() -> None:
    frame = snapshots(3000, seed=5)
    result = train_all(
        frame, FEATURES, parse_split({"train": 0.6, "calibration": 0.2, "test": 0.2}),
        parse_train({"lightgbm": {"n_estimators": 100, "num_leaves": 7}, "serve": "lightgbm",
                     "tune": {"enabled": False}}),
        parse_calibration({"method": "isotonic"}),
        parse_bands({"temperature": {"policy": "share", "bands": [
            {"name": "cold"}, {"name": "hot", "top_share": 0.2}]}}),
        90, subscores=subscore_columns(FEATURES, GROUPS),
    )
    assert set(result.submodels) == {"fit", "engagement"}
    assert result.submodels["fit"][1] == ["fit_industry", "fit_log_company_size",
                                          "extra_budget"]
    assert result.submodels["fit"][0].n_features_in_ == 3
    pred = result.predictions
    test = pred[pred["split"] == "test"]
    for side in ("fit", "engagement"):
        m = evaluate_scores(test["label"], test[f"p_{side}"])
        assert m["roc_auc"] > 0.6
        assert abs(test[f"p_{side}"].mean() - test["label"].mean()) < 0.03   # calibrated
    served = evaluate_scores(test["label"], test["p_served"])["roc_auc"]
    assert served > max(evaluate_scores(test["label"], test[f"p_{s}"])["roc_auc"]
                        for s in ("fit", "engagement"))
    assert list(result.bundle.features) == FEATURES    # the full model still serves

    # the bundle carries them for scoring: grades from calibration shares, shares of log-odds
    bundle = result.bundle
    assert set(bundle.subscores) == {"fit", "engagement"}
    rows = frame.iloc[:400][FEATURES]
    got = subscore_frame(bundle.subscores, bundle.matrix(rows), bundle.contributions(rows),
                         GROUPS)
    assert np.allclose(got["fit_propensity"],
                       pred["p_fit"].iloc[:400].to_numpy())
    assert set(got["fit_grade"]) <= set("ABCD") and set(got["engagement_level"]) <= set("1234")
    assert (got["grid"] == got["fit_grade"] + got["engagement_level"]).all()
    share = got["fit_share"] + got["engagement_share"]
    assert ((share > 0) & (share <= 1 + 1e-12)).all()
    again = pickle.loads(pickle.dumps(bundle))
    assert np.array_equal(again.subscores["fit"].propensity(bundle.matrix(rows)),
                          got["fit_propensity"].to_numpy())
