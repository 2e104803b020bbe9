"""The feature frame: spine + lead age + behaviour + fit, and helpers to keep a scoring frame
in the shape of the training frame."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from features.behaviour import DAY_US, as_datetime_us, behaviour_features, sanitize
from features.fit import OTHER, UNKNOWN, extra_columns, fit_features
from features.settings import FeatureSettings

_WINDOW_SUFFIX = re.compile(r"_(\d+d|all)$")


def build_features(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    settings: FeatureSettings,
) -> pd.DataFrame:
    """Spine columns (unchanged, in their order) followed by the features, one row per spine
    row in spine order: `lead_age_days`, the behaviour columns (see
    `behaviour.behaviour_features`), the fit columns (see `fit.fit_features`) and
    `extra_<col>_days` (as_of minus the value, in days) for datetime extra lead columns.

    Columns are in a deterministic order; the per-event-type columns depend on the event
    types present in `events`, so a scoring frame must be reindexed to the training
    columns (`align_features`). Features named in settings.exclude, or derived from an
    excluded lead column, are left out.

    Lead-level mode (leads without `created_at` and a spine without as_of, see
    `features.snapshots`): there is no lead age and no moment to count events before, so
    `lead_age_days` and the behaviour columns are left out (behaviour comes from the lead
    columns passed through as `extra_<col>`), and datetime extras are days before the
    export moment `leads.attrs["exported_at"]` (NaN without it). Events are then an error.
    """
    for col in ("lead_id", "as_of"):
        if col not in spine.columns:
            raise ValueError(f"spine: missing column {col!r}")
    if "lead_id" not in leads.columns:
        raise ValueError("leads: missing column 'lead_id'")
    lead_index = pd.Index(leads["lead_id"].astype(str))
    if not lead_index.is_unique:
        raise ValueError("leads: `lead_id` must be unique")
    rows = lead_index.get_indexer(spine["lead_id"].astype(str))
    if (rows < 0).any():
        raise ValueError(f"spine: {(rows < 0).sum()} row(s) name a lead_id missing from leads")

    index = spine.index
    as_of = as_datetime_us(spine["as_of"]).to_numpy().view(np.int64)
    parts: list[pd.DataFrame] = [spine]
    lead_level = "created_at" not in leads.columns and bool(spine["as_of"].isna().all())

    if lead_level:
        if events is not None and len(events):
            raise ValueError("lead-level leads (no created_at, no as_of) cannot use events: "
                             "there is no moment to count them before")
    else:
        extra: dict[str, np.ndarray] = {}
        if "created_at" in leads.columns:
            created = as_datetime_us(leads["created_at"]).to_numpy()[rows]
            extra["lead_age_days"] = _days_between(as_of, created)
        else:
            extra["lead_age_days"] = np.full(len(spine), np.nan)
        parts.append(pd.DataFrame(extra, index=index))
        parts.append(behaviour_features(spine, events, settings))

    fit = fit_features(leads, settings).drop(columns="lead_id")
    fit = fit.take(rows)
    fit.index = index
    parts.append(fit)
    dated = {}
    for name in extra_columns(leads, settings):
        if pd.api.types.is_datetime64_any_dtype(leads[name]):
            values = as_datetime_us(leads[name]).to_numpy()[rows]
            days = _days_between(as_of, values)
            # a lead date at or after as_of is the future for this snapshot: mask it
            days = np.where(days > 0, days, np.nan)
            if lead_level:  # days before the export moment, the one moment the export has
                end = leads.attrs.get("exported_at")
                end_us = np.datetime64(pd.Timestamp(end), "us").view(np.int64) if end else 0
                days = (_days_between(np.full(len(spine), end_us), values) if end
                        else np.full(len(spine), np.nan))
            dated[f"extra_{sanitize(name)}_days"] = days
    if dated:
        parts.append(pd.DataFrame(dated, index=index))

    frame = pd.concat(parts, axis=1)
    drop = [c for c in frame.columns if c in settings.exclude and c not in spine.columns]
    return frame.drop(columns=drop) if drop else frame


def _days_between(as_of_us: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(as_of - value) in days; NaN where value is NaT."""
    v = values.astype("datetime64[us]")
    out = (as_of_us - v.view(np.int64)) / DAY_US
    return np.where(np.isnat(v), np.nan, out)


def feature_columns(frame: pd.DataFrame, spine_columns: Iterable[str] = ()) -> list[str]:
    """The feature columns of a `build_features` frame (everything after the spine)."""
    skip = set(spine_columns) or {"lead_id", "as_of", "age_days", "created_at", "label"}
    return [c for c in frame.columns if c not in skip]


#: The foundation's feature set ([1/6]), kept as the yardstick the point-in-time features must
#: beat: all-time counts per event type, lead age, and the lead fields used as they come - no
#: windows, recency, sessions, email engagement, decay, or signals derived from email or title.
_BASIC = re.compile(
    r"evt_.+_all|events_all|lead_age_days"
    r"|fit_(source|industry|country|log_company_size|budget|need|timeframe)"
)


