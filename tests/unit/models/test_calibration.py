"""Calibration on a held-out split: ECE improves, auto picks the better method, pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils import estimator_checks as ec

from models import metrics
from models.calibration import ScoreCalibrator, calibrate_model, fit_calibrator
from models.settings import CalibrationSettings, InsufficientDataError, SettingsError


def logit(p):
    return np.log(p) - np.log1p(-p)


def sigmoid_distorted(n: int = 4000, seed: int = 0):
    """Raw scores whose true probability is a logistic function of their logit."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.02, 0.98, size=n)
    true = 1 / (1 + np.exp(-(0.5 * logit(raw) - 1.0)))
    return raw, rng.binomial(1, true)


def step_distorted(n: int = 4000, seed: int = 0):
    """Raw scores whose true probability jumps from 5 % to 60 % at raw = 0.5."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.01, 0.99, size=n)
    true = np.where(raw < 0.5, 0.05, 0.6)
    return raw, rng.binomial(1, true)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_each_method_reduces_ece_on_a_miscalibrated_sample(method):
    raw, y = sigmoid_distorted()
    cal = ScoreCalibrator(method=method, random_state=0).fit(raw, y)
    assert cal.method_ == method
    assert cal.ece_before_ > 0.15
    assert cal.ece_after_ < 0.04
    assert cal.ece_after_ < cal.ece_before_ / 4
    assert set(cal.cv_log_loss_) == {method}


@pytest.mark.parametrize(
    ("sample", "winner"), [(sigmoid_distorted, "sigmoid"), (step_distorted, "isotonic")]
)
def test_auto_picks_the_method_with_lower_cross_fitted_log_loss(sample, winner):
    raw, y = sample()
    auto = ScoreCalibrator(method="auto", random_state=0).fit(raw, y)
    assert auto.method_ == winner
    for method in ("isotonic", "sigmoid"):
        single = ScoreCalibrator(method=method, random_state=0).fit(raw, y)
        assert auto.cv_log_loss_[method] == pytest.approx(single.cv_log_loss_[method])
    assert auto.cv_log_loss_[winner] < min(auto.cv_log_loss_.values()) + 1e-12
    np.testing.assert_allclose(
        auto.predict(raw), ScoreCalibrator(method=winner, random_state=0).fit(raw, y).predict(raw)
    )


def test_isotonic_never_returns_zero_or_one_and_pickles():
    raw = np.linspace(0, 1, 200)
    y = (raw > 0.5).astype(int)  # perfectly separable
    cal = ScoreCalibrator(method="isotonic").fit(raw, y)
    out = cal.predict(np.array([0.0, 0.2, 0.8, 1.0]))
    assert out.min() == pytest.approx(1e-4) and out.max() == pytest.approx(1 - 1e-4)
    again = pickle.loads(pickle.dumps(cal))
    np.testing.assert_array_equal(again.predict(raw), cal.predict(raw))
    assert again.summary()["method"] == "isotonic"


def test_rule_points_are_calibrated_the_same_way():
    rng = np.random.default_rng(1)
    points = rng.integers(0, 100, size=3000).astype(float)
    y = rng.binomial(1, 0.02 + 0.5 * points / 100)
    cal = fit_calibrator(points, y, CalibrationSettings(method="auto"), seed=0, input_kind="score")
    assert np.isnan(cal.ece_before_)
    assert cal.ece_after_ < 0.05
    p = cal.predict(np.array([0.0, 50.0, 99.0]))
    assert np.all(np.diff(p) > 0) and 0 < p[0] < p[-1] < 1


def test_calibrate_model_does_not_refit_the_model():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 2))
    y = rng.binomial(1, 1 / (1 + np.exp(-(X[:, 0] - 1))))
    model = LogisticRegression(C=0.01).fit(X[:1000], y[:1000])  # over-regularised: shrunk
    coef = model.coef_.copy()
    cal = calibrate_model(model, X[1000:], y[1000:], CalibrationSettings("sigmoid"), seed=0)
    np.testing.assert_array_equal(model.coef_, coef)
    raw = model.predict_proba(X[1000:])[:, 1]
    assert metrics.log_loss(y[1000:], cal.predict(raw)) < metrics.log_loss(y[1000:], raw)


def test_checks_and_errors():
    with pytest.raises(InsufficientDataError, match="at least 2 positives"):
        ScoreCalibrator().fit([0.1, 0.2, 0.3], [0, 0, 1])
    with pytest.raises(SettingsError, match="`calibration.method` must be one of"):
        ScoreCalibrator(method="beta").fit([0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match="one raw score per row; got 2 columns"):
        ScoreCalibrator().fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(NotFittedError):
        ScoreCalibrator().predict([0.5])


# The calibrator takes one score per row, like IsotonicRegression, so sklearn's
# `parametrize_with_checks` skips it (it only generates multi-column X). These are the
# contract checks that apply to a 1-d estimator, plus the fit/predict ones by hand.
@pytest.mark.parametrize(
    "check",
    [
        ec.check_no_attributes_set_in_init,
        ec.check_parameters_default_constructible,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_estimator_cloneable,
        ec.check_estimator_repr,
        ec.check_valid_tag_types,
        ec.check_estimator_tags_renamed,
    ],
    ids=lambda c: c.__name__,
)
def test_sklearn_contract(check):
    check("ScoreCalibrator", ScoreCalibrator())


def test_fit_contract_by_hand():
    raw, y = sigmoid_distorted(n=600)
    est = ScoreCalibrator(method="auto", random_state=3)
    params = est.get_params()
    assert est.fit(raw, y) is est
    assert est.get_params() == params  # fit does not touch parameters
    first = est.predict(raw)
    np.testing.assert_array_equal(est.fit(raw, y).predict(raw), first)  # idempotent
    np.testing.assert_array_equal(est.predict(raw.reshape(-1, 1)), first)  # 1-d == one column
    assert not hasattr(clone(est), "method_")
    order = np.random.default_rng(0).permutation(raw.size)
    np.testing.assert_allclose(est.predict(raw[order]), first[order])
