"""Train on a sample of leads that one machine holds, without biasing the probabilities.

At ten million leads the snapshot frame of the training split outgrows one machine's
LightGBM. `sample_training_leads` keeps a sample of the training split's leads:

- **by lead**: a sampled lead keeps all of its snapshots, a lead never contributes part of
  its history;
- **stratified by outcome**: a lead is "converted" when any of its snapshots has label 1.
  Converted leads are kept at `converted_boost` times the rate of the others (capped at 1),
  so the rare class loses little; the rates are chosen so about `max_leads` leads remain;
- **weighted**: every kept row carries the inverse of its lead's inclusion probability
  (stratum leads / kept stratum leads), so weighted sums estimate the population's. The
  estimators are fitted with these weights, which keeps their probabilities about the
  population, not about the sample.

Only the `train` part is ever sampled: the calibration split (calibration, band cutoffs)
and the test split (metrics) keep every lead, so what is reported is the population's.
Rows outside the sampled part keep weight 1. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.settings import InputError, SampleSettings

__all__ = ["LeadSample", "sample_training_leads", "stratum_rates"]


@dataclass(frozen=True)
class LeadSample:
    """The outcome of `sample_training_leads`, aligned with the input frame's rows.

    `keep`: True for rows that stay; `weight`: the inverse inclusion probability of the
    row's lead (1 outside the sampled parts and when nothing is sampled; dropped rows get
    0); `summary`: rates, counts and weights for the bundle and the run's metrics."""

    keep: np.ndarray
    weight: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        """True when some lead was dropped."""
        return bool(self.summary.get("sampled"))


def stratum_rates(converted: int, others: int, max_leads: int,
                  converted_boost: float) -> tuple[float, float]:
    """(rate of converted leads, rate of the other leads) so that about `max_leads` of the
    `converted + others` leads are kept and converted leads are kept `converted_boost`
    times as often (capped at 1; the others then take the remaining budget).

    >>> [round(r, 4) for r in stratum_rates(100, 9900, 1000, 5.0)]
    [0.4808, 0.0962]
    >>> stratum_rates(2000, 8000, 5000, 5.0)
    (1.0, 0.375)
    """
    total = converted + others
    if total <= max_leads:
        return 1.0, 1.0
    r_other = max_leads / (converted_boost * converted + others)
    if converted_boost * r_other <= 1:
        return converted_boost * r_other, r_other
    # every converted lead is kept; the others share the rest of the budget (> 0, because
    # max_leads > converted + others / converted_boost in this branch)
    return 1.0, (max_leads - converted) / others


def _draw(leads: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """`round(rate * n)` of `leads` (at least one when there are any), without replacement."""
    n = leads.size
    k = n if rate >= 1 else max(1, min(n, int(round(rate * n))))
    if k >= n:
        return leads
    return leads[np.sort(rng.choice(n, size=k, replace=False))]


def sample_training_leads(
    frame: pd.DataFrame,
    parts: Sequence[str] | np.ndarray,
    settings: SampleSettings,
    label: str = "label",
    lead_col: str = "lead_id",
    sampled_part: str = "train",
) -> LeadSample:
    """Sample the leads of `sampled_part` (by lead, stratified by outcome) when it holds
    more than `settings.max_leads` leads; see the module docstring. Never mutates `frame`.

    `parts` is the split of each row (e.g. `models.split.split_leads(...).parts`). Returns a
    `LeadSample`; `summary["sampled"]` is False (and every row kept with weight 1) when
    sampling is off or the part is small enough."""
    part = np.asarray(parts, dtype=object)
    if part.size != len(frame):
        raise InputError(f"`parts` has {part.size} values for {len(frame)} rows")
    for col in (lead_col, label):
        if col not in frame.columns:
            raise InputError(f"frame is missing column `{col}`; has {list(frame.columns)}")
    y = frame[label]
    if y.isna().any() or not y.isin([0, 1]).all():
        raise InputError(f"`{label}` must contain only 0 and 1")
    in_part = part == sampled_part
    lead_ids = frame[lead_col].to_numpy()
    outcome = (pd.Series(y.to_numpy(dtype="int8")[in_part], index=lead_ids[in_part])
               .groupby(level=0).max())
    converted = np.sort(outcome.index[outcome.to_numpy() == 1].to_numpy())
    others = np.sort(outcome.index[outcome.to_numpy() == 0].to_numpy())
    n_leads = int(outcome.size)
    base = {"part": sampled_part, "max_leads": settings.max_leads,
            "converted_boost": settings.converted_boost, "seed": settings.seed,
            "population_leads": n_leads}
    if settings.max_leads is None or n_leads <= settings.max_leads:
        why = ("off (`train.sample.max_leads` is null)" if settings.max_leads is None else
               f"the {sampled_part} split has {n_leads:,} leads <= `train.sample.max_leads` "
               f"({settings.max_leads:,}): every lead is used")
        return LeadSample(keep=np.ones(len(frame), dtype=bool), weight=np.ones(len(frame)),
                          summary={**base, "sampled": False, "why": why})

    rate_conv, rate_other = stratum_rates(converted.size, others.size, settings.max_leads,
                                          settings.converted_boost)
    rng = np.random.default_rng(settings.seed)
    strata: dict[str, Any] = {}
    lead_weight: dict[Any, float] = {}
    for name, leads, rate in (("converted", converted, rate_conv),
                              ("not_converted", others, rate_other)):
        kept = _draw(leads, rate, rng)
        w = leads.size / kept.size if kept.size else 0.0
        lead_weight.update(dict.fromkeys(kept.tolist(), w))
        strata[name] = {"population_leads": int(leads.size), "kept_leads": int(kept.size),
                        "rate": kept.size / leads.size if leads.size else 1.0, "weight": w}
    row_w = pd.Series(lead_ids[in_part]).map(lead_weight).to_numpy(dtype="float64")
    weight = np.ones(len(frame))
    weight[in_part] = np.nan_to_num(row_w, nan=0.0)
    keep = weight > 0
    y_part, w_part = y.to_numpy(dtype="float64")[in_part], weight[in_part]
    summary = {
        **base,
        "sampled": True,
        "kept_leads": sum(s["kept_leads"] for s in strata.values()),
        "strata": strata,
        "rows": {"population": int(in_part.sum()), "kept": int((keep & in_part).sum())},
        # snapshot conversion rate of the part, and its weighted estimate from the sample
        "population_rate": float(y_part.mean()) if y_part.size else float("nan"),
        "weighted_rate": (float(np.average(y_part[w_part > 0], weights=w_part[w_part > 0]))
                          if (w_part > 0).any() else float("nan")),
        "why": (f"the {sampled_part} split has {n_leads:,} leads > `train.sample.max_leads` "
                f"({settings.max_leads:,}): sampled by lead, converted leads at "
                f"{rate_conv:.3g}, the others at {rate_other:.3g}; rows weighted by 1/rate"),
    }
    return LeadSample(keep=keep, weight=weight, summary=summary)
