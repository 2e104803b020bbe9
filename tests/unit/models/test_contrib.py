"""The compiled tree evaluator (models.contrib) against LightGBM itself: leaf indices, raw
scores and path contributions, for numerical splits with NaN, zero and tiny values (every
missing-value setting), categorical splits with missing, unseen, negative and fractional
codes, single-leaf trees and the best iteration; and the scoring bundle built on it."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.bundle import ScoringBundle, level_codes, model_input
from models.contrib import ZERO_THRESHOLD, Forest, compile_forest
from models.settings import parse_bands, parse_calibration, parse_split, parse_train
from models.training import train_all

FEATURES = ["signal", "count", "spiky", "tier"]
TINY = [ZERO_THRESHOLD, np.nextafter(ZERO_THRESHOLD, 1.0), 1e-40, 5e-36]


def frame(n: int, seed: int) -> pd.DataFrame:
    """Numbers with NaNs, many zeros and tiny values, and a category, all driving a label."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    signal[rng.random(n) < 0.15] = np.nan
    signal[rng.random(n) < 0.15] = 0.0
    count = np.floor(rng.exponential(2.0, n)) - 1.0  # -1, and 0 often
    count[rng.random(n) < 0.1] = np.nan
    spiky = rng.normal(size=n) * 1e-34  # straddles +-kZeroThreshold
    spiky[rng.random(n) < 0.2] = 0.0
    tier = rng.integers(0, 6, n)
    logit = (
        np.nan_to_num(signal, nan=1.0)
        + 0.4 * np.nan_to_num(count, nan=-2.0)
        + 0.8 * (spiky > 0)
        + np.array([1.2, -0.5, 0.3, -1.0, 0.8, 0.0])[tier]
    )
    return pd.DataFrame(
        {
            "signal": signal,
            "count": count,
            "spiky": spiky,
            "tier": pd.Categorical(tier, categories=range(6)),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


def fit(n: int = 3000, seed: int = 0, **params: object) -> lgb.LGBMClassifier:
    data = frame(n, seed)
    base = {
        "n_estimators": 40,
        "num_leaves": 31,
        "min_child_samples": 10,
        "cat_smooth": 1.0,
        "min_data_per_group": 5,
        "verbose": -1,
        "random_state": 0,
        "n_jobs": 1,
    }
    model = lgb.LGBMClassifier(**{**base, **params})
    return model.fit(data[FEATURES], data["label"])


def probe(model: lgb.LGBMClassifier, seed: int = 1) -> np.ndarray:
    """(rows, features) float values as LightGBM reads them: fresh rows, then for every
    feature its split thresholds and their neighbours, zeros, tiny values, NaN and
    infinities, and for the category missing, unseen, negative, fractional and huge codes."""
    rows = frame(500, seed)[FEATURES]
    X = rows.assign(tier=rows["tier"].cat.codes.astype(float)).to_numpy(dtype=float)
    thresholds: dict[int, set[float]] = {}
    for info in model.booster_.dump_model()["tree_info"]:
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                if node["decision_type"] == "<=":
                    thresholds.setdefault(node["split_feature"], set()).add(node["threshold"])
                stack += [node["left_child"], node["right_child"]]
    extra = []
    for j in range(3):
        values = [0.0, -0.0, np.nan, np.inf, -np.inf, *TINY, *(-t for t in TINY)]
        for t in thresholds.get(j, ()):
            values += [t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)]
        for v in values:
            row = X[len(extra) % len(X)].copy()
            row[j] = v
            extra.append(row)
    for code in [np.nan, 6.0, 7.0, 40.0, -1.0, -0.5, -2.0, 2.5, 5.999, 3e9, np.inf, 1e-40]:
        row = X[len(extra) % len(X)].copy()
        row[3] = code
        extra.append(row)
    return np.vstack([X, np.array(extra)])


def used_rows(forest: Forest, X: np.ndarray) -> np.ndarray:
    """The feature-major input of the evaluator: the used features' columns as rows."""
    return np.ascontiguousarray(X[:, forest.used].T)


def path_contributions(booster: lgb.Booster, X: np.ndarray, num_iteration: int) -> np.ndarray:
    """Reference Saabas contributions: LightGBM's own leaf for each row and tree, then the
    (child - parent) value changes along the path to that leaf, per split feature."""
    leaves = booster.predict(X, pred_leaf=True, num_iteration=num_iteration).reshape(len(X), -1)
    out = np.zeros((len(X), booster.num_feature()))
    tree_info = booster.dump_model(num_iteration=num_iteration)["tree_info"]
    for t, info in enumerate(tree_info):
        paths: dict[int, list[tuple[int, float]]] = {}
        stack = [(info["tree_structure"], [])]
        while stack:
            node, path = stack.pop()
            if "split_feature" not in node:
                paths[node.get("leaf_index", 0)] = path
                continue
            for side in ("left_child", "right_child"):
                child = node[side]
                value = child.get("internal_value", child.get("leaf_value"))
                step = (node["split_feature"], value - node["internal_value"])
                stack.append((child, [*path, step]))
        for i, leaf in enumerate(leaves[:, t]):
            for feature, delta in paths[leaf]:
                out[i, feature] += delta
    return out


MODEL_PARAMS = {
    "leaves-31": {},
    "leaves-4": {"num_leaves": 4, "n_estimators": 80},
    "no-missing": {"use_missing": False},
    "zero-as-missing": {"zero_as_missing": True},
    "zero-as-missing-4": {"zero_as_missing": True, "num_leaves": 4},
    "one-hot-categories": {"max_cat_to_onehot": 8},
}


@functools.cache
def fitted(name: str) -> lgb.LGBMClassifier:
    return fit(**MODEL_PARAMS[name])


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_leaves_raw_scores_and_contributions_are_lightgbm_s(name: str) -> None:
    model = fitted(name)
    booster = model.booster_
    forest = compile_forest(booster, len(FEATURES))
    X = probe(model)
    Xu = used_rows(forest, X)
    assert np.array_equal(forest.leaves(Xu), booster.predict(X, pred_leaf=True))
    raw, contrib = forest.contributions(Xu)
    # summed tree by tree like LightGBM: the same raw score to the last bit
    assert np.array_equal(raw, booster.predict(X, raw_score=True))
    assert np.allclose(contrib.sum(axis=0) + forest.bias, raw, rtol=0, atol=1e-9)
    full = forest.full_width(contrib)
    reference = path_contributions(booster, X, booster.num_trees())
    assert np.allclose(full, reference, rtol=0, atol=1e-12)
    assert not full[:, np.setdiff1d(np.arange(len(FEATURES)), forest.used)].any()
    # a list of per-feature rows reads the same as the (used, rows) array
    assert np.array_equal(forest.contributions(list(Xu))[1], contrib)


def test_the_models_hold_every_kind_of_split() -> None:
    """Numerical splits with each missing type and default side, and categorical ones."""
    kinds = set()
    for name in MODEL_PARAMS:
        for info in fitted(name).booster_.dump_model()["tree_info"]:
            stack = [info["tree_structure"]]
            while stack:
                node = stack.pop()
                if "split_feature" in node:
                    kinds.add((node["decision_type"], node["missing_type"], node["default_left"]))
                    stack += [node["left_child"], node["right_child"]]
    assert {("<=", "NaN", True), ("<=", "NaN", False), ("<=", "None", True)} <= kinds
    assert {k for k in kinds if k[1] == "Zero"}
    assert {k for k in kinds if k[0] == "=="}


def test_first_iterations_only_and_row_blocks() -> None:
    model = fit(n_estimators=60)
    forest = compile_forest(model.booster_, len(FEATURES), num_iteration=25)
    assert forest.num_iteration == len(forest.trees) == 25
    X = np.tile(probe(model), (60, 1))  # more rows than a block: several blocks, in parallel
    Xu = used_rows(forest, X)
    raw, _ = forest.contributions(Xu)
    assert np.array_equal(raw, model.booster_.predict(X, raw_score=True, num_iteration=25))
    leaves = forest.leaves(Xu)
    assert np.array_equal(leaves, model.booster_.predict(X, pred_leaf=True, num_iteration=25))


def test_single_leaf_trees_are_constants() -> None:
    model = fit(n=200, min_child_samples=500)  # nothing can be split
    booster = model.booster_
    assert {info["num_leaves"] for info in booster.dump_model()["tree_info"]} == {1}
    forest = compile_forest(booster, len(FEATURES))
    X = probe(model)
    assert len(forest.used) == 0
    raw, contrib = forest.contributions(np.empty((0, len(X))))
    assert np.array_equal(raw, booster.predict(X, raw_score=True))
    assert np.all(raw == forest.bias) and contrib.shape == (0, len(X))
    leaves = forest.leaves(np.empty((0, len(X))))
    assert np.array_equal(leaves, booster.predict(X, pred_leaf=True).reshape(leaves.shape))


def test_forest_pickles_and_checks_its_input() -> None:
    model = fitted("leaves-4")
    forest = compile_forest(model.booster_, len(FEATURES))
    Xu = used_rows(forest, probe(model))
    again = pickle.loads(pickle.dumps(forest))
    assert np.array_equal(again.contributions(Xu)[1], forest.contributions(Xu)[1])
    with pytest.raises(ValueError, match="float64 rows"):
        forest.contributions(Xu[:-1])
    with pytest.raises(ValueError, match="float64 rows"):
        forest.contributions(np.zeros(Xu.shape, dtype=np.float32))


@pytest.mark.parametrize(
    "params",
    [
        {"linear_tree": True},
        {"boosting_type": "rf", "bagging_freq": 1, "bagging_fraction": 0.8},
    ],
)
def test_boosters_it_cannot_reproduce_are_refused(params: dict) -> None:
    model = fit(n=500, n_estimators=3, **params)
    with pytest.raises(ValueError, match="not supported"):
        compile_forest(model.booster_, len(FEATURES))


# ------------------------------------------------------------------------------ bundle


def bundle_frame(n_leads: int, seed: int) -> pd.DataFrame:
    """Two snapshots per lead for train_all: numbers with NaNs and zeros, and a category
    whose levels include "other" and "unknown"."""
    rng = np.random.default_rng(seed)
    data = frame(2 * n_leads, seed).drop(columns="tier")
    tier = rng.choice(["a", "b", "c", "other", "unknown"], size=len(data))
    data["tier"] = pd.Categorical(tier)
    data["label"] = (
        rng.random(len(data))
        < 1 / (1 + np.exp(-(np.nan_to_num(data["signal"]) + (tier == "a") - 1.5)))
    ).astype(int)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 365, n_leads)), unit="D"
    )
    lead = np.repeat(np.arange(n_leads), 2)
    return data.assign(
        lead_id=[f"L{i:05d}" for i in lead],
        created_at=created[lead].astype("datetime64[us]"),
        as_of=(created[lead] + pd.to_timedelta(np.tile([1, 30], n_leads), unit="D")).astype(
            "datetime64[us]"
        ),
    )


