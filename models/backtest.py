"""Backtest of the decision: conversions sales would have reached with N calls a week.

Input: weekly scoring batches of the test period, one row per open lead per batch (`lead_id`,
`as_of`, `converted`: the lead converted within the outcome horizon after that `as_of`, and
one score column per scorer). Each week, sales call the N best-scored open leads they have
not called before; a call *reaches* a conversion when that lead converts within the horizon
after the call. Batches whose horizon is not over are the caller's to drop (censoring).

Per capacity N and scorer: conversions reached, calls made, and the share of every lead that
converted while open in the period. "random" is the mean over `n_random` seeded random
orders (the expected value of calling without a score), with its 5th-95th percentile range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.snapshots import outcome_labels
from models.rules import RuleSet, score_rules
from models.weekly import simulate_batches

__all__ = ["capacity_backtest", "capacity_grid", "decision_batches"]

RANDOM = "random"


def _reach(week: np.ndarray, lead: np.ndarray, converted: np.ndarray,
           capacity: int) -> tuple[int, int]:
    """(conversions reached, calls) calling the top `capacity` uncalled leads each week;
    rows sorted by week, then best first."""
    called = np.zeros(lead.max() + 1 if lead.size else 0, dtype=bool)
    reached = calls = 0
    bounds = np.flatnonzero(np.diff(week)) + 1
    for rows in np.split(np.arange(week.size), bounds):
        if not rows.size:
            continue
        fresh = rows[~called[lead[rows]]][:capacity]
        called[lead[fresh]] = True
        calls += int(fresh.size)
        reached += int(converted[fresh].sum())
    return reached, calls


def capacity_backtest(batches: pd.DataFrame, scorers: Sequence[str],
                      capacities: Sequence[int], *, n_random: int = 20,
                      seed: int = 0) -> pd.DataFrame:
    """One row per (capacity, scorer): `capacity`, `scorer`, `reached`, `calls`,
    `share_reached` (of leads that converted while open), and for "random" `reached_p05`,
    `reached_p95`. Ties in a score are broken by a fixed random order."""
    need = ("lead_id", "as_of", "converted", *scorers)
    missing = [c for c in need if c not in batches.columns]
    if missing:
        raise ValueError(f"the backtest batches lack column(s) {missing}")
    if not capacities or min(capacities) < 1:
        raise ValueError(f"capacities must be whole numbers >= 1; got {list(capacities)!r}")
    week = pd.to_datetime(batches["as_of"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    lead = pd.factorize(batches["lead_id"])[0]
    converted = pd.to_numeric(batches["converted"]).to_numpy(dtype=np.int64)
    total = int(pd.Series(converted).groupby(lead).max().sum()) if lead.size else 0
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(week.size)

    def order(score: np.ndarray) -> np.ndarray:
        return np.lexsort((tiebreak, -score, week))

    rows: list[Mapping[str, object]] = []
    orders = {s: order(pd.to_numeric(batches[s]).to_numpy(dtype=np.float64)) for s in scorers}
    randoms = [order(rng.random(week.size)) for _ in range(n_random)]
    for capacity in sorted(set(int(c) for c in capacities)):
        for name, idx in orders.items():
            reached, calls = _reach(week[idx], lead[idx], converted[idx], capacity)
            rows.append({"capacity": capacity, "scorer": name, "reached": float(reached),
                         "calls": calls, "share_reached": reached / total if total else 0.0})
        got = np.array([_reach(week[idx], lead[idx], converted[idx], capacity)
                        for idx in randoms], dtype=np.float64)
        if len(got):
            rows.append({"capacity": capacity, "scorer": RANDOM,
                         "reached": float(got[:, 0].mean()), "calls": int(got[:, 1].mean()),
                         "share_reached": float(got[:, 0].mean() / total) if total else 0.0,
                         "reached_p05": float(np.quantile(got[:, 0], 0.05)),
                         "reached_p95": float(np.quantile(got[:, 0], 0.95))})
    out = pd.DataFrame(rows)
    out.attrs["converted_leads"] = total
    out.attrs["weeks"] = int(np.unique(week).size)
    return out


def decision_batches(bundle: Any, leads: pd.DataFrame, events: pd.DataFrame, fs: Any,
                     lead_ids: Any, start: pd.Timestamp, end: pd.Timestamp,
                     cadence_days: float, horizon_days: float,
                     ruleset: RuleSet | None = None) -> pd.DataFrame:
    """Weekly batches of `lead_ids` from `start` to `end` (the caller keeps `end` at least
    `horizon_days` before the data's end, so every outcome is known), scored as `score`
    would: columns `lead_id`, `as_of`, `converted` (within the horizon after as_of),
    `model` (calibrated p) and, with a rule set, `manual_rules` (its point total)."""
    sim = simulate_batches(bundle, leads, events, fs, lead_ids, end, cadence_days,
                           start=start)
    out = sim.rename(columns={"p": "model"})
    out["converted"] = outcome_labels(out, leads, horizon_days)
    if ruleset is not None and len(out):
        spine = out[["lead_id", "as_of"]]
        out["manual_rules"] = score_rules(spine, leads, events, None, ruleset)[
            "total"].to_numpy(dtype=float)
    return out


def capacity_grid(batches: pd.DataFrame, extra: Sequence[int] = (), points: int = 12
                  ) -> list[int]:
    """Calls per week to try: log-spaced from 1 to the median open leads per batch, plus
    `extra` (e.g. the configured capacity bands)."""
    per_week = batches.groupby("as_of").size()
    top = max(int(per_week.median()) if len(per_week) else 1, 1)
    grid = {int(round(x)) for x in np.geomspace(1, top, points)} | {int(c) for c in extra}
    return sorted(c for c in grid if c >= 1)
