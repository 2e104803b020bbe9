"""Does scoring raise conversion? Scored-and-routed leads against the randomised holdout.

Input: one row per lead that was open in a scored batch, with `holdout` (bool, from
`models.holdout`), `converted` (0/1: converted after it was first scored, within the outcome
window), optionally `days_to_conversion` and `revenue`, and a band column. Output: per group
(all leads, then each band) the conversion of both arms with Wilson 95 % intervals, the
difference with Newcombe's hybrid score interval (method 10 of Newcombe 1998), the median
days to conversion and revenue per lead, and a plain verdict:

- the interval of the difference excludes 0: scored leads convert more (or less);
- it includes 0 and the holdout is large enough to have seen the smallest effect worth
  finding (`min_effect` relative to the holdout's rate, 80 % power, two-sided 5 %): "no
  difference of ... or more";
- otherwise: "not enough data yet: about N more weeks at this volume", from the held-out leads
  per week seen so far and the standard two-proportion sample size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import wilson_interval

__all__ = ["ArmStats", "LiftRow", "as_records", "lift_table", "required_holdout"]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ArmStats:
    n: int
    conversions: int
    rate: float
    low: float
    high: float
    median_days: float | None
    revenue_per_lead: float | None


@dataclass(frozen=True)
class LiftRow:
    group: str
    treated: ArmStats
    holdout: ArmStats
    diff: float
    diff_low: float
    diff_high: float
    needed_holdout: int | None
    weeks_more: float | None
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arm(frame: pd.DataFrame) -> ArmStats:
    n = len(frame)
    conv = int(frame["converted"].sum())
    low, high = wilson_interval(conv, n)
    days = None
    if "days_to_conversion" in frame and conv:
        got = pd.to_numeric(frame.loc[frame["converted"] == 1, "days_to_conversion"],
                            errors="coerce").dropna()
        days = float(got.median()) if len(got) else None
    revenue = None
    if "revenue" in frame and n:
        revenue = float(pd.to_numeric(frame["revenue"], errors="coerce").fillna(0.0).mean())
    return ArmStats(n, conv, conv / n if n else float("nan"), low, high, days, revenue)


def _newcombe(a: ArmStats, b: ArmStats) -> tuple[float, float, float]:
    """a.rate - b.rate with Newcombe's hybrid score interval."""
    d = a.rate - b.rate
    low = d - math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    high = d + math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def required_holdout(p_holdout: float, effect: float, ratio: float, *, power: float = 0.8,
                     z_alpha: float = _Z95) -> int:
    """Held-out leads needed to detect `p_holdout + effect` in the treated arm.

    `ratio` is treated leads per held-out lead; normal approximation for two proportions.
    """
    if effect <= 0 or ratio <= 0:
        raise ValueError(f"effect and ratio must be > 0; got {effect!r}, {ratio!r}")
    p1 = min(max(p_holdout + effect, 1e-6), 1 - 1e-6)
    p2 = min(max(p_holdout, 1e-6), 1 - 1e-6)
    z_beta = NormalDist().inv_cdf(power)
    n = (z_alpha + z_beta) ** 2 * (p1 * (1 - p1) / ratio + p2 * (1 - p2)) / effect**2
    return int(math.ceil(n))


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} points"


def _row(group: str, frame: pd.DataFrame, weeks: float, min_effect: float,
         holdout_per_week: float | None = None) -> LiftRow:
    held = frame["holdout"].astype(bool)
    treated, holdout = _arm(frame[~held]), _arm(frame[held])
    if holdout.n == 0 or treated.n == 0:
        missing = "held-out" if holdout.n == 0 else "scored"
        return LiftRow(group, treated, holdout, float("nan"), float("nan"), float("nan"),
                       None, None, f"no {missing} leads in this group: nothing to compare")
    d, low, high = _newcombe(treated, holdout)
    ci = f"(95 % CI {_pts(low)} to {_pts(high)})"
    if low > 0:
        return LiftRow(group, treated, holdout, d, low, high, None, None,
                       f"scored leads convert more: {_pts(d)} {ci}")
    if high < 0:
        return LiftRow(group, treated, holdout, d, low, high, None, None,
                       f"scored leads convert less: {_pts(d)} {ci}")
    base = holdout.rate if holdout.rate > 0 else (treated.conversions + 1) / (treated.n + 2)
    effect = max(min_effect * base, abs(d), 1e-4)
    needed = required_holdout(base, effect, treated.n / holdout.n)
    if holdout.n >= needed:
        return LiftRow(group, treated, holdout, d, low, high, needed, 0.0,
                       f"no difference of {100 * effect:.1f} points or more detected: "
                       f"{_pts(d)} {ci}")
    per_week = holdout_per_week if holdout_per_week is not None else (
        holdout.n / weeks if weeks > 0 else 0.0)
    if per_week <= 0:
        return LiftRow(group, treated, holdout, d, low, high, needed, None,
                       f"not enough data yet: {needed - holdout.n:,} more held-out leads "
                       f"needed {ci}")
    more = (needed - holdout.n) / per_week
    return LiftRow(group, treated, holdout, d, low, high, needed, more,
                   f"not enough data yet: about {math.ceil(more)} more weeks at this volume "
                   f"({per_week:.0f} held-out leads a week; {needed:,} needed) {ci}")


def lift_table(outcomes: pd.DataFrame, *, weeks: float, band_columns: tuple[str, ...] = (),
               min_effect: float = 0.2,
               holdout_per_week: float | None = None) -> list[LiftRow]:
    """The comparison for all leads, then for each band of each band column.

    `weeks` is the span of scoring batches the outcomes cover; the volume in verdicts is
    the compared held-out leads per week over it, or `holdout_per_week` (new held-out leads a
    week, e.g. counted before censoring) when given, shared out to a band by its share of
    the held-out leads. `min_effect` is the smallest relative lift worth finding (0.2 = 20 %
    of the holdout rate).
    """
    for col in ("holdout", "converted", *band_columns):
        if col not in outcomes.columns:
            raise ValueError(f"lift needs a `{col}` column; got {sorted(outcomes.columns)}")
    y = pd.to_numeric(outcomes["converted"], errors="coerce")
    if y.isna().any() or not y.isin((0, 1)).all():
        raise ValueError("`converted` must be 0 or 1 for every lead")
    frame = outcomes.assign(converted=y.astype(np.int64))
    rows = [_row("all leads", frame, weeks, min_effect, holdout_per_week)]
    held = int(frame["holdout"].astype(bool).sum())
    for col in band_columns:
        for band, part in frame.groupby(col, sort=False, observed=True):
            share = part["holdout"].astype(bool).sum() / held if held else 0.0
            rows.append(_row(f"{col} = {band}", part, weeks, min_effect,
                             None if holdout_per_week is None else holdout_per_week * share))
    return rows


def as_records(rows: list[LiftRow]) -> list[Mapping[str, Any]]:
    """Rows as JSON-friendly dicts (NaN to None)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, float) and math.isnan(v):
            return None
        return v
    return [clean(r.as_dict()) for r in rows]
