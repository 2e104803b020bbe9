"""`leadprop features --engine spark`: the training frame built by the embedded feature
builder (`features.build.build_features`) once per lead-hash bucket on Spark.

The spine (`training_spine`) is built once on the driver from the leads and the data end;
the data end's event part is summarised on Spark (`SparkMoments`), so the driver never
holds the events. Each bucket gets its leads,
their snapshots and all of their events, plus riders that make it type its columns like
the whole table: one event per event type of the whole events table on a lead that is in
no spine (so every bucket has every `evt_<type>_*` column; the rider's events are dropped
from the counts because its lead is not in the spine), and the witness leads of
`pin_extra_types` (never in a spine). The buckets' frames are put back in spine order and
their data-derived categoricals get the whole table's levels (sorted observed values +
"unknown", `features.fit`). The activity-after-outcome counts are summed over buckets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.audit import _round, activity_after_outcome
from features.build import build_features
from features.fit import UNKNOWN
from features.settings import FeatureSettings
from models.scoring import pin_extra_types
from pipeline.spark.buckets import read_events, restore_dtypes, run_buckets
from pipeline.streaming import _not_open_rider, bucket_of

#: lead id of the event-type rider: no export has it (a NUL byte cannot come from ingest).
VOCAB_LEAD = "\x00leadprop-event-types"
POS = "__spine_pos"


class SparkMoments:
    """The events' timestamps as `features.snapshots.Moments`, computed on Spark: one
    aggregate (count, min, max, and distinct minutes as the distinct lower bound), the
    top k by a Spark top-k, and every distinct moment only when the data-end rule needs
    the median gap (few distinct moments for their span, see `robust_max_of`). The driver
    holds a few thousand values, not the events."""

    def __init__(self, spark: Any, source: str | Path) -> None:
        from pyspark.sql import functions as F

        frame, _ = read_events(spark, source)
        self._us = (frame.select(F.unix_micros(F.col("timestamp").cast("timestamp"))
                                 .alias("us")).where("us IS NOT NULL"))
        row = self._us.agg(F.count("us").alias("n"), F.min("us").alias("lo"),
                           F.max("us").alias("hi"),
                           F.countDistinct(F.floor(F.col("us") / 60_000_000)).alias("minutes"),
                           ).collect()[0]
        self.n = int(row["n"])
        self.lo, self.hi = int(row["lo"] or 0), int(row["hi"] or 0)
        self.distinct_lb = int(row["minutes"])

    def top(self, k: int) -> np.ndarray:
        rows = self._us.orderBy(self._us["us"].desc()).limit(int(k)).collect()
        return np.sort(np.array([r["us"] for r in rows], dtype=np.int64))

    def distinct(self) -> np.ndarray:
        rows = self._us.distinct().collect()
        return np.sort(np.array([r["us"] for r in rows], dtype=np.int64))


def event_types(spark: Any, source: str | Path) -> list[Any]:
    """The distinct non-null event types of the whole events source."""
    frame, _ = read_events(spark, source)
    rows = frame.select("event_type").where("event_type IS NOT NULL").distinct().collect()
    return sorted(r["event_type"] for r in rows)


class SparkFeatureBuilder:
    """Called like `build_features(spine, leads, events, fs)` by the features stage, with
    `events` None; builds on Spark from `events_source` and keeps
    `activity_after_outcome` (the audit's counts, summed over buckets)."""

    def __init__(self, spark: Any, events_source: str | Path | None, n_buckets: int) -> None:
        self.spark = spark
        self.events_source = events_source
        self.n_buckets = n_buckets
        self.activity_after_outcome: dict[str, Any] | None = None

    def __call__(self, spine: pd.DataFrame, leads: pd.DataFrame, events: Any,
                 fs: FeatureSettings) -> pd.DataFrame:
        frame, activity = build_features_spark(self.spark, spine, leads, self.events_source,
                                               fs, self.n_buckets)
        self.activity_after_outcome = activity
        return frame


def build_features_spark(
    spark: Any,
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events_source: str | Path | None,
    fs: FeatureSettings,
    n_buckets: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(`build_features(spine, leads, events, fs)`, `activity_after_outcome(leads,
    events)`) computed per bucket on Spark; equal to the embedded results."""
    pinned, witness = pin_extra_types(leads, fs)
    pinned = pinned.copy(deep=False) if pinned is leads else pinned
    pinned.attrs = dict(leads.attrs)
    riders = _not_open_rider(pinned.iloc[witness]) if len(witness) else None
    types = event_types(spark, events_source) if events_source is not None else []
    if (pinned["lead_id"].astype(str) == VOCAB_LEAD).any():
        raise ValueError(f"lead_id {VOCAB_LEAD!r} is reserved")
    spine = spine.assign(**{POS: np.arange(len(spine))})
    spine_bucket = bucket_of(spine["lead_id"], n_buckets)

    def spine_of(bucket: int) -> pd.DataFrame:
        return spine.loc[spine_bucket == bucket]

    def one(part: pd.DataFrame, events: pd.DataFrame | None, spine_part: pd.DataFrame
            ) -> tuple[pd.DataFrame, dict[str, Any]]:
        activity = activity_after_outcome(part, events)
        leads_in = part
        if riders is not None:
            extra = riders.loc[~riders["lead_id"].astype(str).isin(set(part["lead_id"].astype(
                str)))]
            leads_in = pd.concat([part, extra])
            leads_in.attrs = dict(part.attrs)
        events_in = events
        if events is not None and types:
            vocab = events.iloc[:0].reindex(range(len(types)))
            vocab = restore_dtypes(vocab.assign(lead_id=VOCAB_LEAD, event_type=types,
                                                timestamp=pd.Timestamp("2000-01-01")),
                                   events.iloc[:0])
            events_in = pd.concat([events, vocab], ignore_index=True)
        return build_features(spine_part, leads_in, events_in, fs), activity

    frames, activities = [], []
    for frame, activity in run_buckets(spark, pinned, events_source, n_buckets, one,
                                       extra=spine_of):
        frames.append(frame)
        activities.append(activity)
    frame = _combine(frames)
    order = np.argsort(frame[POS].to_numpy(), kind="stable")
    frame = frame.drop(columns=POS).take(order).set_axis(spine.index)
    return frame, _sum_activity(activities)


def _combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The bucket frames stacked (the list is emptied as they go in, so the driver holds
    about two copies at most); a categorical whose levels differ between buckets (levels
    observed in the data) gets the whole table's: sorted values + "unknown"."""
    fixed: dict[str, pd.CategoricalDtype] = {}
    for col in frames[0].columns:
        dtypes = [f[col].dtype for f in frames]
        if not all(isinstance(d, pd.CategoricalDtype) for d in dtypes):
            continue
        cats = [list(d.categories) for d in dtypes]
        if all(c == cats[0] for c in cats):
            continue
        seen = set().union(*cats)
        levels = sorted(seen - {UNKNOWN}) + ([UNKNOWN] if UNKNOWN in seen else [])
        fixed[col] = pd.CategoricalDtype(levels, ordered=dtypes[0].ordered)
    if fixed:
        frames[:] = [f.astype(fixed) for f in frames]
    frame = pd.concat(frames, ignore_index=True)
    frames.clear()
    return frame


def _sum_activity(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`activity_after_outcome` of the whole table from its buckets' (counts add up, the
    share is recomputed)."""
    def add(blocks: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ("leads_with_outcome_date", "leads_with_events", "events",
                "events_at_or_after", "leads_with_activity_after")
        total = {k: int(sum(b.get(k, 0) for b in blocks)) for k in keys}
        share = (_round(total["events_at_or_after"] / total["events"]) if total["events"]
                 else None)
        return {**{k: total[k] for k in keys[:4]}, "share": share,
                "leads_with_activity_after": total["leads_with_activity_after"]}

    out: dict[str, Any] = add(parts)
    out["by_outcome"] = {k: add([p["by_outcome"][k] for p in parts])
                         for k in ("converted", "lost")}
    return out


def spark_inputs(params: Any, events: str | Path | None = None
                 ) -> tuple[pd.DataFrame, pd.Timestamp, SparkFeatureBuilder]:
    """(leads, data end, builder) for the features stage on Spark: the interim leads (read
    on the driver, as the embedded stage does), the data end of those leads and of the
    events from `events` (a Parquet path or `table:<name>`) or `paths.interim/events.parquet`
    (`SparkMoments`), and the session from `spark:` params."""
    from features.snapshots import data_end
    from pipeline.errors import DataError
    from pipeline.io import check_manifest
    from pipeline.spark.session import spark_session

    interim = Path(params.paths.interim)
    leads_path, events_path = interim / "leads.parquet", interim / "events.parquet"
    if not leads_path.exists():
        raise DataError(f"{leads_path}: not found; run `leadprop ingest` (or `dvc repro`) "
                        "first", file=str(leads_path))
    source: str | Path | None = events
    if events is None:
        check_manifest(interim, [leads_path.name, events_path.name])
        source = events_path if events_path.exists() else None
    leads = pd.read_parquet(leads_path)
    spark = spark_session(params.spark)
    moments = (SparkMoments(spark, source) if source is not None
               and not leads.attrs.get("exported_at") else None)
    end = data_end(leads, event_moments=moments)
    return leads, end, SparkFeatureBuilder(spark, source, params.spark.partitions)
