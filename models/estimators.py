"""The learned scorers: LightGBM with early stopping, and a logistic-regression baseline.

Both see the same feature frame. Categorical columns reach LightGBM as pandas `category`
columns whose category lists were fixed on the training data by `prepare_categories`;
the logistic regression one-hot encodes them itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.settings import InputError, InsufficientDataError, LightGBMSettings, SettingsError

__all__ = [
    "fit_lightgbm",
    "make_logreg",
    "prepare_categories",
    "refit_lightgbm",
    "unseen_categories",
]

MISSING_CATEGORY = "missing"


def _as_strings(values: pd.Series) -> pd.Series:
    """Non-null values as Python strings (so 1 and "1" are the same category), NaN kept."""
    obj = values.astype(object)
    return obj.where(obj.isna(), obj.astype(str))


def prepare_categories(
    frame: pd.DataFrame,
    categorical_cols: Sequence[str],
    categories: Mapping[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Cast `categorical_cols` to pandas `category` with fixed category lists.

    With `categories=None` (training) the lists are learned: the sorted distinct non-null
    values, as strings. With given lists (scoring) values never seen in training become
    NaN, i.e. "unknown", which both models handle without failing. Returns a new frame and
    the JSON-serialisable category lists.
    """
    missing = [c for c in categorical_cols if c not in frame.columns]
    if missing:
        raise InputError(f"frame is missing categorical column(s) {missing}")
    if categories is not None:
        absent = [c for c in categorical_cols if c not in categories]
        if absent:
            raise InputError(f"no category list for column(s) {absent}")
    out = frame.copy()
    learned: dict[str, list[str]] = {}
    for col in categorical_cols:
        values = _as_strings(out[col])
        if categories is None:
            cats = sorted(values.dropna().unique().tolist())
        else:
            cats = [str(c) for c in categories[col]]
        known = values.where(values.isin(cats))
        out[col] = pd.Categorical(known, categories=cats)
        learned[col] = cats
    return out, learned


def unseen_categories(
    frame: pd.DataFrame, categories: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """Per categorical column, the number of non-null values not in the training lists."""
    counts: dict[str, int] = {}
    for col, cats in categories.items():
        if col not in frame.columns:
            raise InputError(f"frame is missing categorical column `{col}`")
        values = _as_strings(frame[col])
        counts[col] = int((values.notna() & ~values.isin([str(c) for c in cats])).sum())
    return counts


def _binary_target(name: str, y: object, n_rows: int) -> np.ndarray:
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size != n_rows:
        raise InputError(f"`{name}` has {arr.size} values for {n_rows} rows")
    if np.isnan(arr).any() or not np.isin(arr, (0.0, 1.0)).all():
        raise InputError(f"`{name}` must contain only 0 and 1")
    return arr.astype(int)


def fit_lightgbm(
    X_train: pd.DataFrame,
    y_train: object,
    X_val: pd.DataFrame,
    y_val: object,
    params: LightGBMSettings,
    seed: int,
    *,
    early_stopping_rounds: int = 100,
    n_jobs: int = 1,
) -> lgb.LGBMClassifier:
    """Fit a binary LightGBM classifier, early-stopped on (X_val, y_val) by log-loss.

    Deterministic for a given seed, data and `n_jobs` (`deterministic=True`,
    `force_row_wise=True`, every seed derived from `seed`). Categorical features must be
    pandas `category` columns with the same categories in both frames (use
    `prepare_categories`). The model keeps the best iteration (`best_iteration_`).
    """
    if not isinstance(params, LightGBMSettings):
        raise SettingsError(f"`params` must be LightGBMSettings; got {type(params).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SettingsError(f"`train.seed` must be a non-negative integer; got {seed!r}")
    if isinstance(early_stopping_rounds, bool) or early_stopping_rounds < 1:
        raise SettingsError(
            f"`train.early_stopping_rounds` must be >= 1; got {early_stopping_rounds!r}"
        )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise SettingsError(f"`n_jobs` must be an integer >= 1; got {n_jobs!r}")
    if list(X_train.columns) != list(X_val.columns):
        raise InputError("`X_train` and `X_val` must have the same columns in the same order")
    for col in X_train.columns:
        tr, va = X_train[col].dtype, X_val[col].dtype
        if isinstance(tr, pd.CategoricalDtype) or isinstance(va, pd.CategoricalDtype):
            if not (
                isinstance(tr, pd.CategoricalDtype)
                and isinstance(va, pd.CategoricalDtype)
                and list(tr.categories) == list(va.categories)
            ):
                raise InputError(
                    f"categorical column `{col}` must have the same categories in training and "
                    "validation (use prepare_categories)"
                )
        elif not (pd.api.types.is_numeric_dtype(tr) or pd.api.types.is_bool_dtype(tr)):
            raise InputError(
                f"column `{col}` has dtype {tr}; LightGBM needs numeric or category columns"
            )
    ytr = _binary_target("y_train", y_train, len(X_train))
    yva = _binary_target("y_val", y_val, len(X_val))
    for name, yy in (("training", ytr), ("validation", yva)):
        if yy.sum() == 0 or yy.sum() == yy.size:
            raise InsufficientDataError(
                f"LightGBM {name} data needs both outcomes; got {int(yy.sum())} positives "
                f"in {yy.size} rows"
            )
    model = _classifier(params, seed, n_jobs)
    model.fit(
        X_train,
        ytr,
        eval_X=X_val,
        eval_y=yva,
        eval_metric="binary_logloss",
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)
        ],
    )
    return model


