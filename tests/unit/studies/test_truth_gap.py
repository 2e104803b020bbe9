"""studies/auc_ceiling.py: the served model against the generator's truth, on hand-built
predictions (the hidden state part runs the generator, so it is pinned by the e2e test)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studies.auc_ceiling import by_phase, measure


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
