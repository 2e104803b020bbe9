"""Metrics for probability scores, and the curve data behind the evaluation plots.

Every function takes `y` (0/1 outcomes) and `p` (scores, one per row) and returns plain
floats or a new DataFrame. Probability metrics (log-loss, Brier, ECE) only make sense on
probabilities: a scorer that is not one (e.g. the manual point rules) is first calibrated
on the calibration split with `models.calibration.fit_calibrator(..., input_kind="score")`,
exactly like the models, so that every scorer is evaluated the same way on the test split.

Choices:
- `ece` reported by `evaluate_scores` is the equal-mass (quantile) variant with 10 bins:
  equal-width bins on [0, 1] put most leads of a low-base-rate problem into the first bin,
  where a 3x over-prediction for the bottom decile cancels out. `ece_uniform` keeps the
  equal-width variant for comparison.
- `calibration_slope` / `calibration_intercept`: the logistic recalibration
  `logit P(y) = a + b logit(p)`; a calibrated score has b = 1, a = 0 (b < 1: too extreme).
- Intervals of metrics over snapshots resample whole leads (`lead_bootstrap`): the
  snapshots of one lead are not independent. Two scorers on the same rows are compared by
  the paired difference of a metric over the same lead resamples (`paired_difference`).
- `lift_at` / `capture_at` contact the top `k` share of rows, `ceil(k * n)` of them. Rows
  tied with the last contacted score are credited with the tied group's average outcome,
  so the result does not depend on row order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from models.settings import InputError, InsufficientDataError

__all__ = [
    "METRIC_KEYS",
    "brier",
    "calibration_frame",
    "calibration_slope_intercept",
    "capture_at",
    "ece",
    "evaluate_scores",
    "gains_frame",
    "lead_bootstrap",
    "paired_difference",
    "ece_null",
    "lift_at",
    "log_loss",
    "pr_auc",
    "pr_curve_frame",
    "roc_auc",
    "roc_curve_frame",
    "wilson_interval",
]

#: The metric keys of `evaluate_scores`, besides `base_rate`, `n` and `positives`.
METRIC_KEYS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "ece_uniform",
    "calibration_slope",
    "calibration_intercept",
    "lift_at_10",
    "capture_at_10",
    "lift_at_20",
    "capture_at_20",
)

BinStrategy = Literal["uniform", "quantile"]


# --------------------------------------------------------------------------- checks


def _as_arrays(
    y: ArrayLike, p: ArrayLike, *, probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    yy = np.asarray(y, dtype=float).ravel()
    pp = np.asarray(p, dtype=float).ravel()
    if yy.shape != pp.shape:
        raise InputError(f"`y` and `p` must have the same length; got {yy.size} and {pp.size}")
    if yy.size == 0:
        raise InsufficientDataError("metrics need at least one row; got 0")
    if np.isnan(yy).any() or not np.isin(yy, (0.0, 1.0)).all():
        raise InputError("`y` must contain only 0 and 1")
    if not np.isfinite(pp).all():
        raise InputError(f"`p` must be finite; got {int((~np.isfinite(pp)).sum())} NaN/inf")
    if probabilities and ((pp < 0).any() or (pp > 1).any()):
        raise InputError(
            f"`p` must be probabilities in [0, 1]; got range [{pp.min():g}, {pp.max():g}] "
            "(calibrate non-probability scores first)"
        )
    return yy.astype(int), pp


def _both_classes(y: np.ndarray, metric: str) -> None:
    pos = int(y.sum())
    if pos == 0 or pos == y.size:
        raise InsufficientDataError(
            f"{metric} needs both outcomes; got {pos} positives in {y.size} rows"
        )


# --------------------------------------------------------------------------- scalars


def roc_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half)."""
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "roc_auc")
    return float(skm.roc_auc_score(yy, pp))


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the precision-recall curve, as average precision (no interpolation)."""
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "pr_auc")
    return float(skm.average_precision_score(yy, pp))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood; probabilities are clipped to [eps, 1 - eps]."""
    yy, pp = _as_arrays(y, p, probabilities=True)
    pp = np.clip(pp, eps, 1 - eps)
    return float(-np.mean(yy * np.log(pp) + (1 - yy) * np.log1p(-pp)))


