"""Fit and engagement: two calibrated sub-scores that explain the full model.

Marketing and sales reason on two axes: is this the right company and person (*fit*: the
lead's own columns — size, industry, seniority, e-mail kind, BANT answers, extra columns) and
are they showing interest now (*engagement*: behaviour — visits, pricing views, downloads,
e-mail, journeys). Each side gets its own LightGBM on the same training snapshots, calibrated
on the calibration split like the served model (`models.training.train_all(...,
subscores=...)`); the full model keeps ranking and banding.

The grid: fit grades A-D and engagement levels 1-4 are cut from business targets like the
bands, as shares of calibration leads from the top (default A = best 15 %, B = next 25 %,
C = next 30 %, D = the rest; the same shares for 4 down to 1), each cut on the calibrated
sub-score. Cells report their conversion with a Wilson 95 % interval.

Per lead, the share of the full model's log-odds each side explains: the sums of the full
model's own per-feature contributions over fit and over engagement features, as shares of
their absolute total (lead age and unknown features are `other`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import wilson_interval

__all__ = ["DEFAULT_SHARES", "ENGAGEMENT", "FIT", "SCORED_COLUMNS", "SubScore", "cut_grades",
           "fit_subscores", "grade", "grid_table", "log_odds_shares", "monotone_breaks", "side_of",
           "grid_report", "subscore_columns", "subscore_frame"]

FIT, ENGAGEMENT = "fit", "engagement"
#: The columns `subscore_frame` adds to a scored table, in order.
SCORED_COLUMNS = ("fit_propensity", "fit_grade", "engagement_propensity", "engagement_level",
                  "grid", "fit_share", "engagement_share")
FIT_GRADES = ("A", "B", "C", "D")
ENGAGEMENT_LEVELS = ("1", "2", "3", "4")
#: Shares of calibration leads in each grade from the top (the last grade takes the rest).
DEFAULT_SHARES = (0.15, 0.25, 0.30)


def side_of(group: str) -> str | None:
    """`fit` for the lead's own columns, `engagement` for behaviour, None otherwise."""
    if group.startswith(("fit:", "extra:")):
        return FIT
    if group.startswith("behaviour:"):
        return ENGAGEMENT
    return None


def subscore_columns(features: Sequence[str], groups: Mapping[str, str]) -> dict[str, list[str]]:
    """{"fit": [...], "engagement": [...]}: the features of each side, in feature order.
    A side with no feature is left out (a lead-level export has no engagement)."""
    out: dict[str, list[str]] = {FIT: [], ENGAGEMENT: []}
    for col in features:
        side = side_of(groups.get(col, "other"))
        if side:
            out[side].append(col)
    return {k: v for k, v in out.items() if v}


def cut_grades(p_cal: np.ndarray, shares: Sequence[float] = DEFAULT_SHARES) -> list[float]:
    """Descending cutoffs on calibrated p: grade k (0 = best) holds p >= cut[k] (and below
    the cut before it); the cumulative shares of calibration rows from the top."""
    p = np.asarray(p_cal, dtype=np.float64)
    if p.size == 0 or np.isnan(p).any():
        raise ValueError("sub-score grades need calibrated probabilities without NaN")
    if any(s <= 0 for s in shares) or sum(shares) >= 1:
        raise ValueError(f"grade shares must be > 0 and sum below 1; got {list(shares)!r}")
    cumulative = np.cumsum(shares)
    cuts = [float(np.quantile(p, 1 - c, method="higher")) for c in cumulative]
    # strictly decreasing cutoffs (ties at the top push lower grades down)
    for k in range(1, len(cuts)):
        cuts[k] = min(cuts[k], np.nextafter(cuts[k - 1], -np.inf))
    return cuts


def grade(p: np.ndarray, cuts: Sequence[float], labels: Sequence[str]) -> np.ndarray:
    """The label of every p: labels[0] for p >= cuts[0], ..., labels[-1] below the last."""
    if len(labels) != len(cuts) + 1:
        raise ValueError(f"{len(cuts)} cutoffs need {len(cuts) + 1} labels; got {len(labels)}")
    idx = np.searchsorted(-np.asarray(cuts, dtype=np.float64), -np.asarray(p, float),
                          side="left")
    return np.asarray(labels, dtype=object)[idx]