def refit_lightgbm(
    X: pd.DataFrame, y: object, params: LightGBMSettings, seed: int, n_estimators: int,
    *, n_jobs: int = 1, sample_weight: np.ndarray | None = None,
) -> lgb.LGBMClassifier:
    """Fit LightGBM with a fixed number of trees and no early stopping: the refit on every
    training row once early stopping (on a validation slice) has found the tree count.
    `sample_weight`: row weights (e.g. `models.sampling`'s inverse inclusion probabilities)."""
    yy = _binary_target("y", y, len(X))
    if yy.sum() == 0 or yy.sum() == yy.size:
        raise InsufficientDataError(
            f"LightGBM training data needs both outcomes; got {int(yy.sum())} positives in "
            f"{yy.size} rows"
        )
    model = _classifier(replace(params, n_estimators=int(n_estimators)), seed, n_jobs)
    model.fit(X, yy, sample_weight=sample_weight)
    return model


def _classifier(params: LightGBMSettings, seed: int, n_jobs: int) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(
        objective="binary",
        random_state=int(seed),
        n_jobs=n_jobs,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
        **params.to_lgbm_kwargs(),
    )


def make_logreg(
    numeric_cols: Sequence[str],
    categorical_cols: Sequence[str],
    C: float,
    seed: int,
    *,
    min_frequency: int = 20,
    max_iter: int = 5000,
) -> Pipeline:
    """Unfitted L2 logistic-regression pipeline on the same features as LightGBM.

    Numerics: median imputation plus a missing-indicator column, then standard scaling.
    Categoricals: missing -> "missing", then one-hot; categories seen fewer than
    `min_frequency` times are pooled into one "infrequent" column, and values unseen in
    training fall into that pool (or, if there is none, encode as all zeros).
    """
    if isinstance(C, bool) or not isinstance(C, int | float) or not C > 0:
        raise SettingsError(f"`train.logreg.C` must be > 0; got {C!r}")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise SettingsError(f"`train.logreg.min_frequency` must be >= 1; got {min_frequency!r}")
    numeric, categorical = list(numeric_cols), list(categorical_cols)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise SettingsError(f"columns {overlap} are listed as both numeric and categorical")
    if not numeric and not categorical:
        raise SettingsError("make_logreg needs at least one numeric or categorical column")
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        # a column never observed in training (a field this export lacks)
                        # is kept as a constant: same columns at scoring, no warning
                        ("impute", SimpleImputer(strategy="median", add_indicator=True,
                                                 keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                min_frequency=min_frequency,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("features", ColumnTransformer(transformers, remainder="drop")),
            (
                "model",
                LogisticRegression(C=float(C), l1_ratio=0.0, max_iter=max_iter, random_state=seed),
            ),
        ]
    )
