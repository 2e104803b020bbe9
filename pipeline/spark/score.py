"""`leadprop score --engine spark`: the scoring core (`models.scoring.score_open_leads`, or
the stage's wrapper of it) run once per lead-hash bucket on Spark (`buckets.run_buckets`).

As in `pipeline.streaming.score_in_chunks`, lead columns are typed on the whole table first
(`pin_extra_types`) and a witness lead that makes a text column non-numeric rides along
(not open, not scored) with every bucket, so each bucket types its features like the whole
table would. The buckets' scored rows, not-open leads and drift bin counts are joined on
the driver: the result equals the embedded engine's row for row, and every input lead is
scored or not open exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import scoring as core
from pipeline.spark.buckets import run_buckets
from pipeline.streaming import _not_open_rider


def score_spark(
    spark: Any,
    leads: pd.DataFrame,
    events_source: str | Path | None,
    bundle: Any,
    fs: Any,
    as_of: pd.Timestamp,
    *,
    n_buckets: int,
    score: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> core.ScoredLeads:
    """The open leads at `as_of` scored on Spark, equal to `score(leads, events, ...)`.

    `events_source`: the typed (interim) events as Parquet or `table:<name>`, None for
    none. `score` (default: the core) is called per bucket as the core is; `kwargs` go to
    it (`chunk_size`, `reference`; a driver-side `progress` is dropped)."""
    score = core.score_open_leads if score is None else score
    kwargs.pop("progress", None)
    pinned, witness = core.pin_extra_types(leads, fs)
    if pinned is leads:  # never touch the caller's frame
        pinned = leads.copy(deep=False)
    pinned.attrs = dict(leads.attrs)
    riders = _not_open_rider(pinned.iloc[witness]) if len(witness) else None

    def one(part: pd.DataFrame, events: pd.DataFrame | None, _: Any) -> core.ScoredLeads:
        rider_ids: set[str] = set()
        if riders is not None:
            extra = riders.loc[~riders["lead_id"].astype(str).isin(set(part["lead_id"].astype(
                str)))]
            rider_ids = set(extra["lead_id"].astype(str))
            part = pd.concat([part, extra])
            part.attrs = dict(pinned.attrs)
        result = score(part, events, bundle, fs, as_of, **kwargs)
        if rider_ids:
            gone = result.not_open
            result.not_open = gone.loc[~gone["lead_id"].astype(str).isin(rider_ids)]
        return result

    parts = list(run_buckets(spark, pinned, events_source, n_buckets, one))
    if not parts:  # no leads: the core's own empty result
        return score(pinned, None, bundle, fs, as_of, **kwargs)
    table = pd.concat([p.table for p in parts], ignore_index=True)
    table = table.sort_values("lead_id", kind="stable").reset_index(drop=True)
    gone = pd.concat([p.not_open for p in parts], ignore_index=True)
    pos = pd.Index(pinned["lead_id"].astype(str)).get_indexer(gone["lead_id"].astype(str))
    gone = gone.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
    counts: dict[str, np.ndarray] = {}
    for p in parts:
        for name, c in p.drift_counts.items():
            counts[name] = counts[name] + c if name in counts else np.array(c, copy=True)
    return core.ScoredLeads(table, gone, counts)


def score_stage_spark(params: Any, inputs: Any, stream: Any, bundle: Any, fs: Any,
                      as_of: pd.Timestamp, **kwargs: Any) -> core.ScoredLeads:
    """The score stage's scoring step on Spark (`leadprop score --engine spark`): the
    interim (typed) events Parquet as the stage found it, the session from `spark:`.
    A raw events export (`--events`) must go through `leadprop ingest` first: its rows are
    validated against the contract on the embedded engine only."""
    import pyarrow.parquet as pq

    from pipeline.errors import ConfigError
    from pipeline.spark.session import spark_session

    if stream is not None and stream.validate:
        raise ConfigError(
            f"--engine spark scores typed events (the interim Parquet `leadprop ingest` "
            f"writes); {stream.path} is a raw export. Run `leadprop ingest --events "
            f"{stream.path}` and score without --events, or use --engine embedded.")
    source = stream.path if stream is not None else None
    if source is not None:
        inputs.n_events = int(pq.ParquetFile(source).metadata.num_rows)
    settings = params.spark
    return score_spark(spark_session(settings), inputs.leads, source, bundle, fs, as_of,
                       n_buckets=settings.partitions, **kwargs)