def grid_table(fit_grade: np.ndarray, engagement: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """One row per (fit grade, engagement level): n, conversions, rate, Wilson interval."""
    frame = pd.DataFrame({"fit": fit_grade, "engagement": engagement,
                          "y": np.asarray(y, dtype=np.int64)})
    rows = []
    for f in FIT_GRADES:
        for e in ENGAGEMENT_LEVELS:
            cell = frame.loc[(frame["fit"] == f) & (frame["engagement"] == e), "y"]
            n, k = int(len(cell)), int(cell.sum())
            low, high = wilson_interval(k, n)
            rows.append({"fit": f, "engagement": e, "cell": f"{f}{e}", "n": n,
                         "conversions": k, "rate": k / n if n else float("nan"),
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def monotone_breaks(table: pd.DataFrame, min_n: int = 30) -> list[str]:
    """Cells where, for the same engagement, a better fit grade converts *less* beyond the
    intervals (the better cell's upper bound below the worse cell's lower bound)."""
    out = []
    for e in ENGAGEMENT_LEVELS:
        col = table[(table["engagement"] == e) & (table["n"] >= min_n)].set_index("fit")
        present = [g for g in FIT_GRADES if g in col.index]
        for i, better in enumerate(present):
            for worse in present[i + 1:]:
                if col.loc[better, "ci_high"] < col.loc[worse, "ci_low"]:
                    out.append(f"{better}{e} converts less than {worse}{e}")
    return out


def log_odds_shares(contributions: pd.DataFrame, groups: Mapping[str, str]) -> pd.DataFrame:
    """`fit_share`, `engagement_share`, `other_share` per row of the full model's
    contributions (`ScoringBundle.contributions`, bias column ignored); rows sum to 1
    (NaN when every contribution is 0)."""
    sides = {FIT: [], ENGAGEMENT: [], "other": []}
    for col in contributions.columns:
        if col == "bias":
            continue
        sides[side_of(groups.get(col, "other")) or "other"].append(col)
    sums = {k: np.abs(contributions[v].sum(axis=1).to_numpy()) if v else
            np.zeros(len(contributions)) for k, v in sides.items()}
    total = sum(sums.values())
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({f"{k}_share": np.where(total > 0, v / total, np.nan)
                             for k, v in sums.items()}, index=contributions.index)


@dataclass
class SubScore:
    """A fitted sub-score: LightGBM on one side's features, its calibrator, grade cutoffs."""

    model: Any
    calibrator: Any
    features: list[str]
    cuts: list[float]
    labels: tuple[str, ...]

    def propensity(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability from a bundle's `matrix` (model columns and levels)."""
        return self.calibrator.predict(self.model.predict_proba(X[self.features])[:, 1])


def fit_subscores(submodels: Mapping[str, tuple[Any, list[str]]],
                  calibrators: Mapping[str, Any], p_cal: Mapping[str, np.ndarray],
                  shares: Sequence[float] = DEFAULT_SHARES) -> dict[str, SubScore]:
    """SubScores from `train_all`'s `submodels`/`calibrators` and each side's calibrated
    probabilities on the calibration split (for the grade cutoffs)."""
    labels = {FIT: FIT_GRADES, ENGAGEMENT: ENGAGEMENT_LEVELS}
    return {name: SubScore(model, calibrators[name], list(cols),
                           cut_grades(p_cal[name], shares), labels[name])
            for name, (model, cols) in submodels.items() if name in labels}


def subscore_frame(subscores: Mapping[str, SubScore], X: pd.DataFrame,
                   contributions: pd.DataFrame | None = None,
                   groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`fit_propensity`, `fit_grade`, `engagement_propensity`, `engagement_level`, `grid`
    (e.g. "B2") for the sides present, and, with the full model's `contributions`,
    `fit_share` / `engagement_share` of its log-odds."""
    out = pd.DataFrame(index=X.index)
    for name in (FIT, ENGAGEMENT):
        sub = subscores.get(name)
        if sub is None:
            continue
        p = sub.propensity(X)
        out[f"{name}_propensity"] = p
        out[f"{name}_{'grade' if name == FIT else 'level'}"] = grade(p, sub.cuts, sub.labels)
    if "fit_grade" in out and "engagement_level" in out:
        out["grid"] = out["fit_grade"].astype(str) + out["engagement_level"].astype(str)
    if contributions is not None and groups is not None:
        shares = log_odds_shares(contributions, groups)
        out["fit_share"] = shares["fit_share"].to_numpy()
        out["engagement_share"] = shares["engagement_share"].to_numpy()
    return out


def grid_report(subscores: Mapping[str, SubScore], rows: pd.DataFrame,
                ece: Mapping[str, float | None] | None = None) -> dict[str, Any] | None:
    """The fit x engagement grid on `rows` (columns `p_fit`, `p_engagement`, `label`: the
    test split's snapshots): cells with conversion and interval, monotonicity breaks, and
    each sub-score's calibration error when given. None without both sub-scores."""
    if not {FIT, ENGAGEMENT} <= set(subscores) or not {"p_fit", "p_engagement"} <= set(rows):
        return None
    fit = grade(rows["p_fit"].to_numpy(), subscores[FIT].cuts, subscores[FIT].labels)
    eng = grade(rows["p_engagement"].to_numpy(), subscores[ENGAGEMENT].cuts,
                subscores[ENGAGEMENT].labels)
    table = grid_table(fit, eng, rows["label"].to_numpy())
    return {"rows": int(len(rows)), "cells": table.to_dict(orient="records"),
            "breaks": monotone_breaks(table), "ece": dict(ece or {}),
            "cuts": {n: list(s.cuts) for n, s in subscores.items()}}
