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

import numpy as np
import pandas as pd

from models.metrics import wilson_interval

__all__ = ["DEFAULT_SHARES", "FIT", "ENGAGEMENT", "cut_grades", "grade", "grid_table",
           "log_odds_shares", "monotone_breaks", "side_of", "subscore_columns"]

FIT, ENGAGEMENT = "fit", "engagement"
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