def row_log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> np.ndarray:
    """Each row's negative log-likelihood (`log_loss` is their mean)."""
    yy = np.asarray(y, dtype=np.float64)
    pp = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return -(yy * np.log(pp) + (1 - yy) * np.log1p(-pp))


def clustered_standard_error(values: ArrayLike, groups: ArrayLike | None = None) -> float:
    """The standard error of the mean of `values` when rows of one group (a lead's
    snapshots) move together: the sandwich estimate over group sums of the centred values,
    with the small-sample factor g / (g - 1). Without `groups` every row is its own group.
    Infinite with fewer than two groups."""
    v = np.asarray(values, dtype=np.float64).ravel()
    codes = (np.arange(v.size) if groups is None
             else pd.factorize(np.asarray(groups).ravel())[0])
    if codes.size != v.size:
        raise InputError(f"`groups` has {codes.size} values for {v.size} rows")
    n_groups = int(codes.max()) + 1 if codes.size else 0
    if n_groups < 2:
        return float("inf")
    per_group = np.bincount(codes, weights=v - v.mean(), minlength=n_groups)
    return float(np.sqrt(n_groups / (n_groups - 1) * (per_group ** 2).sum()) / v.size)


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared difference between probability and outcome."""
    yy, pp = _as_arrays(y, p, probabilities=True)
    return float(np.mean((pp - yy) ** 2))


def _bin_index(p: np.ndarray, n_bins: int, strategy: BinStrategy) -> np.ndarray:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InputError(f"`n_bins` must be an integer >= 1; got {n_bins!r}")
    if strategy == "uniform":
        # [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]
        return np.minimum((p * n_bins).astype(int), n_bins - 1)
    if strategy == "quantile":
        # Equal-mass bins over the sorted scores (stable sort: deterministic for ties).
        order = np.argsort(p, kind="stable")
        idx = np.empty(p.size, dtype=int)
        for b, chunk in enumerate(np.array_split(order, n_bins)):
            idx[chunk] = b
        return idx
    raise InputError(f"`strategy` must be 'uniform' or 'quantile'; got {strategy!r}")


def ece(y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: BinStrategy = "uniform") -> float:
    """Expected calibration error: sum over bins of |mean p - observed rate| * bin share.

    `strategy="uniform"` (reported) uses equal-width bins on [0, 1]; `"quantile"` uses
    equal-mass bins (adaptive ECE), steadier when scores crowd into a few bins.
    """
    yy, pp = _as_arrays(y, p, probabilities=True)
    idx = _bin_index(pp, n_bins, strategy)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=pp, minlength=n_bins)
    sum_y = np.bincount(idx, weights=yy, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / counts.sum())


def ece_null(p: ArrayLike, n_draws: int = 200, seed: int = 0, n_bins: int = 10,
             level: float = 0.95) -> tuple[float, float]:
    """(median, `level` quantile) of the equal-mass ECE that a perfectly calibrated scorer
    shows on these rows: outcomes drawn as independent Bernoulli(p), `n_draws` times. The
    noise floor an ECE target must clear to mean anything; a lower bound of it when rows
    are correlated (snapshots of one lead), since correlation only adds noise."""
    pp = np.asarray(p, dtype=float)
    if pp.ndim != 1 or pp.size == 0 or not np.isfinite(pp).all() or ((pp < 0) | (pp > 1)).any():
        raise InputError("`p` must be a non-empty 1-d array of probabilities")
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
        raise InputError(f"`n_draws` must be an integer >= 1; got {n_draws!r}")
    rng = np.random.default_rng(seed)
    draws = [ece((rng.random(pp.size) < pp).astype(int), pp, n_bins, "quantile")
             for _ in range(n_draws)]
    return float(np.median(draws)), float(np.quantile(draws, level))


def _top_k(y: np.ndarray, p: np.ndarray, k: float) -> tuple[int, float]:
    """(rows contacted, expected conversions among them) for the top k share by score."""
    if isinstance(k, bool) or not isinstance(k, int | float) or not 0 < k <= 1:
        raise InputError(f"`k` must be in (0, 1]; got {k!r}")
    n = p.size
    n_top = min(n, max(1, math.ceil(k * n - 1e-9)))
    threshold = np.sort(p)[::-1][n_top - 1]
    above = p > threshold
    tied = p == threshold
    need = n_top - int(above.sum())
    captured = float(y[above].sum()) + need * float(y[tied].mean())
    return n_top, captured


def lift_at(y: ArrayLike, p: ArrayLike, k: float = 0.1) -> float:
    """Conversion rate among the top `k` share of rows divided by the overall rate."""
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "lift_at")
    n_top, captured = _top_k(yy, pp, k)
    return float((captured / n_top) / yy.mean())


def capture_at(y: ArrayLike, p: ArrayLike, k: float = 0.1) -> float:
    """Share of all conversions found in the top `k` share of rows."""
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "capture_at")
    _, captured = _top_k(yy, pp, k)
    return float(captured / yy.sum())


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate; (0, 1) when n == 0."""
    for name, v in (("successes", successes), ("n", n)):
        if isinstance(v, bool) or not float(v).is_integer() or v < 0:
            raise InputError(f"`{name}` must be a non-negative integer; got {v!r}")
    if successes > n:
        raise InputError(f"`successes` must be <= `n`; got {successes} > {n}")
    if not z > 0:
        raise InputError(f"`z` must be > 0; got {z!r}")
    if n == 0:
        return 0.0, 1.0
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_scores(y: ArrayLike, p: ArrayLike) -> dict[str, float | int]:
    """All headline metrics of calibrated probabilities `p` against outcomes `y`.

    Keys: roc_auc, pr_auc, log_loss, brier, ece (equal-mass, 10 bins), ece_uniform
    (equal-width, 10 bins), calibration_slope, calibration_intercept, lift_at_10,
    capture_at_10, lift_at_20, capture_at_20, base_rate, n, positives.
    """
    yy, pp = _as_arrays(y, p, probabilities=True)
    _both_classes(yy, "evaluate_scores")
    slope, intercept = calibration_slope_intercept(yy, pp)
    out: dict[str, float | int] = {
        "roc_auc": roc_auc(yy, pp),
        "pr_auc": pr_auc(yy, pp),
        "log_loss": log_loss(yy, pp),
        "brier": brier(yy, pp),
        "ece": ece(yy, pp, strategy="quantile"),
        "ece_uniform": ece(yy, pp),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }
    for k in (10, 20):
        out[f"lift_at_{k}"] = lift_at(yy, pp, k / 100)
        out[f"capture_at_{k}"] = capture_at(yy, pp, k / 100)
    out["base_rate"] = float(yy.mean())
    out["n"] = int(yy.size)
    out["positives"] = int(yy.sum())
    return out


