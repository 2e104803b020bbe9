"""studies/auc_ceiling.py: the served model against the generator's truth, on hand-built
predictions (the hidden state part runs the generator, so it is pinned by the e2e test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.metrics import roc_auc
from models.settings import LightGBMSettings
from studies.auc_ceiling import (
    by_phase,
    hidden_state_gain,
    learning_curve,
    measure,
    nested_lead_subsets,
    summarise_curve,
)


def _predictions() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6", "L7"],
        "as_of": pd.to_datetime(["2025-01-02"] * 7),
        "split": ["test", "test", "test", "test", "calibration", "calibration", "train"],
        "label": [0, 1, 0, 1, 0, 1, 1],
        "p_served": [0.6, 0.4, 0.2, 0.8, 0.3, 0.7, 0.5],
    })


def _truth() -> pd.DataFrame:
    # no row for L7: snapshots the truth does not cover are left out
    return pd.DataFrame({"lead_id": ["L1", "L2", "L3", "L4", "L5", "L6"],
                         "as_of": ["2025-01-02 00:00:00"] * 6,
                         "p_true": [0.1, 0.9, 0.2, 0.7, 0.4, 0.6]})


def test_measure_scores_served_and_truth_on_the_same_snapshots() -> None:
    out = measure(_predictions(), _truth())
    test = out["test"]
    assert (test["snapshots"], test["conversions"]) == (4, 2)
    assert test["served_roc_auc"] == 0.75 and test["truth_roc_auc"] == 1.0
    assert test["auc_ratio"] == 0.75
    y = np.array([0, 1, 0, 1])
    truth = np.array([0.1, 0.9, 0.2, 0.7])
    expected = -np.mean(y * np.log(truth) + (1 - y) * np.log(1 - truth))
    assert test["truth_log_loss"] == round(float(expected), 4)
    assert out["calibration"]["snapshots"] == 2 and out["calibration"]["served_roc_auc"] == 1.0


def test_by_phase_counts_the_test_snapshots_per_hidden_phase() -> None:
    hidden = pd.DataFrame({"hidden_phase": pd.Categorical(
        ["buying", "buying", "browsing", "buying", "cooling", "buying", "gone"])})
    table = by_phase(_predictions(), _truth(), hidden)
    assert list(table["phase"]) == ["browsing", "buying"]  # generator order, test rows only
    buying = table.set_index("phase").loc["buying"]
    assert buying["snapshots"] == 3
    assert buying["conversion"] == round(2 / 3, 4)
    assert buying["mean_truth"] == round((0.1 + 0.9 + 0.7) / 3, 4)
    assert buying["mean_served"] == round((0.6 + 0.4 + 0.8) / 3, 4)


def _learnable(n_leads: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray,
                                                           np.ndarray, np.ndarray, pd.DataFrame]:
    """Two snapshots per lead; the outcome depends on an observable column and on a hidden
    one. Leads are split 60 / 20 / 20 into train, calibration and test."""
    rng = np.random.default_rng(seed)
    leads = np.repeat([f"L{i}" for i in range(n_leads)], 2)
    seen, hidden = rng.normal(size=leads.size), np.repeat(rng.normal(size=n_leads), 2)
    p_truth = 1 / (1 + np.exp(-(seen + 2 * hidden - 1)))
    y = (rng.random(leads.size) < p_truth).astype(np.int8)
    lead_part = np.array(["train"] * 240 + ["calibration"] * 80 + ["test"] * 80)
    parts = np.repeat(lead_part[: n_leads], 2)
    X = pd.DataFrame({"seen": seen, "noise": rng.normal(size=leads.size)})
    phase = pd.Categorical(np.where(hidden > 0, "buying", "browsing"))
    state = pd.DataFrame({"hidden_phase": phase, "hidden_fit": hidden,
                          "hidden_intent": rng.normal(size=leads.size)})
    return X, y, parts, leads, p_truth, state


SMALL = LightGBMSettings(n_estimators=300, learning_rate=0.1, num_leaves=4, min_child_samples=10)


def test_nested_lead_subsets_keep_whole_leads_and_nest() -> None:
    leads = np.repeat([f"L{i}" for i in range(10)], 3)
    masks = nested_lead_subsets(leads, (0.25, 0.5, 1.0), seed=3)
    picked = {f: set(leads[m]) for f, m in masks.items()}
    assert [len(picked[f]) for f in (0.25, 0.5, 1.0)] == [3, 5, 10]  # ceil(f x 10)
    assert picked[0.25] <= picked[0.5] <= picked[1.0]
    for mask in masks.values():  # a lead is in with all of its snapshots or not at all
        assert pd.Series(mask).groupby(leads).nunique().eq(1).all()
    assert nested_lead_subsets(leads, (0.5,), seed=3)[0.5].tolist() == masks[0.5].tolist()


def test_learning_curve_fits_on_training_leads_only() -> None:
    X, y, parts, leads, p_truth, _ = _learnable()
    rows = learning_curve(X, y, parts, leads, p_truth, SMALL, seed=0, repeats=2,
                          fractions=(0.25, 1.0), early_stopping_rounds=20)
    assert [(r["fraction"], r["draw"]) for r in rows] == [(0.25, 0), (1.0, 0), (0.25, 1)]
    assert [r["leads"] for r in rows] == [60, 240, 60]  # of the 240 training leads
    assert [r["snapshots"] for r in rows] == [120, 480, 120]
    truth_auc = roc_auc(y[parts == "test"], p_truth[parts == "test"])
    for r in rows:
        assert 0.5 < r["test_roc_auc"] <= 1
        assert r["auc_share_of_truth"] == pytest.approx(r["test_roc_auc"] / truth_auc, abs=2e-4)
    # the test labels reach no fit (early stopping reads the calibration split): flipping
    # them leaves the trees as they were and turns the test AUC around
    flipped = np.where(parts == "test", 1 - y, y).astype(np.int8)
    again = learning_curve(X, flipped, parts, leads, p_truth, SMALL, seed=0, repeats=1,
                           fractions=(1.0,), early_stopping_rounds=20)
    assert again[0]["trees"] == rows[1]["trees"]
    assert again[0]["test_roc_auc"] == pytest.approx(1 - rows[1]["test_roc_auc"], abs=2e-4)
    table = summarise_curve(rows)
    assert table["draws"].tolist() == [2, 1] and table["leads"].tolist() == [60, 240]


def test_hidden_state_gain_shows_what_the_hidden_columns_are_worth() -> None:
    X, y, parts, _, p_truth, state = _learnable()
    rows = {r["inputs"]: r for r in hidden_state_gain(X, y, parts, state, p_truth, SMALL, seed=0,
                                                      early_stopping_rounds=20)}
    assert list(rows) == ["observable features", "+ hidden phase",
                          "+ hidden phase, fit and intent"]
    # the outcome leans on the hidden column twice as hard as on the observable one
    assert rows["+ hidden phase, fit and intent"]["test_roc_auc"] > \
        rows["observable features"]["test_roc_auc"] + 0.05
    assert rows["+ hidden phase"]["test_roc_auc"] > rows["observable features"]["test_roc_auc"]
