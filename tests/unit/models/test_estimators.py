"""LightGBM determinism and early stopping; logistic baseline; category handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.estimators import fit_lightgbm, make_logreg, prepare_categories, unseen_categories
from models.settings import InputError, InsufficientDataError, LightGBMSettings


def leads(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    x2[rng.uniform(size=n) < 0.1] = np.nan
    channel = rng.choice(["web", "event", "partner", "ads"], size=n).astype(object)
    channel[rng.uniform(size=n) < 0.05] = None
    logit = -1.0 + 1.2 * x1 + 0.6 * np.nan_to_num(x2) + (channel == "event") * 1.0
    y = rng.binomial(1, 1 / (1 + np.exp(-logit)))
    return pd.DataFrame({"x1": x1, "x2": x2, "channel": channel}), y


SMALL = LightGBMSettings(n_estimators=300, learning_rate=0.1, num_leaves=7, min_child_samples=20)


def test_prepare_categories_fixes_lists_and_maps_unseen_to_nan():
    train = pd.DataFrame({"c": ["b", "a", None, "b"], "n": [1, 2, 3, 4]})
    before = train.copy()
    out, cats = prepare_categories(train, ["c"])
    pd.testing.assert_frame_equal(train, before)
    assert cats == {"c": ["a", "b"]}
    assert isinstance(out["c"].dtype, pd.CategoricalDtype)
    assert list(out["c"].cat.categories) == ["a", "b"]
    new = pd.DataFrame({"c": ["a", "zzz", None], "n": [1, 2, 3]})
    scored, same = prepare_categories(new, ["c"], cats)
    assert same == cats
    assert scored["c"].isna().tolist() == [False, True, True]
    assert unseen_categories(new, cats) == {"c": 1}
    numeric_codes, _ = prepare_categories(pd.DataFrame({"c": [1, 2]}), ["c"], {"c": ["1"]})
    assert numeric_codes["c"].tolist()[0] == "1" and pd.isna(numeric_codes["c"].tolist()[1])


def test_lightgbm_same_seed_same_predictions_and_early_stopping_stops():
    X, y = leads(3000, seed=1)
    Xp, cats = prepare_categories(X, ["channel"])
    tr, va = slice(0, 2400), slice(2400, None)
    kw = {"early_stopping_rounds": 10}
    a = fit_lightgbm(Xp.iloc[tr], y[tr], Xp.iloc[va], y[va], SMALL, seed=5, **kw)
    b = fit_lightgbm(Xp.iloc[tr], y[tr], Xp.iloc[va], y[va], SMALL, seed=5, **kw)
    X_new, _ = leads(500, seed=2)
    X_new, _ = prepare_categories(X_new, ["channel"], cats)
    np.testing.assert_array_equal(a.predict_proba(X_new), b.predict_proba(X_new))
    assert a.best_iteration_ == b.best_iteration_
    assert 1 <= a.best_iteration_ < SMALL.n_estimators
    # Training ran early_stopping_rounds past the best iteration, then stopped.
    rounds_run = len(a.evals_result_["valid_0"]["binary_logloss"])
    assert rounds_run == a.best_iteration_ + 10 < SMALL.n_estimators
    params = a.get_params()
    assert params["deterministic"] and params["force_row_wise"] and params["n_jobs"] == 1


def test_lightgbm_rejects_mismatched_categories_and_one_class_validation():
    X, y = leads(400, seed=3)
    Xp, _ = prepare_categories(X, ["channel"])
    other, _ = prepare_categories(X, ["channel"], {"channel": ["web"]})
    with pytest.raises(InputError, match="same categories"):
        fit_lightgbm(Xp, y, other, y, SMALL, seed=0)
    with pytest.raises(InsufficientDataError, match="validation data needs both outcomes"):
        fit_lightgbm(Xp, y, Xp, np.zeros_like(y), SMALL, seed=0)


@pytest.mark.parametrize("as_category", [False, True])
def test_logreg_handles_unseen_and_missing_categories(as_category):
    X, y = leads(1500, seed=4)
    new = pd.DataFrame(
        {"x1": [0.0, 1.0, np.nan], "x2": [np.nan, 0.5, 1.0], "channel": ["tiktok", None, "web"]}
    )
    if as_category:
        X, cats = prepare_categories(X, ["channel"])
        new, _ = prepare_categories(new, ["channel"], cats)
    model = make_logreg(["x1", "x2"], ["channel"], C=0.1, seed=0, min_frequency=5).fit(X, y)
    proba = model.predict_proba(new)[:, 1]
    assert proba.shape == (3,) and np.isfinite(proba).all()
    assert ((proba > 0) & (proba < 1)).all()
    # x1 drives conversion: the learned coefficient of x1 (first column) is positive.
    assert model.named_steps["model"].coef_[0][0] > 0


def test_logreg_parameter_checks():
    with pytest.raises(ValueError, match=r"`train.logreg.C` must be > 0; got 0"):
        make_logreg(["x1"], [], C=0, seed=0)
    with pytest.raises(ValueError, match="both numeric and categorical"):
        make_logreg(["x1"], ["x1"], C=1, seed=0)
