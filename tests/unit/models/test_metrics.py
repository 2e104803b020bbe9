"""Golden values for the metrics and the curve frames."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from models import metrics as m
from models.settings import InputError, InsufficientDataError

# A hand-made ranking: 10 leads, 3 conversions (base rate 0.3).
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
Y = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (5, 10, (0.2366, 0.7634)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (1, 100, (0.0018, 0.0545)),
    ],
)
def test_wilson_golden(successes, n, expected):
    low, high = m.wilson_interval(successes, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_edge_cases():
    assert m.wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(InputError, match="`successes` must be <= `n`; got 3 > 2"):
        m.wilson_interval(3, 2)


def test_lift_and_capture_on_hand_ranking():
    assert m.lift_at(Y, P, 0.1) == pytest.approx(1 / 0.3)
    assert m.capture_at(Y, P, 0.1) == pytest.approx(1 / 3)
    assert m.lift_at(Y, P, 0.2) == pytest.approx(0.5 / 0.3)
    assert m.capture_at(Y, P, 0.3) == pytest.approx(2 / 3)
    assert m.capture_at(Y, P, 1.0) == pytest.approx(1.0)
    assert m.lift_at(Y, P, 1.0) == pytest.approx(1.0)


def test_ties_get_the_tied_groups_average_and_ignore_row_order():
    p = np.array([0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    # Top 10 % = 1 lead out of a 4-way tie converting at 1/2.
    assert m.capture_at(y, p, 0.1) == pytest.approx(0.25)
    assert m.lift_at(y, p, 0.1) == pytest.approx(0.5 / 0.2)
    order = np.random.default_rng(3).permutation(10)
    assert m.capture_at(y[order], p[order], 0.1) == pytest.approx(0.25)


def test_ece_golden_and_variants():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # bin [0.1, 0.2): |0.1 - 0.5| * 2/4 ; bin [0.9, 1]: |0.9 - 1| * 2/4
    assert m.ece(y, p) == pytest.approx(0.25)
    assert m.ece(y, p, n_bins=2, strategy="quantile") == pytest.approx(0.25)
    assert m.ece(y, p, n_bins=1) == pytest.approx(abs(0.5 - 0.75))
    with pytest.raises(InputError, match="strategy"):
        m.ece(y, p, strategy="kde")


def test_ece_of_perfectly_calibrated_sample_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = rng.binomial(1, p)
    assert m.ece(y, p) < 0.005
    assert m.ece(y, p, strategy="quantile") < 0.005
    assert m.ece(y, np.clip(p + 0.1, 0, 1)) > 0.08


def test_scalar_metrics_match_definitions():
    p = np.array([0.2, 0.7, 0.4, 0.9])
    y = np.array([0, 1, 0, 1])
    assert m.brier(y, p) == pytest.approx((0.04 + 0.09 + 0.16 + 0.01) / 4)
    expected_ll = -np.mean(np.log([0.8, 0.7, 0.6, 0.9]))
    assert m.log_loss(y, p) == pytest.approx(expected_ll)
    assert m.roc_auc(y, p) == 1.0
    assert m.pr_auc(Y, P) == pytest.approx(skm.average_precision_score(Y, P))
    with pytest.raises(InsufficientDataError, match="needs both outcomes"):
        m.roc_auc([0, 0], [0.1, 0.2])
    with pytest.raises(InputError, match="probabilities in"):
        m.log_loss([0, 1], [0.5, 3.0])


def test_evaluate_scores_keys_and_values():
    out = m.evaluate_scores(Y, P)
    assert set(out) == set(m.METRIC_KEYS) | {"base_rate", "n", "positives"}
    assert out["n"] == 10 and out["positives"] == 3 and out["base_rate"] == pytest.approx(0.3)
    assert out["lift_at_10"] == pytest.approx(1 / 0.3)
    assert out["capture_at_20"] == pytest.approx(1 / 3)
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))


def test_curve_frames():
    roc = m.roc_curve_frame(Y, P)
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert np.isfinite(roc["threshold"]).all()
    assert roc.iloc[0][["fpr", "tpr"]].tolist() == [0.0, 0.0]
    assert roc.iloc[-1][["fpr", "tpr"]].tolist() == [1.0, 1.0]
    pr = m.pr_curve_frame(Y, P)
    assert list(pr.columns) == ["precision", "recall", "threshold"]
    assert np.isfinite(pr["threshold"]).all()

    cal = m.calibration_frame(Y, P)
    assert cal["count"].sum() == 10 and cal["positives"].sum() == 3
    row = cal.set_index("bin").loc[9]
    assert row["count"] == 1 and row["observed_rate"] == 1.0 and row["mean_predicted"] == 0.9
    assert (cal["ci_low"] <= cal["observed_rate"]).all()

    gains = m.gains_frame(Y, P, n_points=10)
    assert list(gains.columns) == ["share_contacted", "share_captured", "lift"]
    assert gains["share_captured"].tolist() == pytest.approx(
        [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1]
    )
    assert gains["lift"].iloc[-1] == pytest.approx(1.0)


def test_quantile_ece_sees_an_over_prediction_the_equal_width_bins_hide() -> None:
    """Most leads of a 5 % problem sit in the first equal-width bin; a 3x over-prediction
    for the bottom half cancels against the rest there, but not in equal-mass bins."""
    rng = np.random.default_rng(0)
    true = np.concatenate([np.full(5000, 0.01), np.full(5000, 0.09)])
    y = (rng.uniform(size=true.size) < true).astype(int)
    p = np.concatenate([np.full(5000, 0.03), np.full(5000, 0.07)])
    assert m.ece(y, p) < 0.004  # equal-width: both groups in bin [0, 0.1)
    assert m.ece(y, p, strategy="quantile") > 0.015
    out = m.evaluate_scores(y, p)
    assert out["ece"] == pytest.approx(m.ece(y, p, strategy="quantile"))
    assert out["ece_uniform"] == pytest.approx(m.ece(y, p))


def test_calibration_slope_is_one_for_calibrated_and_below_one_for_too_extreme_scores() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(-2, 1, 40000)
    p = 1 / (1 + np.exp(-z))
    y = (rng.uniform(size=z.size) < p).astype(int)
    slope, intercept = m.calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.05) and intercept == pytest.approx(0.0, abs=0.1)
    extreme = 1 / (1 + np.exp(-(2 * z + 2)))
    assert m.calibration_slope_intercept(y, extreme)[0] == pytest.approx(0.5, abs=0.05)


def test_lead_bootstrap_resamples_whole_leads() -> None:
    """Ten identical snapshots per lead carry the information of one: the lead-clustered
    interval is about sqrt(10) times wider than a row bootstrap would pretend."""
    rng = np.random.default_rng(2)
    n_leads = 400
    p_lead = rng.uniform(0.05, 0.6, n_leads)
    y_lead = (rng.uniform(size=n_leads) < p_lead).astype(int)
    rows = np.repeat(np.arange(n_leads), 10)
    y, p, groups = y_lead[rows], p_lead[rows], rows
    by_lead = m.lead_bootstrap(y, p, groups, {"auc": m.roc_auc}, n_boot=200, seed=0)["auc"]
    by_row = m.lead_bootstrap(y, p, np.arange(rows.size), {"auc": m.roc_auc}, n_boot=200,
                              seed=0)["auc"]
    assert by_lead[0] < m.roc_auc(y, p) < by_lead[1]
    ratio = (by_lead[1] - by_lead[0]) / (by_row[1] - by_row[0])
    assert 2.0 < ratio < 4.5


def test_paired_difference_cancels_the_noise_both_scorers_share() -> None:
    """Two scorers that differ by a little noise on the same leads: the paired interval of
    their AUC difference is far narrower than either AUC's own interval, holds the point
    difference, and a scorer against itself differs by exactly zero in every resample."""
    rng = np.random.default_rng(4)
    n = 3_000
    z = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(z - 2)))).astype(int)
    a, b = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-(z + 0.3 * rng.normal(size=n))))
    leads = np.arange(n)
    d = m.paired_difference(y, a, b, leads, m.roc_auc, n_boot=300, seed=0)
    assert d["difference"] == pytest.approx(m.roc_auc(y, a) - m.roc_auc(y, b))
    assert d["ci_low"] < d["difference"] < d["ci_high"] and d["resamples"] == 300
    alone = m.lead_bootstrap(y, a, leads, {"auc": m.roc_auc}, n_boot=300, seed=0)["auc"]
    assert (d["ci_high"] - d["ci_low"]) < (alone[1] - alone[0]) / 2
    same = m.paired_difference(y, a, a, leads, m.roc_auc, n_boot=50, seed=0)
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    with pytest.raises(m.InputError, match="one entry per row"):
        m.paired_difference(y, a, b, leads[:-1], m.roc_auc)


def test_ece_null_is_the_spread_of_a_calibrated_scorers_ece_and_shrinks_with_rows():
    rng = np.random.default_rng(3)
    p = rng.beta(1, 9, 8_000)
    median, p95 = m.ece_null(p, n_draws=300, seed=1)
    draws = [m.ece((rng.random(p.size) < p).astype(int), p, strategy="quantile")
             for _ in range(300)]  # an independent check of the same quantity
    assert median == pytest.approx(np.median(draws), rel=0.15)
    assert p95 == pytest.approx(np.quantile(draws, 0.95), rel=0.15)
    assert 0 < median < p95
    big_median, _ = m.ece_null(np.tile(p, 16), n_draws=100, seed=1)
    assert big_median < median / 2.5  # ~1/sqrt(rows): 16 x the rows, about 1/4 the noise
    assert m.ece_null(p, seed=7) == m.ece_null(p, seed=7)
    with pytest.raises(InputError):
        m.ece_null(np.array([0.2, 1.5]))


def test_clustered_standard_error_is_the_plain_one_per_row_and_grows_with_shared_leads():
    rng = np.random.default_rng(11)
    v = rng.normal(size=500)
    assert m.clustered_standard_error(v) == pytest.approx(v.std(ddof=1) / np.sqrt(v.size))
    # each lead's value repeated over its 9 snapshots: 500 draws, not 4500
    repeated, leads = np.repeat(v, 9), np.repeat(np.arange(500), 9)
    assert m.clustered_standard_error(repeated, leads) == pytest.approx(
        m.clustered_standard_error(v), rel=1e-3)
    assert m.clustered_standard_error(repeated) < m.clustered_standard_error(v) / 2.5
    assert m.clustered_standard_error([1.0, 2.0], [7, 7]) == float("inf")
    with pytest.raises(InputError, match="`groups` has 2 values for 3 rows"):
        m.clustered_standard_error([1.0, 2.0, 3.0], [1, 2])


def test_row_log_loss_averages_to_log_loss():
    y, p = np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.4, 0.0])
    assert m.row_log_loss(y, p).mean() == pytest.approx(m.log_loss(y, p))