@pytest.fixture(scope="module")
def bundle() -> ScoringBundle:
    bands = {
        "temperature": {
            "policy": "share",
            "bands": [{"name": "cold"}, {"name": "hot", "top_share": 0.2}],
        }
    }
    return train_all(
        bundle_frame(2500, seed=3),
        FEATURES,
        parse_split({"train": 0.6, "calibration": 0.2, "test": 0.2}),
        parse_train({"lightgbm": {"n_estimators": 150, "num_leaves": 7}, "serve": "lightgbm",
                     "tune": {"enabled": False}}),
        parse_calibration({"method": "isotonic"}),
        parse_bands(bands),
        90,
    ).bundle


def scoring_rows(seed: int) -> pd.DataFrame:
    """Rows to score: categories missing, unseen and as plain strings."""
    rows = bundle_frame(300, seed)[FEATURES].copy()
    tier = rows["tier"].astype(object)
    tier.iloc[::7] = None
    tier.iloc[3::11] = "never-seen"
    rows["tier"] = tier
    return rows


def test_score_frame_is_predict_proba_calibrated_to_the_last_bit(bundle: ScoringBundle) -> None:
    rows = scoring_rows(seed=8)
    scored = bundle.score_frame(rows)
    X = bundle.matrix(rows)
    expected = bundle.calibrator.predict(bundle.model.predict_proba(X)[:, 1])
    assert np.array_equal(scored["propensity"].to_numpy(), expected)
    assert scored["temperature"].tolist() == bundle.predict_frame(rows)["temperature"].tolist()
    assert scored["reasons"].tolist() == bundle.explain(rows)
    # the pyfunc's string input scores the same
    again = bundle.score_frame(model_input(rows, bundle.features))
    assert np.array_equal(again["propensity"].to_numpy(), expected)


