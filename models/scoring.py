"""The scoring core: leads (+ events) + `as_of` + a fitted bundle -> the open leads, scored.

Pure: frames and a typed `FeatureSettings` in, frames out; no files, no MLflow, no progress
bar (an optional `progress(done, total)` callback). The `score` stage, the registered MLflow
model (`pipeline.pyfunc_model`) and chunked/streaming scorers all call `score_open_leads`,
so a lead gets the same propensity, score, bands and reasons whichever way it is scored.

Steps: the open leads at as_of (`features.snapshots.scoring_spine`: created by then, neither
converted nor lost), their features from the same code as training (`build_features`, then
`align_features` to the model's columns and category levels), the bundle's calibrated
propensity, 1-99 score, one column per band set and top reasons (`ScoringBundle.score_frame`).
The leads are scored in chunks of `chunk_size` for bounded memory; the output does not
depend on the chunk size. Nothing here needs the whole table: a caller may pass one chunk of
leads with their events at a time (extra-column typing is then per call, see
`pin_extra_types`).

Errors are `models.settings` errors (ValueError subclasses): `MissingFeaturesError` when the
leads cannot give the model's feature columns, `SettingsError` for a bad chunk size; the
pipeline turns them into `DataError` / `ConfigError` naming the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.build import align_features, build_features
from features.fit import extra_columns, is_numeric_like
from features.settings import FeatureSettings
from features.snapshots import scoring_spine
from models import drift
from models.bundle import band_column
from models.decay import add_decayed_features
from models.holdout import HoldoutSpec
from models.settings import InputError, SettingsError
from models.subscores import subscore_frame

CHUNK_SIZE = 100_000
#: Feature columns `align_features` may fill with 0 (event types absent from this batch).
COUNT_PREFIXES = ("evt_", "grp_", "events_", "sessions_", "active_days_")
# Reasons read "▲ for; ▼ against": never "+"/"-" first, which Excel takes as a formula.
REASON_MARKS = ("▲ ", "▼ ")


class MissingFeaturesError(InputError):
    """The leads cannot give some of the model's feature columns (`missing`, in model
    order); `hint` says how to fix the export."""

    def __init__(self, message: str, missing: Sequence[str], hint: str = "") -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.hint = hint


def empty_events() -> pd.DataFrame:
    """A typed `events` table with no rows (`lead_id`, `timestamp`, `event_type`)."""
    return pd.DataFrame({
        "lead_id": pd.Series(dtype="str"),
        "timestamp": pd.Series(dtype="datetime64[us]"),
        "event_type": pd.Series(dtype="str"),
    })


@dataclass
class ScoredLeads:
    """The model's output for the open leads (sorted by lead_id), the leads that were not
    open with their reason, and the drift bin counts of the batch."""

    table: pd.DataFrame
    not_open: pd.DataFrame
    drift_counts: dict[str, np.ndarray] = field(default_factory=dict)


def check_feature_columns(built: Sequence[str], bundle: Any) -> None:
    """MissingFeaturesError naming the model's feature columns the built frame lacks (count
    columns of event types absent from this batch are fine: they are 0)."""
    have = set(built)
    fillable = [c for c in bundle.features if c not in have and c.startswith(COUNT_PREFIXES)]
    try:
        bundle.check_columns(pd.DataFrame(columns=[*built, *fillable]))
    except ValueError as err:  # models.settings.InputError
        missing = [c for c in bundle.features if c not in have and c not in fillable]
        hint = ""
        extras = [c for c in missing if c.startswith("extra_")]
        if extras:
            hint = (" Columns named extra_<name> come from a lead column <name> the training "
                    "export had: add it to this file (empty values are fine).")
        raise MissingFeaturesError(f"the model cannot score these leads: {err}{hint}", missing,
                                   hint) from None


def pin_extra_types(leads: pd.DataFrame, fs: FeatureSettings) -> tuple[pd.DataFrame, np.ndarray]:
    """(leads, witness rows) so that scoring in chunks types every extra column as a whole
    table would: `fit_features` treats an extra column as numeric when all its values look
    numeric, which a chunk can see differently. Numeric-looking text columns become float
    once here; for the other text columns one lead whose value is not numeric is returned
    (row positions) to be added to every chunk's leads (it is not scored)."""
    numeric: dict[str, pd.Series] = {}
    witness: set[int] = set()
    for col in extra_columns(leads, fs):
        values = leads[col]
        if (pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values)
                or pd.api.types.is_bool_dtype(values)):
            continue
        if is_numeric_like(values):
            numeric[col] = pd.to_numeric(values.astype("str").str.strip(), errors="coerce")
            continue
        text = values.astype("str").str.strip()
        bad = values.notna() & pd.to_numeric(text, errors="coerce").isna()
        if bad.any():
            witness.add(int(np.argmax(bad.to_numpy())))
    return (leads.assign(**numeric) if numeric else leads), np.array(sorted(witness), np.int64)


