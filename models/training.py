"""Fit every scorer the same way on one feature frame: time split, LightGBM (settings tuned
and trees early-stopped on the most recent training leads, then refitted on every training
row; `models.tuning`), logistic regression, the manual-rules baseline; calibrate each on the
calibration split; fit band cutoffs on the calibrated LightGBM probabilities. The test split
is only scored: no fitted parameter depends on its labels.

Optional feature columns (`optional_features`, e.g. the learned-decay `<group>_decayed_hl`)
are kept only when they help the served model on the validation leads (`keep_optional`).

Pure: frames and typed settings in, fitted objects and a predictions frame out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.pipeline import Pipeline

from models.bands import FittedBands, estimate_leads_per_week, fit_bands
from models.bundle import ScoringBundle
from models.calibration import ScoreCalibrator, fit_calibrator
from models.estimators import fit_lightgbm, make_logreg, prepare_categories, refit_lightgbm
from models.linear import LinearContributions
from models.metrics import clustered_standard_error, log_loss, row_log_loss
from models.sampling import sample_training_leads
from models.settings import (
    BandSet,
    CalibrationSettings,
    InsufficientDataError,
    SplitSettings,
    TrainSettings,
)
from models.split import split_leads, validation_slice
from models.subscores import fit_subscores
from models.tuning import refit_rounds, settings_dict, tune_lightgbm

log = logging.getLogger(__name__)
SCORERS = ("served", "lightgbm", "lightgbm_basic", "logreg", "rules")


@dataclass
class TrainResult:
    """Fitted scorers and their scores on every snapshot."""

    bundle: ScoringBundle
    logreg: Pipeline
    calibrators: dict[str, ScoreCalibrator]
    predictions: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    # sub-score name -> (LightGBM on that side's features, the features); calibrators in
    # `calibrators` under the same name (models.subscores)
    submodels: dict[str, tuple[lgb.LGBMClassifier, list[str]]] = field(default_factory=dict)


def categorical_columns(frame: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Feature columns that are categorical (category, string or object dtype)."""
    return [
        c
        for c in features
        if isinstance(frame[c].dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(frame[c])
        or frame[c].dtype == object
    ]


def choose_blend(y_val: np.ndarray, z_trees: np.ndarray, z_linear: np.ndarray,
                 weights: Sequence[float] = tuple(i / 10 for i in range(11)),
                 serve: str = "auto") -> dict[str, Any]:
    """The served scorer from validation log-loss: LightGBM (weight 1), the logistic
    regression (weight 0), or the best blend `w * trees + (1 - w) * linear` in log-odds in
    between. A tie keeps the simpler candidate (LightGBM, then the logistic regression).
    Returns `served`, `weight`, `validation_log_loss` per candidate and a one-line `why`."""
    y = np.asarray(y_val)
    losses = {float(w): log_loss(y, expit(w * z_trees + (1 - w) * z_linear)) for w in weights}
    inner = {w: v for w, v in losses.items() if 0.0 < w < 1.0}
    blend_w = min(inner, key=lambda w: (inner[w], -w)) if inner else 1.0
    table = {"lightgbm": losses.get(1.0, float("inf")), "logreg": losses.get(0.0, float("inf")),
             "blend": inner.get(blend_w, float("inf"))}
    served = min(("lightgbm", "logreg", "blend"), key=lambda c: table[c]) if serve == "auto" \
        else serve
    weight = {"lightgbm": 1.0, "logreg": 0.0, "blend": blend_w}[served]
    others = ", ".join(f"{c} {table[c]:.5f}" for c in table if c != served)
    return {
        "served": served,
        "weight": weight,
        "validation_log_loss": {c: round(v, 6) for c, v in table.items()},
        "blend_weight": blend_w,
        "why": (f"{served} has the lowest log-loss on the validation leads "
                if serve == "auto" else f"{served} is set by `train.serve`; validation log-loss ")
               + f"({table[served]:.5f}; {others})"
               + (f"; LightGBM weight {blend_w:g} in log-odds" if served == "blend" else ""),
    }


def check_positives(y: np.ndarray, parts: np.ndarray, settings: TrainSettings) -> dict[str, int]:
    """Conversions per split; InsufficientDataError when too few to fit or calibrate."""
    counts = {part: int(y[parts == part].sum()) for part in ("train", "calibration", "test")}
    if counts["train"] < settings.min_positives:
        raise InsufficientDataError(
            f"the training split has {counts['train']} conversions; at least "
            f"{settings.min_positives} are needed (`train.min_positives`). Use more history, a "
            "longer `label.horizon_days`, or a larger `split.train`."
        )
    if counts["calibration"] < settings.min_calibration_positives:
        raise InsufficientDataError(
            f"the calibration split has {counts['calibration']} conversions; at least "
            f"{settings.min_calibration_positives} are needed "
            "(`train.min_calibration_positives`). Use more history or a larger `split.calibration`."
        )
    return counts


def keep_optional(loss_without: np.ndarray, loss_with: np.ndarray,
                  leads: np.ndarray) -> dict[str, Any]:
    """The one-standard-error rule on the validation leads: optional columns are kept only
    when the served model's validation log-loss with them is lower than without by more than
    one standard error of the paired difference (clustered by lead: a lead's snapshots move
    together). A column that carries nothing lowers the log-loss by luck about as often as
    it raises it; one standard error keeps it out about five times in six and costs a real
    gain of a few standard errors little.
    `loss_*`: each validation row's log-loss; `leads`: each row's lead."""
    diff = np.asarray(loss_with, dtype=np.float64) - np.asarray(loss_without, dtype=np.float64)
    gain = -float(diff.mean()) if diff.size else 0.0
    se = clustered_standard_error(diff, leads)
    return {
        "validation_log_loss_without": round(float(np.mean(loss_without)), 6),
        "validation_log_loss_with": round(float(np.mean(loss_with)), 6),
        "gain": round(gain, 6),
        "standard_error": round(se, 6),
        "kept": bool(gain > se),
        "rule": "kept when the served model's validation log-loss drops by more than one "
                "lead-clustered standard error of the paired difference",
    }


def train_all(
    frame: pd.DataFrame,
    features: Sequence[str],
    split: SplitSettings,
    train: TrainSettings,
    calibration: CalibrationSettings,
    bands: Mapping[str, BandSet],
    horizon_days: int,
    rule_points: pd.Series | None = None,
    groups: Mapping[str, str] | None = None,
    baseline_features: Sequence[str] | None = None,
    subscores: Mapping[str, Sequence[str]] | None = None,
    optional_features: Sequence[str] | None = None,
) -> TrainResult:
    """Fit LightGBM, logistic regression and (when `rule_points` is given, aligned with
    `frame`) the rules baseline; calibrate each on the calibration split; fit bands.

    With `baseline_features` (a strict, non-empty subset of `features`), a second LightGBM
    with the same settings is fitted on that subset alone and scored as `lightgbm_basic`:
    the yardstick that shows what the richer features add.

    With `subscores` (name -> a strict subset of `features`, e.g. models.subscores'
    fit and engagement sides), each gets its own LightGBM with the same settings, calibrated
    like the others and scored as `p_<name>`: sub-scores that explain, never serve.

    With `optional_features` (columns of `features`), tuning sees the other features only;
    the served scorer is chosen on the validation leads without them and, with the tuned
    settings, one more early-stopped LightGBM and logistic regression, with them. They stay
    when `keep_optional` says so (`summary["optional_features"]`), else every model is
    fitted without them. Only training-split rows are read for this: never calibration or
    test labels. (Tuned without them, the comparison leans towards leaving them out.)

    `frame` holds `lead_id`, `created_at` (may be absent: stratified split), `as_of`,
    `label` and the feature columns.
    """
    features = list(features)
    optional = [c for c in (optional_features or ()) if c in features]
    base = [c for c in features if c not in optional]
    y = frame["label"].to_numpy(dtype=np.int8)
    result = split_leads(frame, "label", split.fractions, seed=train.seed)
    parts = result.parts.to_numpy()
    # At scale the training split is a lead sample, weighted by 1 / inclusion probability
    # (models.sampling; off by default). Calibration and test splits are never sampled.
    sample = sample_training_leads(frame, parts, train.sample)
    if sample.sampled:
        keep = sample.keep
        frame, parts, y = frame.loc[keep], parts[keep], y[keep]
        rule_points = None if rule_points is None else rule_points.loc[keep]
        log.info("train.sample: %s", sample.summary["why"])
    weight = sample.weight[sample.keep]
    counts = check_positives(y, parts, train)
    cats = categorical_columns(frame, features)
    numeric = [c for c in features if c not in cats]
    X_all, categories = prepare_categories(frame.loc[parts == "train", features], cats)
    X_all = pd.concat(
        [X_all, prepare_categories(frame.loc[parts != "train", features], cats, categories)[0]]
    ).loc[frame.index]
    for col in numeric:
        X_all[col] = X_all[col].astype("float64")
    is_train, is_cal = parts == "train", parts == "calibration"

    train_rows = frame.loc[is_train]
    val = validation_slice(train_rows, train.validation_fraction, seed=train.seed).to_numpy()
    X_tr, y_tr = X_all.loc[is_train], y[is_train]
    w_tr = weight[is_train] if sample.sampled else None

    # Tuning, early stopping and the choice of settings see the training split only: the
    # older training leads fit, the most recent ones validate (never calibration or test).
    tuned = tune_lightgbm(X_tr.loc[~val, base], y_tr[~val], X_tr.loc[val, base],
                          y_tr[val], train.lightgbm, train.tune, train.seed,
                          early_stopping_rounds=train.early_stopping_rounds,
                          groups=train_rows.loc[val, "lead_id"].to_numpy())
    n_fit = int((~val).sum())

    def refitted(columns: Sequence[str], best_iteration: int) -> lgb.LGBMClassifier:
        """The early-stopped tree count, refitted on every training row (validation too)."""
        rounds = refit_rounds(best_iteration, n_fit, len(val))
        return refit_lightgbm(X_tr[list(columns)], y_tr, tuned.params, train.seed, rounds,
                              sample_weight=w_tr)

    def early_stopped(columns: Sequence[str]) -> lgb.LGBMClassifier:
        X = X_tr[list(columns)]
        return fit_lightgbm(X.loc[~val], y_tr[~val], X.loc[val], y_tr[val], tuned.params,
                            train.seed, early_stopping_rounds=train.early_stopping_rounds)

    def tree_count(model: lgb.LGBMClassifier) -> int:
        return int(model.best_iteration_ or tuned.params.n_estimators)

    def new_logreg(columns: Sequence[str]) -> Pipeline:
        return make_logreg([c for c in numeric if c in columns], [c for c in cats if c in columns],
                           train.logreg.C, train.seed, min_frequency=train.logreg.min_frequency,
                           max_iter=train.logreg.max_iter)

    def served_on_validation(columns: Sequence[str]) -> tuple[dict[str, Any], np.ndarray, int]:
        """The served scorer's choice with `columns` (LightGBM, the logistic regression or
        their blend in log-odds, whichever has the lowest log-loss on the validation leads,
        fitted without them), each validation row's log-loss, LightGBM's tree count."""
        X_val = X_tr.loc[val, list(columns)]
        trees = early_stopped(columns)
        z_trees = trees.predict_proba(X_val, raw_score=True)
        z_linear = new_logreg(columns).fit(X_tr.loc[~val], y_tr[~val]).decision_function(X_val)
        choice = choose_blend(y_tr[val], z_trees, z_linear, serve=train.serve)
        w = choice["weight"]
        return (choice, row_log_loss(y_tr[val], expit(w * z_trees + (1 - w) * z_linear)),
                tree_count(trees))

    choice, losses, _ = served_on_validation(base)
    best_iteration, check = tuned.best_iteration, None
    if optional:
        choice_with, losses_with, rounds_with = served_on_validation(features)
        check = {"columns": optional, **keep_optional(
            losses, losses_with, train_rows.loc[val, "lead_id"].to_numpy())}
        log.info("optional features %s: %s (validation log-loss %.5f without, %.5f with)",
                 ", ".join(optional), "kept" if check["kept"] else "dropped",
                 check["validation_log_loss_without"], check["validation_log_loss_with"])
        if check["kept"]:
            choice, best_iteration = choice_with, rounds_with
        else:
            features = base
            groups = {k: v for k, v in (groups or {}).items() if k not in optional}
    cats, numeric = [c for c in cats if c in features], [c for c in numeric if c in features]
    categories = {c: categories[c] for c in cats}
    X_all, X_tr = X_all[features], X_tr[features]

    lgbm = refitted(features, best_iteration)
    logreg = new_logreg(features)
    step = logreg.steps[-1][0]  # the estimator step takes the sample weights
    logreg.fit(X_tr, y_tr, **({} if w_tr is None else {f"{step}__sample_weight": w_tr}))
    linear = LinearContributions.from_pipeline(logreg, features)
    w = choice["weight"]
    z_served = w * lgbm.predict_proba(X_all, raw_score=True) + (1 - w) * \
        linear.contributions(X_all)[0]

    raw = {"served": expit(z_served),
           "lightgbm": lgbm.predict_proba(X_all)[:, 1], "logreg": logreg.predict_proba(X_all)[:, 1]}
    kinds = {"served": "probability", "lightgbm": "probability", "logreg": "probability"}
    basic = [c for c in (baseline_features or ()) if c in features]
    if basic and len(basic) < len(features):
        basic_model = refitted(basic, tree_count(early_stopped(basic)))
        raw["lightgbm_basic"] = basic_model.predict_proba(X_all[basic])[:, 1]
        kinds["lightgbm_basic"] = "probability"
    submodels: dict[str, tuple[lgb.LGBMClassifier, list[str]]] = {}
    for name, side in (subscores or {}).items():
        cols = [c for c in side if c in features]
        if cols and len(cols) < len(features):
            sub = refitted(cols, tree_count(early_stopped(cols)))
            raw[name] = sub.predict_proba(X_all[cols])[:, 1]
            kinds[name] = "probability"
            submodels[name] = (sub, cols)
    if rule_points is not None:
        raw["rules"] = rule_points.to_numpy(dtype="float64")
        kinds["rules"] = "score"
    cal_leads = frame.loc[is_cal, "lead_id"].astype(str).to_numpy()
    calibrators = {
        name: fit_calibrator(
            scores[is_cal], y[is_cal], calibration, seed=train.seed, input_kind=kinds[name],
            groups=cal_leads, sample_weight=weight[is_cal] if sample.sampled else None,
        )
        for name, scores in raw.items()
    }
    calibrated = {name: calibrators[name].predict(scores) for name, scores in raw.items()}

    cal_rows = frame.loc[is_cal]
    per_week = (
        estimate_leads_per_week(cal_rows["created_at"], cal_rows["lead_id"])
        if "created_at" in frame.columns and cal_rows["created_at"].notna().all()
        else None
    )
    fitted: dict[str, FittedBands] = {
        name: fit_bands(
            calibrated["served"][is_cal], y[is_cal], band_set, leads_per_week=per_week
        )
        for name, band_set in bands.items()
    }
    for name, fb in fitted.items():
        for message in fb.messages:
            log.warning("bands.%s: %s", name, message)

    bundle = ScoringBundle(
        features=features,
        categories=categories,
        model=lgbm,
        calibrator=calibrators["served"],
        bands=fitted,
        horizon_days=horizon_days,
        groups=dict(groups or {}),
        metadata={"best_iteration": best_iteration, "n_trees": int(lgbm.n_estimators),
                  "lightgbm": settings_dict(tuned.params), "served": choice["served"],
                  "sample": sample.summary},
        linear=linear if w < 1 else None,
        blend_weight=float(w),
        subscores=fit_subscores(submodels, calibrators,
                                {n: calibrated[n][is_cal] for n in submodels}),
    )
    keep = [c for c in ("lead_id", "as_of", "created_at", "age_days") if c in frame.columns]
    predictions = frame.loc[:, keep].copy()
    predictions["split"] = parts
    predictions["label"] = y
    predictions["weight"] = weight
    for name in raw:
        predictions[f"raw_{name}"] = raw[name]
        predictions[f"p_{name}"] = calibrated[name]
    summary = {
        "split": {
            "method": result.method,
            "warning": result.warning,
            "rows": {part: int((parts == part).sum()) for part in ("train", "calibration",
                                                                   "test")},
            "positives": counts,
            "leads": {
                part: int(frame.loc[parts == part, "lead_id"].nunique())
                for part in ("train", "calibration", "test")
            },
        },
        "features": {"n": len(features), "categorical": cats,
                     "basic": basic if "lightgbm_basic" in raw else []},
        "lightgbm": {
            "best_iteration": bundle.metadata["best_iteration"],
            "n_trees": bundle.metadata["n_trees"],
            "validation_rows": int(val.sum()),
            "settings": settings_dict(tuned.params),
        },
        "tuning": tuned.summary(),
        "served": choice,
        "calibration": {name: c.summary() for name, c in calibrators.items()},
        "bands": {name: fb.to_dict() for name, fb in fitted.items()},
        "leads_per_week": per_week,
        "subscores": {name: {"features": len(cols)} for name, (_, cols) in submodels.items()},
        "sample": sample.summary,
    }
    if check is not None:
        summary["optional_features"] = check
    return TrainResult(
        bundle=bundle,
        logreg=logreg,
        calibrators=calibrators,
        predictions=predictions,
        summary=summary,
        submodels=submodels,
    )
