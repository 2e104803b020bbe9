"""Probability calibration of an already-fitted scorer, on the calibration split only.

The calibrator maps a raw score (a model's probability, or manual rule points) to a
calibrated probability. Methods:

- `sigmoid`: Platt scaling, a logistic regression on the logit of the raw probability
  (on the standardised raw score for `input_kind="score"`).
- `isotonic`: a monotone step function, clipped to [1e-4, 1 - 1e-4] so that no lead is
  ever "certain".
- `auto`: both are cross-fitted (stratified k-fold within the calibration split); the one
  with the lower out-of-fold log-loss wins (sigmoid on ties) and is refitted on the whole
  calibration split.

`ece_before_` is the ECE of the raw scores on the calibration split; `ece_after_` is the
ECE of the chosen method's *out-of-fold* predictions, so it is honest. The fitted object
holds only sklearn estimators and numbers, so it pickles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from models import metrics
from models.settings import CalibrationSettings, InputError, InsufficientDataError, SettingsError

__all__ = ["METHODS", "ScoreCalibrator", "calibrate_model", "fit_calibrator"]

METHODS: tuple[str, str] = ("isotonic", "sigmoid")
_RAW_EPS = 1e-6  # clip of raw probabilities before the logit


class ScoreCalibrator(BaseEstimator):
    """Maps raw scores to calibrated probabilities; `predict(raw) -> calibrated`.

    Parameters
    ----------
    method : "isotonic" | "sigmoid" | "auto"
    n_folds : folds of the cross-fit used for `auto` and for `ece_after_`.
    random_state : seed of the fold shuffling.
    input_kind : "probability" (raw scores in [0, 1]) or "score" (any real score, e.g.
        rule points; `ece_before_` is then NaN).
    clip : calibrated probabilities are kept in [clip, 1 - clip].

    Fitted attributes: `method_`, `ece_before_`, `ece_after_`, `cv_log_loss_` (per method
    tried), `n_`, `positives_`, `estimator_` (the refitted sklearn calibrator).
    """

    def __init__(
        self,
        method: str = "auto",
        n_folds: int = 5,
        random_state: int | None = 0,
        input_kind: str = "probability",
        clip: float = 1e-4,
    ) -> None:
        self.method = method
        self.n_folds = n_folds
        self.random_state = random_state
        self.input_kind = input_kind
        self.clip = clip

    def __sklearn_tags__(self):  # noqa: D105 - sklearn hook
        # Like IsotonicRegression: one raw score per row (1-d, or one column), binary y.
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.target_tags.required = True
        return tags

    # -- checks --------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.method not in (*METHODS, "auto"):
            raise SettingsError(
                f"`calibration.method` must be one of isotonic, sigmoid, auto; got {self.method!r}"
            )
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise SettingsError(
                f"`calibration.n_folds` must be an integer >= 2; got {self.n_folds!r}"
            )
        if self.input_kind not in ("probability", "score"):
            raise SettingsError(
                f"`input_kind` must be 'probability' or 'score'; got {self.input_kind!r}"
            )
        if not isinstance(self.clip, int | float) or not 0 < self.clip < 0.5:
            raise SettingsError(f"`clip` must be in (0, 0.5); got {self.clip!r}")

    def _raw(self, X: ArrayLike) -> np.ndarray:
        arr = np.asarray(X, dtype=float)
        if arr.ndim == 2:
            if arr.shape[1] != 1:
                raise InputError(
                    f"ScoreCalibrator takes one raw score per row; got {arr.shape[1]} columns"
                )
            arr = arr[:, 0]
        elif arr.ndim != 1:
            raise InputError(f"raw scores must be 1-d or one column; got shape {arr.shape}")
        if arr.size == 0:
            raise InputError("raw scores are empty")
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise InputError(f"raw scores must be finite; got {bad} NaN/inf")
        if self.input_kind == "probability" and ((arr < 0).any() or (arr > 1).any()):
            raise InputError(
                f"raw probabilities must be in [0, 1]; got range [{arr.min():g}, {arr.max():g}] "
                "(use input_kind='score' for points)"
            )
        return arr

    def _feature(self, raw: np.ndarray) -> np.ndarray:
        """The 1-d input of the sklearn calibrators (before standardisation)."""
        if self.input_kind == "probability":
            q = np.clip(raw, _RAW_EPS, 1 - _RAW_EPS)
            return np.log(q) - np.log1p(-q)
        return raw

    # -- fitting -------------------------------------------------------------------
    def _fit_one(self, method: str, t: np.ndarray, y: np.ndarray,
                 w: np.ndarray | None = None) -> Any:
        if method == "isotonic":
            return IsotonicRegression(
                y_min=self.clip, y_max=1 - self.clip, increasing=True, out_of_bounds="clip"
            ).fit(t, y, sample_weight=w)
        # Nearly unpenalised Platt scaling; the tiny penalty only keeps separable data finite.
        return LogisticRegression(C=1e4, l1_ratio=0.0, max_iter=1000).fit(
            t.reshape(-1, 1), y, sample_weight=w)

    def _predict_one(self, est: Any, t: np.ndarray) -> np.ndarray:
        if isinstance(est, IsotonicRegression):
            out = est.predict(t)
        else:
            out = est.predict_proba(t.reshape(-1, 1))[:, 1]
        return np.clip(out, self.clip, 1 - self.clip)

    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> ScoreCalibrator:
        """Fit on the calibration split: X = raw scores (1-d or one column), y = 0/1.

        `groups` (one lead id per row) keeps all snapshots of a lead in one cross-fitting
        fold, so the method choice and `ece_after_` are not flattered by a lead's other
        snapshots. `sample_weight` (e.g. `models.sampling`'s inverse inclusion
        probabilities) weights the fits and the out-of-fold log-loss that picks the method,
        so the calibrated probabilities are about the weighted population."""
        self._check_params()
        raw = self._raw(X)
        yy = np.asarray(y, dtype=float).ravel()
        if yy.size != raw.size:
            raise InputError(f"`y` has {yy.size} values for {raw.size} scores")
        if np.isnan(yy).any() or not np.isin(yy, (0.0, 1.0)).all():
            raise InputError("`y` must contain only 0 and 1")
        yy = yy.astype(int)
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=float).ravel()
            if w.size != yy.size or not np.isfinite(w).all() or (w <= 0).any():
                raise InputError(f"`sample_weight` must hold {yy.size} finite values > 0")
        positives, negatives = int(yy.sum()), int(yy.size - yy.sum())
        if min(positives, negatives) < 2:
            raise InsufficientDataError(
                f"calibration needs at least 2 positives and 2 negatives; got {positives} "
                f"positives and {negatives} negatives"
            )
        t = self._feature(raw)
        self.center_ = float(t.mean())
        self.scale_ = float(t.std()) or 1.0
        z = (t - self.center_) / self.scale_

        n_splits = min(self.n_folds, positives, negatives)
        if groups is None:
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True,
                                    random_state=self.random_state)
            splits = folds.split(z.reshape(-1, 1), yy)
        else:
            g = np.asarray(groups)
            if g.size != yy.size:
                raise InputError(f"`groups` has {g.size} values for {yy.size} scores")
            n_splits = min(n_splits, len(pd.unique(g)))
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True,
                                         random_state=self.random_state)
            splits = folds.split(z.reshape(-1, 1), yy, g)
        candidates = list(METHODS) if self.method == "auto" else [self.method]
        oof = {m: np.empty(yy.size) for m in candidates}
        for train_idx, test_idx in splits:
            for m in candidates:
                est = self._fit_one(m, z[train_idx], yy[train_idx],
                                    None if w is None else w[train_idx])
                oof[m][test_idx] = self._predict_one(est, z[test_idx])
        self.cv_log_loss_ = {m: _weighted_log_loss(yy, oof[m], w) for m in candidates}
        # Sigmoid first: on an exact tie the smoother method wins.
        order = sorted(candidates, key=lambda m: (self.cv_log_loss_[m], m != "sigmoid"))
        self.method_ = order[0]
        self.ece_before_ = (
            metrics.ece(yy, raw, strategy="quantile")
            if self.input_kind == "probability" else float("nan")
        )
        self.ece_after_ = metrics.ece(yy, oof[self.method_], strategy="quantile")
        self.estimator_ = self._fit_one(self.method_, z, yy, w)
        self.n_ = int(yy.size)
        self.positives_ = positives
        self.n_features_in_ = 1
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Calibrated probabilities, in [clip, 1 - clip], one per raw score."""
        check_is_fitted(self, "estimator_")
        raw = self._raw(X)
        z = (self._feature(raw) - self.center_) / self.scale_
        return self._predict_one(self.estimator_, z)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description of the fit, for logging."""
        check_is_fitted(self, "estimator_")
        return {
            "method": self.method_,
            "requested_method": self.method,
            "input_kind": self.input_kind,
            "ece_before": self.ece_before_,
            "ece_after": self.ece_after_,
            "cv_log_loss": dict(self.cv_log_loss_),
            "n": self.n_,
            "positives": self.positives_,
        }


def _weighted_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    if w is None:
        return metrics.log_loss(y, p)
    q = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.average(y * np.log(q) + (1 - y) * np.log1p(-q), weights=w))


def fit_calibrator(
    raw_cal: ArrayLike,
    y_cal: ArrayLike,
    settings: CalibrationSettings | None = None,
    seed: int = 0,
    input_kind: str = "probability",
    groups: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> ScoreCalibrator:
    """Fit a `ScoreCalibrator` on the calibration split's raw scores and outcomes
    (`groups`: the lead of each row, for lead-grouped cross-fitting; `sample_weight`: row
    weights, e.g. from `models.sampling`)."""
    s = settings or CalibrationSettings()
    return ScoreCalibrator(
        method=s.method, n_folds=s.n_folds, random_state=seed, input_kind=input_kind
    ).fit(raw_cal, y_cal, groups=groups, sample_weight=sample_weight)


def calibrate_model(
    model: Any,
    X_cal: Any,
    y_cal: ArrayLike,
    settings: CalibrationSettings | None = None,
    seed: int = 0,
) -> ScoreCalibrator:
    """Calibrate an already-fitted binary classifier on (X_cal, y_cal).

    The model is only used through `predict_proba(X_cal)[:, 1]`; it is never refitted.
    """
    if not hasattr(model, "predict_proba"):
        raise InputError(f"{type(model).__name__} has no predict_proba")
    raw = np.asarray(model.predict_proba(X_cal))[:, 1]
    return fit_calibrator(raw, y_cal, settings=settings, seed=seed)