def basic_feature_columns(columns: Iterable[str]) -> list[str]:
    """The subset of `columns` that makes up the basic (foundation) feature set, in order."""
    return [c for c in columns if _BASIC.fullmatch(str(c))]


def feature_groups(
    columns: Iterable[str], settings: FeatureSettings | None = None
) -> dict[str, str]:
    """feature -> report group: `lead_age`, `behaviour:<intent group>` (per-type counts go
    to their type's group, or `behaviour:ungrouped_events`), `behaviour:activity`,
    `behaviour:email_engagement`, `fit:email`, `fit:job_title`, `fit:company_size`,
    `fit:industry`, `fit:geography`, `fit:bant`, `fit:source`, `extra:<column>`, `other`."""
    settings = settings or FeatureSettings()
    slug_group = {sanitize(t): g for g, types in settings.event_groups.items() for t in types}
    groups = list(settings.event_groups)
    fit_map = {
        "fit_email_domain_type": "fit:email", "fit_email_local_kind": "fit:email",
        "fit_seniority": "fit:job_title", "fit_function": "fit:job_title",
        "fit_company_size_bucket": "fit:company_size", "fit_log_company_size": "fit:company_size",
        "fit_industry": "fit:industry", "fit_country": "fit:geography",
        "fit_region": "fit:geography", "fit_source": "fit:source",
        "fit_bant_answered": "fit:bant",
    }
    out: dict[str, str] = {}
    for col in columns:
        out[col] = _group_of(str(col), slug_group, groups, fit_map)
    return out


def _group_of(col: str, slug_group: dict[str, str], groups: list[str],
              fit_map: dict[str, str]) -> str:
    if col == "lead_age_days":
        return "lead_age"
    if col in fit_map:
        return fit_map[col]
    if re.fullmatch(r"fit_(budget|need|timeframe)(_rank)?", col):
        return "fit:bant"
    if col.startswith("extra_"):
        return f"extra:{col[len('extra_'):]}"
    if col in ("streak_unopened_emails", "days_since_email_open"):
        return "behaviour:email_engagement"
    if col.startswith(("seq_", "days_since_seq_")):
        return "behaviour:journey"
    if col.startswith("landing_"):
        g = _WINDOW_SUFFIX.sub("", col)[len("landing_"):]
        return f"behaviour:{g}" if g in groups else "behaviour:activity"
    if col.startswith(("bursts_", "burst_")):
        return "behaviour:activity"
    if col.startswith("email_") and col.endswith("_rate"):
        return "behaviour:email_engagement"
    if col.startswith("evt_") and _WINDOW_SUFFIX.search(col):
        slug = _WINDOW_SUFFIX.sub("", col)[len("evt_"):]
        g = slug_group.get(slug)
        return f"behaviour:{g}" if g else "behaviour:ungrouped_events"
    for g in groups:
        if col in (f"days_since_last_{g}", f"decay_{g}") or (
            col.startswith(f"grp_{g}_") and _WINDOW_SUFFIX.fullmatch(col[len(f"grp_{g}"):])
        ):
            return f"behaviour:{g}"
    if col.startswith(("events_", "active_days_", "sessions_", "trend_", "days_since_")) or \
            col == "decay_score":
        return "behaviour:activity"
    return "other"


def category_levels(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Category column -> its levels (plus "other"), to keep with a trained model."""
    out = {}
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            levels = [str(v) for v in frame[col].cat.categories]
            out[str(col)] = levels if OTHER in levels else levels + [OTHER]
    return out


def align_features(
    frame: pd.DataFrame,
    columns: Sequence[str],
    levels: Mapping[str, Sequence[str]],
) -> pd.DataFrame:
    """A scoring frame in the training shape: exactly `columns` in that order (missing
    count columns - `evt_*`, `grp_*`, `events_*`, `sessions_*`, `active_days_*` and the
    journey counts `seq_*`, `landing_*`, `streak_*`, `bursts_*` - become 0,
    other missing columns NaN; columns not in training are dropped), and every categorical
    column in `levels` recast to the training levels with unseen values mapped to "other"
    and missing ones to "unknown" (or "other" when "unknown" is not a level)."""
    out = {}
    n = len(frame)
    for col in columns:
        if col in frame.columns:
            values = frame[col]
        elif col.startswith(("evt_", "grp_", "events_", "sessions_", "active_days_", "seq_",
                             "landing_", "streak_", "bursts_")):
            values = pd.Series(np.zeros(n, np.int32), index=frame.index)
        else:
            values = pd.Series(np.full(n, np.nan), index=frame.index)
        if col in levels:
            lv = [str(v) for v in levels[col]]
            known = set(lv)
            fill = UNKNOWN if UNKNOWN in known else OTHER
            raw = values.astype("object").where(values.notna(), fill).astype(str)
            raw = raw.where(raw.isin(known), OTHER if OTHER in known else fill)
            values = pd.Series(pd.Categorical(raw, categories=lv), index=frame.index)
        out[col] = values
    return pd.DataFrame(out, index=frame.index)
