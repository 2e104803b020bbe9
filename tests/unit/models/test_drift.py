"""PSI and the drift reference: golden values, bins, round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.drift import (
    bin_counts,
    categorical_counts,
    drift_psi,
    drift_reference,
    numeric_counts,
    psi,
    psi_noise_floor,
    psi_verdict,
    quantile_edges,
    top_features,
)


@pytest.mark.parametrize(
    ("expected", "actual", "value"),
    [
        ([0.5, 0.5], [0.25, 0.75], 0.27465307216702745),                 # ln(3) / 4
        ([0.1] * 10, [0.05, 0.05] + [0.1] * 6 + [0.15, 0.15], 0.10986122886681098),  # ln(3)/10
        ([0.2, 0.3, 0.5], [0.3, 0.3, 0.4], 0.06286086594223741),
        ([1.0, 0.0], [0.5, 0.5], 4.60431846666895),                      # empty bin -> 1e-4
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 0.0),
        ([20, 30, 50], [0.2, 0.3, 0.5], 0.0),                            # counts or shares
    ],
)
def test_psi_golden_values(expected, actual, value):
    assert psi(expected, actual) == pytest.approx(value, abs=1e-12)


def test_psi_is_symmetric_and_non_negative():
    rng = np.random.default_rng(0)
    for _ in range(20):
        e, a = rng.random(6), rng.random(6)
        assert psi(e, a) == pytest.approx(psi(a, e))
        assert psi(e, a) >= 0


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([0.5, 0.5], [1.0]), ([], []), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([1, np.nan], [1, 1])],
)
def test_psi_refuses_bad_input(expected, actual):
    with pytest.raises(ValueError, match="psi"):
        psi(expected, actual)


@pytest.mark.parametrize(("value", "verdict"), [(0.0, "stable"), (0.0999, "stable"),
                                                 (0.1, "moderate"), (0.25, "moderate"),
                                                 (0.2501, "significant"), (None, "n/a")])
def test_psi_verdict_levels(value, verdict):
    assert psi_verdict(value) == verdict


def test_decile_edges_give_equal_bins():
    values = np.arange(100, dtype=float)
    edges = quantile_edges(values, 10)
    assert edges == pytest.approx([9.9, 19.8, 29.7, 39.6, 49.5, 59.4, 69.3, 79.2, 89.1])
    assert numeric_counts(values, edges).tolist() == [10] * 10 + [0]


def test_zero_heavy_counts_keep_zero_in_its_own_bin():
    values = np.array([0.0] * 70 + [1.0] * 20 + [5.0] * 10)
    edges = quantile_edges(values, 10)
    assert edges[0] == 0.0 and max(edges) < 5.0
    counts = numeric_counts(values, edges)
    assert counts[0] == 70 and counts.sum() == 100 and counts[-1] == 0


def test_numeric_counts_bins_are_right_closed_with_missing_last():
    counts = numeric_counts([0.0, 1.0, 1.5, 2.0, 7.0, np.nan, -np.inf, np.inf], [1.0, 2.0])
    assert counts.tolist() == [3, 2, 2, 1]   # (-inf,1], (1,2], (2,inf), missing


def test_constant_column_has_one_bin():
    assert quantile_edges([3.0] * 5) == []
    assert numeric_counts([3.0] * 5 + [np.nan], []).tolist() == [5, 1]


def test_categorical_counts_put_unknown_and_missing_last():
    counts = categorical_counts(pd.Series(["a", "b", "a", None, "z"]), ["a", "b"])
    assert counts.tolist() == [2, 1, 2]
    cat = pd.Series(pd.Categorical(["a", "b", None], categories=["a", "b"]))
    assert categorical_counts(cat, ["b", "a"]).tolist() == [1, 1, 1]


def _train_frame(n: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x": rng.normal(shift, 1.0, n),
        "n": rng.poisson(2 + shift, n).astype("int32"),
        "c": pd.Categorical(rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
                            categories=["a", "b", "c", "other"]),
        "unused": np.zeros(n),
    })
    frame.loc[frame.index[::10], "x"] = np.nan
    p = 1 / (1 + np.exp(-(frame["x"].fillna(0).to_numpy() - 1)))
    return frame, p


def test_drift_reference_structure_and_self_psi_zero():
    frame, p = _train_frame(2000, 1)
    ref = drift_reference(frame, p, ["x", "n", "c"])
    assert json.loads(json.dumps(ref)) == ref
    assert ref["format_version"] == 1 and ref["n"] == 2000
    assert set(ref["features"]) == {"x", "n", "c"}
    x, c = ref["features"]["x"], ref["features"]["c"]
    assert x["kind"] == "numeric" and len(x["shares"]) == len(x["edges"]) + 2
    assert x["shares"][-1] == pytest.approx(0.1)   # the missing bin
    assert c == {"kind": "categorical", "levels": ["a", "b", "c"],
                 "shares": pytest.approx(list(np.bincount(
                     pd.Series(frame["c"]).cat.codes, minlength=3) / 2000) + [0.0])}
    for spec in [ref["propensity"], *ref["features"].values()]:
        assert sum(spec["shares"]) == pytest.approx(1.0)
    counts = {"propensity": bin_counts(p, ref["propensity"]),
              **{f: bin_counts(frame[f], s) for f, s in ref["features"].items()}}
    assert drift_psi(ref, counts) == pytest.approx({"propensity": 0, "x": 0, "n": 0, "c": 0})


def test_psi_flags_a_shifted_batch_not_a_fresh_sample():
    frame, p = _train_frame(5000, 1)
    ref = drift_reference(frame, p, ["x", "n", "c"])
    same, p_same = _train_frame(5000, 2)
    moved, p_moved = _train_frame(5000, 3, shift=1.0)

    def batch_psi(f, q):
        return drift_psi(ref, {"propensity": bin_counts(q, ref["propensity"]),
                               **{k: bin_counts(f[k], s) for k, s in ref["features"].items()}})

    assert max(batch_psi(same, p_same).values()) < 0.1
    shifted = batch_psi(moved, p_moved)
    assert shifted["x"] > 0.25 and shifted["propensity"] > 0.25 and shifted["c"] < 0.1


def test_drift_psi_skips_variables_without_counts():
    frame, p = _train_frame(500, 1)
    ref = drift_reference(frame, p, ["x"])
    assert drift_psi(ref, {"x": np.zeros(len(ref["features"]["x"]["shares"]))}) == {}


def test_drift_reference_checks_its_input():
    frame, p = _train_frame(50, 1)
    with pytest.raises(ValueError, match="lacks"):
        drift_reference(frame, p, ["nope"])
    with pytest.raises(ValueError, match="p_train"):
        drift_reference(frame, p[:-1], ["x"])


def test_top_features_by_importance_then_name():
    assert top_features(["a", "b", "c", "d"], [0.0, 5.0, 5.0, 1.0], n=2) == ["b", "c"]
    assert top_features(["a", "b"], [0, 0]) == []
    with pytest.raises(ValueError):
        top_features(["a"], [1, 2])


def test_a_newly_empty_decile_in_a_small_batch_is_not_significant_drift():
    """Ten equal bins, a batch of 60 leads that happens to leave one empty: with eps 1e-4
    that alone read as 'significant'; smoothed and judged against the noise floor it is not."""
    ref = {"propensity": {"kind": "numeric", "edges": [], "shares": [0.1] * 10}}
    counts = {"propensity": np.array([7, 7, 7, 7, 7, 7, 6, 6, 6, 0])}
    raw_psi = psi([0.1] * 10, counts["propensity"])
    assert psi_verdict(raw_psi) == "significant"  # the old reading
    value = drift_psi(ref, counts)["propensity"]
    assert value < raw_psi
    assert psi_verdict(value, n=60, bins=10) in ("stable", "within noise")


def test_psi_verdict_needs_enough_leads_and_clears_the_noise_floor():
    assert psi_verdict(0.9, n=20, bins=10) == "too few leads to judge"
    floor = psi_noise_floor(200, 10)
    assert 0.10 < floor < 0.11  # chi2_0.99(9) / 200
    assert psi_verdict(floor - 1e-6, n=200, bins=10) == "within noise"
    assert psi_verdict(0.30, n=200, bins=10) == "significant"
    assert psi_verdict(0.30, n=10_000, bins=10) == "significant"
    assert psi_noise_floor(200, 10, n_reference=200) == pytest.approx(2 * floor)


def test_psi_noise_floor_matches_simulated_no_drift_batches():
    """The floor is the 99th percentile of PSI between a reference and samples drawn from it."""
    rng = np.random.default_rng(0)
    shares = np.full(10, 0.1)
    values = [psi(shares, rng.multinomial(400, shares) + 0.0) for _ in range(2000)]
    assert np.quantile(values, 0.99) == pytest.approx(psi_noise_floor(400, 10), rel=0.25)