def calibration_slope_intercept(y: ArrayLike, p: ArrayLike, eps: float = 1e-6
                                ) -> tuple[float, float]:
    """(b, a) of the unpenalised logistic fit `logit P(y=1) = a + b logit(p)`."""
    yy, pp = _as_arrays(y, p, probabilities=True)
    _both_classes(yy, "calibration_slope_intercept")
    z = np.log(np.clip(pp, eps, 1 - eps) / (1 - np.clip(pp, eps, 1 - eps)))
    if np.ptp(z) == 0:
        return float("nan"), float("nan")
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(z.reshape(-1, 1), yy)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _lead_resamples(groups: np.ndarray, n_rows: int, n_boot: int, seed: int,
                    level: float) -> Iterator[np.ndarray]:
    """Row indices of `n_boot` resamples of whole groups (leads) with replacement: every
    snapshot of a drawn lead comes along. Checks the shared arguments first."""
    if groups.shape != (n_rows,):
        raise InputError(f"`groups` must have one entry per row; got {groups.size} for {n_rows}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"`n_boot` must be an integer >= 1; got {n_boot!r}")
    if not 0 < level < 1:
        raise InputError(f"`level` must be in (0, 1); got {level!r}")
    codes, uniques = pd.factorize(groups, sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picked = rng.integers(0, len(uniques), len(uniques))
        yield np.concatenate([order[starts[i]:starts[i + 1]] for i in picked])


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def lead_bootstrap(
    y: ArrayLike,
    p: ArrayLike,
    groups: ArrayLike,
    metrics: Mapping[str, Callable[[np.ndarray, np.ndarray], float]],
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each metric, resampling whole groups (leads) with
    replacement: every snapshot of a drawn lead comes along. Resamples where a metric is
    undefined (one outcome only) are skipped for it."""
    yy, pp = _as_arrays(y, p)
    draws: dict[str, list[float]] = {name: [] for name in metrics}
    for rows in _lead_resamples(np.asarray(groups), yy.size, n_boot, seed, level):
        yb, pb = yy[rows], pp[rows]
        if yb.min() == yb.max():
            continue
        for name, fn in metrics.items():
            value = fn(yb, pb)
            if np.isfinite(value):
                draws[name].append(value)
    return {name: _percentiles(v, level) for name, v in draws.items()}


def paired_difference(
    y: ArrayLike,
    p_a: ArrayLike,
    p_b: ArrayLike,
    groups: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """metric(a) - metric(b) on the same rows, and its percentile interval over lead
    resamples that draw both scorers' rows together (so their shared noise cancels):
    `difference`, `ci_low`, `ci_high`, `resamples` (those with both outcomes)."""
    yy, pa = _as_arrays(y, p_a)
    _, pb = _as_arrays(y, p_b)
    draws = []
    for rows in _lead_resamples(np.asarray(groups), yy.size, n_boot, seed, level):
        yb = yy[rows]
        if yb.min() != yb.max():
            draws.append(metric(yb, pa[rows]) - metric(yb, pb[rows]))
    low, high = _percentiles(draws, level)
    return {"difference": float(metric(yy, pa) - metric(yy, pb)), "ci_low": low,
            "ci_high": high, "resamples": len(draws)}


# --------------------------------------------------------------------------- curves


def roc_curve_frame(y: ArrayLike, p: ArrayLike) -> pd.DataFrame:
    """ROC curve points. Columns: fpr, tpr, threshold (the first point predicts nothing)."""
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "roc_curve_frame")
    fpr, tpr, thr = skm.roc_curve(yy, pp)
    thr = np.where(np.isinf(thr), np.nextafter(pp.max(), np.inf), thr)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def pr_curve_frame(y: ArrayLike, p: ArrayLike) -> pd.DataFrame:
    """Precision-recall points by decreasing recall. Columns: precision, recall, threshold.

    The last point (recall 0, precision 1) has no threshold of its own; it gets the one
    just above the highest score.
    """
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "pr_curve_frame")
    precision, recall, thr = skm.precision_recall_curve(yy, pp)
    thr = np.append(thr, np.nextafter(pp.max(), np.inf))
    return pd.DataFrame({"precision": precision, "recall": recall, "threshold": thr})


def calibration_frame(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> pd.DataFrame:
    """Reliability-diagram data, one row per non-empty bin.

    Columns: bin, bin_low, bin_high, mean_predicted, observed_rate, count, positives,
    ci_low, ci_high (Wilson 95 % interval of the observed rate).
    """
    yy, pp = _as_arrays(y, p, probabilities=True)
    idx = _bin_index(pp, n_bins, strategy)
    rows = []
    for b in np.unique(idx):
        mask = idx == b
        count = int(mask.sum())
        positives = int(yy[mask].sum())
        if strategy == "uniform":
            low, high = b / n_bins, (b + 1) / n_bins
        else:
            low, high = float(pp[mask].min()), float(pp[mask].max())
        ci_low, ci_high = wilson_interval(positives, count)
        rows.append(
            {
                "bin": int(b),
                "bin_low": float(low),
                "bin_high": float(high),
                "mean_predicted": float(pp[mask].mean()),
                "observed_rate": positives / count,
                "count": count,
                "positives": positives,
                "ci_low": ci_low,
                "ci_high": ci_high,
            }
        )
    return pd.DataFrame(rows)


def gains_frame(y: ArrayLike, p: ArrayLike, n_points: int = 100) -> pd.DataFrame:
    """Cumulative gains and lift at `n_points` evenly spaced contact shares.

    Columns: share_contacted (1/n_points ... 1), share_captured (share of all conversions
    in the contacted leads), lift (conversion rate of the contacted over the base rate).
    """
    yy, pp = _as_arrays(y, p)
    _both_classes(yy, "gains_frame")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
        raise InputError(f"`n_points` must be an integer >= 1; got {n_points!r}")
    shares = np.arange(1, n_points + 1) / n_points
    captured = []
    lifts = []
    base = yy.mean()
    for k in shares:
        n_top, got = _top_k(yy, pp, float(k))
        captured.append(got / yy.sum())
        lifts.append((got / n_top) / base)
    return pd.DataFrame({"share_contacted": shares, "share_captured": captured, "lift": lifts})
