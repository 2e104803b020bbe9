"""train_all: every scorer fitted and calibrated the same way, on a time split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.bundle import ScoringBundle, model_input
from models.metrics import roc_auc
from models.settings import (
    InputError,
    InsufficientDataError,
    parse_bands,
    parse_calibration,
    parse_split,
    parse_train,
)
from models.training import train_all
from models.tuning import refit_rounds
from pipeline.stages.register import decide

BANDS = {
    "temperature": {
        "policy": "conversion",
        "conversion_rule": "marginal",
        "bands": [
            {"name": "cold"},
            {"name": "warm", "min_conversion": 0.15},
            {"name": "hot", "min_conversion": 0.4},
        ],
    },
    "lifecycle": {
        "policy": "share",
        "bands": [
            {"name": "lead"},
            {"name": "MQL", "top_share": 0.3},
            {"name": "SQL", "top_share": 0.1},
        ],
    },
}


def make_frame(n_leads: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Two snapshots per lead; conversion driven by `intent` (numeric) and `tier` (category)."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 365, n_leads)), unit="D"
    )
    ids = np.array([f"L{i:05d}" for i in range(n_leads)])
    rows = np.repeat(np.arange(n_leads), 2)
    intent = rng.normal(size=rows.size)
    tier = rng.choice(["a", "b", "c"], size=rows.size, p=[0.2, 0.3, 0.5])
    logit = -2.3 + 1.3 * intent + np.where(tier == "a", 1.0, 0.0)
    label = (rng.uniform(size=rows.size) < 1 / (1 + np.exp(-logit))).astype("int8")
    return pd.DataFrame(
        {
            "lead_id": ids[rows],
            "created_at": created[rows].astype("datetime64[us]"),
            "as_of": (created[rows] + pd.to_timedelta(np.tile([1, 30], n_leads), unit="D")).astype(
                "datetime64[us]"
            ),
            "label": label,
            "intent": intent,
            "noise": rng.normal(size=rows.size),
            "tier": pd.Categorical(tier),
        }
    )


def settings(**train: object):  # noqa: ANN201
    return (
        parse_split({"train": 0.6, "calibration": 0.2, "test": 0.2}),
        parse_train({"lightgbm": {"n_estimators": 200, "num_leaves": 7},
                     "tune": {"enabled": False}, **train}),
        parse_calibration({"method": "sigmoid"}),
        parse_bands(BANDS),
    )


def test_train_all_fits_calibrates_and_bands_every_scorer() -> None:
    frame = make_frame()
    split, train, calibration, bands = settings()
    points = pd.Series(np.round(frame["intent"] * 10), index=frame.index)
    result = train_all(
        frame, ["intent", "noise", "tier"], split, train, calibration, bands, 90, rule_points=points
    )
    pred = result.predictions
    # no lead in two parts; test leads created after training leads
    assert (pred.groupby("lead_id")["split"].nunique() == 1).all()
    assert (
        pred.loc[pred.split == "train", "created_at"].max()
        < pred.loc[pred.split == "test", "created_at"].min()
    )
    test = pred[pred.split == "test"]
    for scorer in ("lightgbm", "logreg", "rules"):
        assert test[f"p_{scorer}"].between(0, 1).all()
        assert roc_auc(test["label"], test[f"p_{scorer}"]) > 0.7
    bundle = result.bundle
    assert set(bundle.bands) == {"temperature", "lifecycle"}
    out = bundle.predict_frame(frame.head(50))
    assert list(out.columns) == ["propensity", "score", "temperature", "lifecycle_stage"]
    assert np.allclose(out["propensity"], pred["p_served"].head(50))
    if bundle.scorer_name == "lightgbm":
        assert np.allclose(pred["p_served"], pred["p_lightgbm"])
    # the pyfunc path: strings for categories, floats for numbers, same answer
    again = bundle.predict_frame(model_input(frame.head(50), bundle.features))
    assert np.allclose(again["propensity"], out["propensity"])


def test_basic_feature_yardstick_is_a_scorer_fitted_on_the_subset_alone() -> None:
    frame = make_frame(seed=5)
    features = ["intent", "noise", "tier"]
    result = train_all(frame, features, *settings(), 90, baseline_features=["noise", "tier"])
    test = result.predictions[result.predictions.split == "test"]
    # without `intent` the yardstick sees only the weak `tier` signal
    assert roc_auc(test["label"], test["p_lightgbm"]) > roc_auc(
        test["label"], test["p_lightgbm_basic"]
    ) + 0.1
    assert result.summary["features"]["basic"] == ["noise", "tier"]
    assert result.bundle.features == features  # the served model keeps every feature
    # the same set as the model's, or none at all, is no yardstick
    for subset in (features, [], None):
        out = train_all(frame, features, *settings(), 90, baseline_features=subset)
        assert "p_lightgbm_basic" not in out.predictions


def test_same_seed_same_scores() -> None:
    frame = make_frame(1500, seed=3)
    a = train_all(frame, ["intent", "noise", "tier"], *settings(), 90).predictions
    b = train_all(frame, ["intent", "noise", "tier"], *settings(), 90).predictions
    assert np.array_equal(a["p_lightgbm"].to_numpy(), b["p_lightgbm"].to_numpy())


def test_too_few_conversions_says_how_many_and_what_is_needed() -> None:
    frame = make_frame(400)
    with pytest.raises(
        InsufficientDataError, match=r"training split has \d+ conversions; at least 500"
    ):
        train_all(frame, ["intent", "tier"], *settings(min_positives=500), 90)


def test_bundle_names_missing_feature_columns() -> None:
    frame = make_frame(1500)
    bundle: ScoringBundle = train_all(frame, ["intent", "noise", "tier"], *settings(), 90).bundle
    with pytest.raises(InputError, match="lacks 1 of the model's 3 feature columns: noise"):
        bundle.predict_frame(frame.drop(columns="noise"))


def test_unseen_category_at_scoring_is_not_fatal() -> None:
    frame = make_frame(1500)
    bundle = train_all(frame, ["intent", "noise", "tier"], *settings(), 90).bundle
    new = frame.head(3).assign(tier=["zzz", None, "a"])
    out = bundle.predict_frame(new)
    assert out["propensity"].between(0, 1).all()


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        ({"log_loss": 0.30, "roc_auc": 0.80}, None, True),
        ({"log_loss": 0.30, "roc_auc": 0.80}, {"log_loss": 0.31, "roc_auc": 0.80}, True),
        ({"log_loss": 0.30, "roc_auc": 0.797}, {"log_loss": 0.30, "roc_auc": 0.80}, True),
        ({"log_loss": 0.32, "roc_auc": 0.85}, {"log_loss": 0.31, "roc_auc": 0.80}, False),
        ({"log_loss": 0.30, "roc_auc": 0.79}, {"log_loss": 0.31, "roc_auc": 0.80}, False),
    ],
)
def test_promotion_rule(challenger: dict, champion: dict | None, promote: bool) -> None:
    decision, why = decide(challenger, champion, auc_tolerance=0.005)
    assert decision is promote
    assert why


def test_path_contributions_add_up_to_the_raw_score_and_agree_with_treeshap_in_sign() -> None:
    frame = make_frame(2000, seed=5)
    bundle = train_all(frame, ["intent", "noise", "tier"], *settings(serve="lightgbm"), 90).bundle
    X = bundle.matrix(frame.head(300))
    contrib = bundle.contributions(frame.head(300))
    raw = bundle.model.predict_proba(X, raw_score=True)
    assert np.allclose(contrib.sum(axis=1).to_numpy(), raw, atol=1e-6)
    shap = bundle.model.booster_.predict(
        X, pred_contrib=True, num_iteration=bundle.model.best_iteration_
    )[:, :-1]
    intent = list(bundle.features).index("intent")
    agree = np.sign(contrib["intent"].to_numpy()) == np.sign(shap[:, intent])
    assert agree.mean() > 0.9


def test_one_pass_scoring_matches_predict_and_explain() -> None:
    frame = make_frame(2000, seed=7)
    bundle = train_all(frame, ["intent", "noise", "tier"], *settings(), 90).bundle
    rows = frame.head(400)
    fast = bundle.score_frame(rows)
    slow = bundle.predict_frame(rows)
    assert np.allclose(fast["propensity"], slow["propensity"], atol=1e-9)
    assert (fast["temperature"] == slow["temperature"]).all()
    assert fast["reasons"].tolist() == bundle.explain(rows)


def test_test_split_labels_change_no_trained_parameter() -> None:
    """Tuning, early stopping, the refit, calibration and bands see the training and
    calibration splits only: flipping every test label changes nothing that was fitted."""
    frame = make_frame(1500, seed=3)
    split, train, calibration, bands = settings(tune={"n_trials": 4})
    fitted = train_all(frame, ["intent", "noise", "tier"], split, train, calibration, bands, 90)
    is_test = (fitted.predictions["split"] == "test").to_numpy()
    flipped = frame.copy()
    flipped.loc[is_test, "label"] = 1 - flipped.loc[is_test, "label"]
    again = train_all(flipped, ["intent", "noise", "tier"], split, train, calibration, bands, 90)
    assert fitted.summary["tuning"]["trials"] == 4
    timeless = [{k: v for k, v in r.summary["tuning"].items() if k != "seconds"}
                for r in (fitted, again)]
    assert timeless[0] == timeless[1]
    assert fitted.bundle.model.booster_.model_to_string() == \
        again.bundle.model.booster_.model_to_string()
    for name, fb in fitted.bundle.bands.items():
        assert fb.to_dict() == again.bundle.bands[name].to_dict()
    for name in ("lightgbm", "logreg"):
        pd.testing.assert_series_equal(fitted.predictions[f"p_{name}"],
                                       again.predictions[f"p_{name}"])


def test_the_served_lightgbm_is_refitted_on_every_training_row() -> None:
    frame = make_frame(1500, seed=4)
    result = train_all(frame, ["intent", "noise", "tier"], *settings(), 90)
    lgbm = result.summary["lightgbm"]
    n_train = result.summary["split"]["rows"]["train"]
    n_fit = n_train - lgbm["validation_rows"]
    # the early-stopped count, scaled to all training rows, and every one of them fitted
    assert lgbm["n_trees"] == refit_rounds(lgbm["best_iteration"], n_fit, n_train)
    assert result.bundle.model.booster_.num_trees() == lgbm["n_trees"] > lgbm["best_iteration"]


@pytest.mark.parametrize("serve", ["blend", "logreg"])
def test_a_served_blend_scores_and_explains_in_one_sum(serve: str) -> None:
    """The blend (or the logistic regression alone) is what the bundle serves: its
    propensity is the calibrated blended probability, and each lead's contributions plus
    the bias add up to the blended log-odds, so the reasons explain the served score."""
    frame = make_frame(2000, seed=6)
    result = train_all(frame, ["intent", "noise", "tier"], *settings(serve=serve), 90)
    bundle = result.bundle
    assert bundle.scorer_name == serve and result.summary["served"]["served"] == serve
    assert (bundle.blend_weight == 0.0) == (serve == "logreg")
    rows = frame.head(200)
    scored = bundle.score_frame(rows)
    assert np.allclose(scored["propensity"], result.predictions["p_served"].head(200))
    assert np.allclose(scored["propensity"], bundle.propensity(rows))
    contrib = bundle.contributions(rows)
    raw = np.log(bundle.raw_proba(rows) / (1 - bundle.raw_proba(rows)))
    assert np.allclose(contrib.sum(axis=1).to_numpy(), raw, atol=1e-9)
    # intent drives conversion: it is the top reason of the most likely leads
    top = scored["propensity"].nlargest(20).index
    assert all(r.startswith("+ intent") for r in scored.loc[top, "reasons"])


def test_the_served_candidate_is_chosen_on_validation_log_loss() -> None:
    from models.training import choose_blend

    rng = np.random.default_rng(0)
    z_true = rng.normal(-2, 1.5, 5000)
    y = (rng.uniform(size=z_true.size) < 1 / (1 + np.exp(-z_true))).astype(int)
    noise = rng.normal(0, 1.0, z_true.size)
    # two noisy views of the truth with independent errors: their average is best
    blend = choose_blend(y, z_true + noise, z_true - noise)
    assert blend["served"] == "blend" and blend["weight"] == 0.5
    assert blend["validation_log_loss"]["blend"] < min(blend["validation_log_loss"]["lightgbm"],
                                                       blend["validation_log_loss"]["logreg"])
    trees = choose_blend(y, z_true, z_true + 2 * noise)
    assert trees["served"] == "lightgbm" and trees["weight"] == 1.0
    assert "lowest log-loss on the validation leads" in trees["why"]
    forced = choose_blend(y, z_true, z_true + 2 * noise, serve="logreg")
    assert forced["served"] == "logreg" and "`train.serve`" in forced["why"]