def score_open_leads(
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    bundle: Any,
    fs: FeatureSettings,
    as_of: pd.Timestamp,
    *,
    chunk_size: int = CHUNK_SIZE,
    reference: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
    phrases: Any = None,
    holdout: HoldoutSpec | None = None,
) -> ScoredLeads:
    """Score the leads open at `as_of` in chunks (pure: frames in, frames out).

    Returns `lead_id`, `propensity`, `score`, one column per band set, `reasons`; and, with
    a drift `reference`, the batch's bin counts of the propensity and tracked features.
    Output does not depend on `chunk_size`; `progress(done, total)` is called after each
    chunk. MissingFeaturesError when the leads lack a column the model's features come
    from; SettingsError when `chunk_size` < 1. `timings`, if given, accumulates seconds spent
    in `features`, `model` and `reasons`. With `holdout`, a boolean `holdout` column flags
    the leads routing must skip (`models.holdout`: a keyed hash of source and lead_id, the
    same leads in every batch). A bundle with sub-scores adds `fit_propensity`,
    `fit_grade`, `engagement_propensity`, `engagement_level`, `grid` and the log-odds shares
    `fit_share` / `engagement_share` (`models.subscores`).
    """
    clock = timings if timings is not None else {}
    for key in ("features", "model", "reasons"):
        clock.setdefault(key, 0.0)
    if chunk_size < 1:
        raise SettingsError(f"`chunk_size` must be >= 1; got {chunk_size}")
    open_, not_open = scoring_spine(leads, as_of)
    open_ = open_.sort_values("lead_id", kind="stable").reset_index(drop=True)
    leads, witness = pin_extra_types(leads, fs)
    lead_pos = pd.Index(leads["lead_id"].astype(str))
    events = empty_events() if events is None else events
    if len(events) and not events["lead_id"].is_monotonic_increasing:
        events = events.sort_values(["lead_id", "timestamp"], kind="stable")
    # one plain array: searchsorted on an Arrow-backed string Series converts it every call
    ev_ids = events["lead_id"].to_numpy(dtype=object)
    specs = _drift_specs(reference, bundle)
    counts = {name: np.zeros(_n_bins(spec), np.int64) for name, spec in specs.items()}
    bands = {band_column(name): fitted for name, fitted in bundle.bands.items()}

    parts: list[pd.DataFrame] = []
    total = len(open_)
    starts = range(0, total, chunk_size) if total else [0]
    for start in starts:
        spine = open_.iloc[start:start + chunk_size].reset_index(drop=True)
        ids = spine["lead_id"].astype(str)
        rows = np.union1d(lead_pos.get_indexer(ids), witness)
        if len(ids):
            lo, hi = ev_ids.searchsorted(ids.iloc[0], "left"), ev_ids.searchsorted(ids.iloc[-1],
                                                                                  "right")
            chunk_events = events.iloc[lo:hi]
        else:
            chunk_events = events.iloc[:0]
        t0 = time.perf_counter()
        built = built_features(spine, leads.take(rows), chunk_events, fs, bundle)
        if start == 0:
            check_feature_columns(list(built.columns), bundle)
        if not len(spine):
            break
        X = align_features(built, bundle.features, bundle.categories)
        t1 = time.perf_counter()
        pred = bundle.score_frame(X, marks=REASON_MARKS, phrases=phrases)  # reasons' words
        part = pd.DataFrame({"lead_id": ids.to_numpy(),
                             "propensity": pred["propensity"].to_numpy(dtype=float),
                             "score": pred["score"].to_numpy(dtype=np.int64)})
        for col in bands:
            part[col] = pred[col].astype(str).to_numpy()
        t2 = time.perf_counter()
        part["reasons"] = pred["reasons"].to_numpy()
        if holdout is not None:
            part["holdout"] = holdout.assign(part["lead_id"])
        subs = getattr(bundle, "subscores", None)
        if subs:
            extra = subscore_frame(subs, bundle.matrix(X), bundle.contributions(X),
                                   bundle.groups)
            for col in extra.columns:
                part[col] = extra[col].to_numpy()
        clock["features"] += t1 - t0
        clock["model"] += t2 - t1
        clock["reasons"] += time.perf_counter() - t2
        parts.append(part)
        for name, spec in specs.items():
            values = part["propensity"] if name == "propensity" else X[name]
            counts[name] += drift.bin_counts(values, spec)
        if progress is not None:
            progress(min(start + chunk_size, total), total)

    table = pd.concat(parts, ignore_index=True) if parts else _empty_scored(bands)
    if holdout is not None and not parts:
        table["holdout"] = pd.Series(dtype="bool")
    return ScoredLeads(table, not_open, counts)