def test_bundle_contributions_are_the_path_attribution(bundle: ScoringBundle) -> None:
    rows = scoring_rows(seed=9)
    out = bundle.contributions(rows)
    assert list(out.columns) == [*bundle.features, "bias"]
    X = bundle.matrix(rows)
    values = X.assign(tier=X["tier"].cat.codes.replace(-1, np.nan)).to_numpy(dtype=float)
    booster = bundle.model.booster_
    best = bundle.model.best_iteration_
    reference = path_contributions(booster, values, best)
    assert np.allclose(out.drop(columns="bias").to_numpy(), reference, rtol=0, atol=1e-12)
    raw = bundle.model.predict_proba(X, raw_score=True)
    assert np.allclose(out.sum(axis=1).to_numpy(), raw, rtol=0, atol=1e-9)
    # the compiled trees are cached in the bundle and survive its pickling
    assert "_forest" in bundle.metadata
    again = pickle.loads(pickle.dumps(bundle))
    pd.testing.assert_frame_equal(again.contributions(rows), out)


def test_bundle_round_trips_through_joblib_after_scoring(
    bundle: ScoringBundle, tmp_path: Path
) -> None:
    rows = scoring_rows(seed=10)
    before = bundle.score_frame(rows)
    joblib.dump(bundle, tmp_path / "bundle.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "bundle.joblib").score_frame(rows), before)


def old_matrix_column(values: pd.Series, levels: list[str]) -> pd.Categorical:
    """The category mapping `ScoringBundle.matrix` has always made, step by step."""
    fill = "unknown" if "unknown" in levels else "other"
    text = values.astype("object").where(values.notna(), fill).astype(str)
    text = text.where(text.isin(levels), "other" if "other" in levels else fill)
    return pd.Categorical(text.where(text.isin(levels), None), categories=levels)


@pytest.mark.parametrize(
    "levels",
    [
        ["a", "b", "other", "unknown"],
        ["a", "b", "other"],
        ["a", "b", "unknown"],
        ["a", "b"],
        ["1", "2.5", "b"],
    ],
)
def test_level_codes_map_categories_as_matrix_always_did(levels: list[str]) -> None:
    raw = ["a", "b", None, "zzz", "other", "unknown", np.nan, "1", "2.5", "b"]
    inputs = [
        pd.Series(raw, dtype=object),
        pd.Series(raw, dtype="string"),
        pd.Series(pd.Categorical(raw)),
        pd.Series(pd.Categorical(["b", None, "a", "zzz"], categories=["zzz", "b", "a", "q"])),
        pd.Series([1, 2.5, np.nan, 3.0], dtype=object),
        pd.Series([1.0, 2.5, np.nan]),
        pd.Series(pd.array([1, None, 3], dtype="Int64")),
    ]
    for values in inputs:
        expected = old_matrix_column(values, levels)
        got = pd.Categorical.from_codes(level_codes(values, levels), categories=levels)
        pd.testing.assert_extension_array_equal(got, expected)
