"""Simulated scoring batches: every lead open at each batch moment, scored as `score`
would score it then (real point-in-time features, not stored snapshots).

`simulate_batches` re-scores a set of leads every `cadence_days`; `weekly_bands` uses it on
the calibration leads (never the test split) to size capacity bands by new entries per week
(`models.bands.weekly_batches`). No IO.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pandas as pd

from features.build import align_features, build_features
from features.snapshots import scoring_spine
from models.bands import fit_bands, projected_leads_per_week, weekly_batches
from models.decay import add_decayed_features

__all__ = ["simulate_batches", "weekly_bands"]

log = logging.getLogger(__name__)


def simulate_batches(bundle: Any, leads: pd.DataFrame, events: pd.DataFrame, fs: Any,
                     lead_ids: Any, end: pd.Timestamp, cadence_days: float,
                     start: pd.Timestamp | None = None) -> pd.DataFrame:
    """Scoring batches every `cadence_days` from `start` (default: the day after the first
    of `lead_ids` was created) up to `end`: each of those leads open at a batch
    (features/snapshots.scoring_spine), with its features then and the calibrated p scoring
    gives it. Columns `lead_id`, `as_of`, `p`. No IO."""
    pool = leads[leads["lead_id"].astype(str).isin(pd.Index(lead_ids).astype(str))]
    if pool.empty:
        return pd.DataFrame({"lead_id": [], "as_of": [], "p": []})
    first = (pd.Timestamp(pool["created_at"].min()).normalize() + pd.Timedelta(days=1)
             if start is None else pd.Timestamp(start))
    step = pd.Timedelta(days=float(cadence_days))
    lead_events = events[events["lead_id"].isin(pool["lead_id"])] if len(events) else events
    spines = []
    at = first
    while at <= end:
        spines.append(scoring_spine(pool, at)[0][["lead_id", "as_of"]])
        at += step
    spine = pd.concat(spines, ignore_index=True)
    if spine.empty:
        return pd.DataFrame({"lead_id": [], "as_of": [], "p": []})
    # one feature pass over every (lead, batch) pair, like a training spine
    built = add_decayed_features(build_features(spine, pool, lead_events, fs), lead_events, fs,
                                 bundle.metadata.get("decayed_half_lives"))
    X = align_features(built, bundle.features, bundle.categories)
    return pd.DataFrame({"lead_id": spine["lead_id"].to_numpy(),
                         "as_of": spine["as_of"].to_numpy(), "p": bundle.propensity(X)})


def weekly_bands(result: Any, leads: pd.DataFrame, events: pd.DataFrame, fs: Any,
                 band_sets: Any, end: pd.Timestamp) -> dict[str, Any]:
    """Refit every band set with a `capacity_per_week` band on simulated scoring batches of
    the calibration leads (never the test split; models.bands.weekly_batches), so a capacity
    counts new entries per week rather than pooled snapshot rows. With no
    `leads_per_week` and `inflow: trend`, the capacity is scaled to the inflow projected to
    `end` from the training and calibration leads' creations. Replaces the bundle's and
    the summary's fitted bands in place; returns {set name: FittedBands} refitted. No IO."""
    pred = result.predictions
    todo = {n: bs for n, bs in band_sets.items() if bs.uses_capacity}
    if not todo or "created_at" not in pred.columns or pred["created_at"].isna().any():
        return {}
    cal = pred[pred["split"] == "calibration"]
    cal_leads = cal.groupby("lead_id", sort=False)["created_at"].min().reset_index()
    # the inflow scoring will see: the trend of the training + calibration leads' creations
    # (never the test split) projected to `end`, when scoring starts
    seen = pred[pred["split"].isin(["train", "calibration"])]
    trend = projected_leads_per_week(
        seen.groupby("lead_id", sort=False)["created_at"].min(), end) if len(seen) else None
    refitted: dict[str, Any] = {}
    sims: dict[float, Any] = {}
    for name, band_set in todo.items():
        cadence = float(band_set.scoring_cadence_days)
        if cadence not in sims:
            batches = simulate_batches(result.bundle, leads, events, fs, cal_leads["lead_id"],
                                       end, cadence)
            sims[cadence] = weekly_batches(batches, cal_leads, cadence) if len(batches) else None
        if sims[cadence] is None:
            continue
        inflow = "leads_per_week" if band_set.leads_per_week is not None else "calibration"
        if inflow == "calibration" and band_set.inflow == "trend" and trend is not None:
            band_set = replace(band_set, leads_per_week=trend)
            inflow = "trend"
        fitted = fit_bands(cal["p_served"].to_numpy(), cal["label"].to_numpy(), band_set,
                           leads_per_week=result.summary.get("leads_per_week"),
                           weekly=sims[cadence])
        if fitted.weekly is not None:
            fitted.weekly["inflow"] = inflow
        for message in fitted.messages:
            log.warning("bands.%s: %s", name, message)
        result.bundle.bands[name] = fitted
        result.summary["bands"][name] = fitted.to_dict()
        refitted[name] = fitted
    return refitted