def built_features(spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame | None,
                   fs: FeatureSettings, bundle: Any) -> pd.DataFrame:
    """The spine's features as scoring builds them (`build_features` + the bundle's learned
    decay features), before `align_features`; each row sees its own `as_of`."""
    return add_decayed_features(build_features(spine, leads, events, fs), events, fs,
                                bundle.metadata.get("decayed_half_lives"))


def features_at(spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame | None,
                fs: FeatureSettings, bundles: Sequence[Any]) -> pd.DataFrame:
    """The aligned features of `spine` (`lead_id`, `as_of` per row, e.g. an earlier
    batch's moment) exactly as `score_open_leads` builds them from these leads and events:
    extra columns typed on `leads` (`pin_extra_types`), behaviour only from events strictly
    before each row's as_of. Columns: every feature of `bundles` (the first one's category
    levels win), indexed by lead_id in spine order. For rebuilding what an earlier batch
    saw (score-change attribution), pass the leads and events this batch scores."""
    leads, witness = pin_extra_types(leads, fs)
    rows = np.union1d(pd.Index(leads["lead_id"].astype(str)).get_indexer(
        spine["lead_id"].astype(str)), witness)
    events = empty_events() if events is None else events
    built = built_features(spine.reset_index(drop=True), leads.take(rows), events, fs,
                           bundles[0])
    columns = list(dict.fromkeys(c for b in bundles for c in b.features))
    levels: dict[str, Any] = {}
    for b in reversed(bundles):
        levels.update(b.categories)
    out = align_features(built, columns, levels)
    out.index = pd.Index(spine["lead_id"].astype(str).to_numpy(), name="lead_id")
    return out


def _empty_scored(bands: Mapping[str, Any]) -> pd.DataFrame:
    cols: dict[str, pd.Series] = {"lead_id": pd.Series(dtype="str"),
                                  "propensity": pd.Series(dtype="float64"),
                                  "score": pd.Series(dtype="int64")}
    cols.update({c: pd.Series(dtype="str") for c in bands})
    cols["reasons"] = pd.Series(dtype="str")
    return pd.DataFrame(cols)


def _drift_specs(reference: Mapping[str, Any] | None, bundle: Any) -> dict[str, Any]:
    if not reference:
        return {}
    specs = {"propensity": reference["propensity"]}
    specs.update({f: s for f, s in reference.get("features", {}).items() if f in bundle.features})
    return specs


def _n_bins(spec: Mapping[str, Any]) -> int:
    return len(spec["shares"])


def band_orders(bundle: Any) -> dict[str, tuple[str, ...]]:
    """Band column -> band names from lowest to highest, in the model's band-set order."""
    return {band_column(name): tuple(fitted.names) for name, fitted in bundle.bands.items()}


#: Lead columns the fit (firmographic) features come from (`features.fit.fit_features`).
FIT_SOURCE_COLUMNS = ("email", "job_title", "company_size", "industry", "country", "budget",
                      "need", "timeframe", "source")


def fit_source_columns(columns: Sequence[str], fs: FeatureSettings) -> list[str]:
    """The lead columns among `columns` (a training table's) that the fit features came
    from: the contract's fit columns present and not excluded (`features.exclude`)."""
    have = {str(c) for c in columns}
    return [c for c in FIT_SOURCE_COLUMNS if c in have and c not in fs.exclude]


def missing_fit_columns(columns: Sequence[str], fit_columns: Sequence[str]) -> list[str]:
    """The training's fit columns (`fit_source_columns`) absent from `columns`: scoring
    without them gives every lead "unknown" / NaN in the features they feed."""
    have = {str(c) for c in columns}
    return [c for c in fit_columns if c not in have]
