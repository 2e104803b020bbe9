"""Point-in-time snapshots (the spine) and labels.

A training example is a (lead, as_of) pair at `as_of = created_at + age days` for each age
in `SnapshotSettings.ages_days`. Its label is 1 when the lead converted within the horizon
after as_of: `as_of < converted_at <= as_of + horizon_days`.

Snapshots that are not examples, with the status `snapshot_report` counts them under:

- `already_converted`: converted_at <= as_of (the boundary converted_at == as_of included);
- `lost`: lost_at <= as_of (only when the leads table has `lost_at`);
- `censored`: as_of + horizon > data_end: the data cannot tell yet whether the lead
  converts within the horizon, so the snapshot is left out rather than called negative;
- `converted_without_date`: converted == 1 but converted_at is missing. Every snapshot of
  such a lead is dropped: its label could be 0 or 1 and "already converted" is just as
  possible, so any choice would invent a label. The count shows how many leads this costs;
- `no_created_at`: created_at is missing, so the lead has no age.

A lead counts as converted when `converted == 1` (or, without a `converted` column, when
converted_at is set); a converted_at on a lead with converted == 0 is ignored.
Scoring uses the same rules with one as_of for every lead and no label (`scoring_spine`).

Lead-level mode: a leads table without a `created_at` column (an export with one row per
lead and pre-aggregated behaviour, no timestamps) has no lead age, so each lead is one
example with no as_of (NaT) and label = converted; the spine has no `age_days` or
`created_at` column. Scoring takes the leads neither converted nor lost, again with no
as_of. The end of such data is the export moment `leads.attrs["exported_at"]` (set by
ingest), see `data_end`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from features.behaviour import as_datetime_us
from features.settings import SnapshotSettings

SPINE_COLUMNS = ("lead_id", "as_of", "age_days", "created_at", "label")
NOT_OPEN_REASONS = ("converted", "lost", "not yet created", "no created_at")


def is_lead_level(leads: pd.DataFrame) -> bool:
    """True for a lead-level table: no `created_at` column (see the module docstring)."""
    return "created_at" not in leads.columns


def _lead_level_spine(leads: pd.DataFrame) -> pd.DataFrame:
    """One example per lead: `lead_id`, `as_of` (NaT), `label` (converted), input order."""
    flag, _, _ = _outcome(leads)
    return pd.DataFrame({
        "lead_id": leads["lead_id"].reset_index(drop=True),
        "as_of": pd.Series(pd.NaT, index=range(len(leads)), dtype="datetime64[us]"),
        "label": flag.astype(np.int8),
    })


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")


def _outcome(leads: pd.DataFrame) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """(converted flag, converted_at or NaT, lost_at or NaT) as aligned arrays/Series."""
    n = len(leads)
    conv_at = (as_datetime_us(leads["converted_at"]).reset_index(drop=True)
               if "converted_at" in leads.columns
               else pd.Series(pd.NaT, index=range(n), dtype="datetime64[us]"))
    if "converted" in leads.columns:
        flag = pd.to_numeric(leads["converted"], errors="coerce").fillna(0).to_numpy() == 1
    else:
        flag = conv_at.notna().to_numpy()
    conv_at = conv_at.where(pd.Series(flag))
    lost_at = (as_datetime_us(leads["lost_at"]).reset_index(drop=True)
               if "lost_at" in leads.columns
               else pd.Series(pd.NaT, index=range(n), dtype="datetime64[us]"))
    return flag, conv_at, lost_at


def _candidates(
    leads: pd.DataFrame, settings: SnapshotSettings, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Every (lead, age) candidate with its `status` ('example' or a reason) and label."""
    _require(leads, ("lead_id", "created_at"), "leads")
    created = as_datetime_us(leads["created_at"]).reset_index(drop=True)
    flag, conv_at, lost_at = _outcome(leads)
    end = pd.Timestamp(data_end)
    horizon = pd.Timedelta(days=settings.horizon_days)
    lead_id = leads["lead_id"].reset_index(drop=True)
    parts = []
    for age in settings.ages_days:
        as_of = created + pd.Timedelta(days=age)
        status = np.full(len(leads), "example", dtype=object)
        status[(as_of + horizon > end).to_numpy()] = "censored"
        status[(lost_at <= as_of).to_numpy()] = "lost"
        status[(conv_at <= as_of).to_numpy()] = "already_converted"
        status[flag & conv_at.isna().to_numpy()] = "converted_without_date"
        status[created.isna().to_numpy()] = "no_created_at"
        label = ((conv_at > as_of) & (conv_at <= as_of + horizon)).to_numpy().astype(np.int8)
        parts.append(pd.DataFrame({
            "lead_id": lead_id, "as_of": as_of, "age_days": np.int32(age),
            "created_at": created, "label": label, "status": status,
        }))
    return pd.concat(parts, ignore_index=True)


def training_spine(
    leads: pd.DataFrame, settings: SnapshotSettings, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Training examples: columns `lead_id`, `as_of`, `age_days`, `created_at`, `label`
    (0/1 int8), one row per (lead, age) that is an example, sorted by lead_id then as_of.

    `attrs["dropped"]` holds the counts of left-out snapshots by reason
    (see `snapshot_report`). A lead-level table gives `lead_id`, `as_of` (NaT), `label`:
    one row per lead, nothing dropped.
    """
    if is_lead_level(leads):
        _require(leads, ("lead_id",), "leads")
        spine = _lead_level_spine(leads).sort_values("lead_id", kind="stable")
        spine = spine.reset_index(drop=True)
        spine.attrs["dropped"] = {k: 0 for k in _DROP_REASONS}
        return spine
    cand = _candidates(leads, settings, data_end)
    keep = cand["status"].to_numpy() == "example"
    spine = cand.loc[keep, list(SPINE_COLUMNS)]
    spine = spine.sort_values(["lead_id", "as_of"], kind="stable").reset_index(drop=True)
    spine.attrs["dropped"] = _counts(cand)
    return spine


_DROP_REASONS = ("censored", "already_converted", "lost", "converted_without_date",
                 "no_created_at")


def _counts(cand: pd.DataFrame) -> dict[str, int]:
    counts = cand["status"].value_counts()
    return {k: int(counts.get(k, 0)) for k in _DROP_REASONS}


def snapshot_report(
    leads: pd.DataFrame, settings: SnapshotSettings, data_end: pd.Timestamp
) -> dict:
    """JSON-able counts: candidate snapshots, examples, positives, and drops by reason
    (plus leads converted without a date). A lead-level table reports `mode: lead_level`
    and one example per lead."""
    if is_lead_level(leads):
        spine = _lead_level_spine(leads)
        return {
            "mode": "lead_level",
            "candidates": int(len(spine)),
            "examples": int(len(spine)),
            "positives": int(spine["label"].sum()),
            "dropped": {k: 0 for k in _DROP_REASONS},
            "leads_converted_without_date": 0,
            "data_end": pd.Timestamp(data_end).isoformat(),
            "by_age": {},
        }
    cand = _candidates(leads, settings, data_end)
    ex = cand[cand["status"] == "example"]
    flag, conv_at, _ = _outcome(leads)
    return {
        "candidates": int(len(cand)),
        "examples": int(len(ex)),
        "positives": int(ex["label"].sum()),
        "dropped": _counts(cand),
        "leads_converted_without_date": int((flag & conv_at.isna().to_numpy()).sum()),
        "data_end": pd.Timestamp(data_end).isoformat(),
        "by_age": {
            int(age): {"examples": int(len(g)), "positives": int(g["label"].sum())}
            for age, g in ex.groupby("age_days")
        },
    }


def scoring_spine(
    leads: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(open, not_open) at one scoring moment.

    open: `lead_id`, `as_of`, `created_at` for leads created at or before as_of and
    neither converted nor lost by then (input order). not_open: `lead_id`, `reason` — one of
    'converted' (converted_at <= as_of, or converted without a date), 'lost'
    (lost_at <= as_of), 'not yet created' (created_at > as_of), 'no created_at'.
    Every input lead is in exactly one of the two frames. A lead-level table gives open
    leads `lead_id`, `as_of` (NaT: no lead age, see the module docstring), not converted
    and not lost by as_of.
    """
    at = pd.Timestamp(as_of)
    if at.tzinfo is not None:
        at = at.tz_convert("UTC").tz_localize(None)
    if is_lead_level(leads):
        return _lead_level_open(leads, at)
    _require(leads, ("lead_id", "created_at"), "leads")
    created = as_datetime_us(leads["created_at"]).reset_index(drop=True)
    flag, conv_at, lost_at = _outcome(leads)
    reason = np.full(len(leads), None, dtype=object)
    reason[created.isna().to_numpy()] = "no created_at"
    reason[(created > at).to_numpy()] = "not yet created"
    reason[(lost_at <= at).to_numpy() & (reason == None)] = "lost"  # noqa: E711
    converted = (conv_at <= at).to_numpy() | (flag & conv_at.isna().to_numpy())
    reason[converted & (created <= at).to_numpy()] = "converted"
    lead_id = leads["lead_id"].reset_index(drop=True)
    is_open = pd.isna(reason)
    open_ = pd.DataFrame({
        "lead_id": lead_id[is_open].reset_index(drop=True),
        "as_of": pd.Series(at, index=range(int(is_open.sum()))).astype("datetime64[us]"),
        "created_at": created[is_open].reset_index(drop=True),
    })
    not_open = pd.DataFrame({
        "lead_id": lead_id[~is_open].reset_index(drop=True),
        "reason": pd.Series(reason[~is_open], dtype="str"),
    })
    return open_, not_open


def _lead_level_open(leads: pd.DataFrame, at: pd.Timestamp) -> tuple[pd.DataFrame,
                                                                     pd.DataFrame]:
    _require(leads, ("lead_id",), "leads")
    flag, conv_at, lost_at = _outcome(leads)
    reason = np.full(len(leads), None, dtype=object)
    reason[(lost_at <= at).to_numpy()] = "lost"
    reason[flag | (conv_at <= at).to_numpy()] = "converted"
    lead_id = leads["lead_id"].reset_index(drop=True)
    is_open = pd.isna(reason)
    open_ = pd.DataFrame({
        "lead_id": lead_id[is_open].reset_index(drop=True),
        "as_of": pd.Series(pd.NaT, index=range(int(is_open.sum())), dtype="datetime64[us]"),
    })
    not_open = pd.DataFrame({
        "lead_id": lead_id[~is_open].reset_index(drop=True),
        "reason": pd.Series(reason[~is_open], dtype="str"),
    })
    return open_, not_open


# The robust data end (`data_end`): moments beyond the TAIL_QUANTILE by more than
# max(TAIL_MIN_GAP, TAIL_GAP_FACTOR x the typical gap between moments) are an isolated tail.
TAIL_QUANTILE = 0.999
TAIL_MIN_GAP = pd.Timedelta(days=28)
TAIL_GAP_FACTOR = 10
TAIL_MIN_MOMENTS = 1000  # below this the 99.9th percentile is the maximum itself


class Moments(Protocol):
    """What `robust_max_of` reads of a set of moments (int64 epoch microseconds, no NaT):
    their count `n`, `lo` and `hi`, a lower bound `distinct_lb` on how many are distinct
    (0 when unknown), the `top(k)` largest ascending, and all `distinct()` ones sorted.
    `ArrayMoments` holds them in memory; the Spark engine computes them on the cluster
    (`pipeline.spark.features.SparkMoments`), so the driver never holds every event."""

    n: int
    lo: int
    hi: int
    distinct_lb: int

    def top(self, k: int) -> np.ndarray: ...

    def distinct(self) -> np.ndarray: ...


class ArrayMoments:
    """`Moments` of values in memory (any order)."""

    def __init__(self, values: np.ndarray, distinct_lb: int = 0) -> None:
        self.values = np.sort(np.asarray(values, dtype=np.int64))
        self.n = len(self.values)
        self.lo = int(self.values[0]) if self.n else 0
        self.hi = int(self.values[-1]) if self.n else 0
        self.distinct_lb = distinct_lb

    def top(self, k: int) -> np.ndarray:
        return self.values[max(self.n - k, 0):]

    def distinct(self) -> np.ndarray:
        return np.unique(self.values)


class UnionMoments:
    """`Moments` of the union of several sets (their top(k) and distinct values merged)."""

    def __init__(self, parts: list[Moments]) -> None:
        self.parts = [p for p in parts if p.n]
        self.n = sum(p.n for p in self.parts)
        self.lo = min((p.lo for p in self.parts), default=0)
        self.hi = max((p.hi for p in self.parts), default=0)
        self.distinct_lb = max((p.distinct_lb for p in self.parts), default=0)

    def top(self, k: int) -> np.ndarray:
        merged = np.sort(np.concatenate([p.top(min(k, p.n)) for p in self.parts]))
        return merged[max(len(merged) - k, 0):]

    def distinct(self) -> np.ndarray:
        return np.unique(np.concatenate([p.distinct() for p in self.parts]))


def lead_moments(leads: pd.DataFrame) -> ArrayMoments:
    """The leads' created_at, converted_at and lost_at moments (NaT left out)."""
    parts = [as_datetime_us(leads[col]).dropna().to_numpy().view(np.int64)
             for col in ("created_at", "converted_at", "lost_at") if col in leads.columns]
    return ArrayMoments(np.concatenate(parts) if parts else np.array([], dtype=np.int64))


def data_end(leads: pd.DataFrame, events: pd.DataFrame | None = None, *,
             event_moments: Moments | None = None) -> pd.Timestamp:
    """The last moment the data knows about (raises when there is no date at all).

    The export moment `leads.attrs["exported_at"]` (set by ingest) is authoritative when
    set. Otherwise it is the latest of created_at, converted_at, lost_at and event
    timestamps, robust to a few mistyped dates: the moments later than the 99.9th
    percentile by more than max(28 days, 10 x the typical gap) are an isolated top tail and
    are left out (the typical gap is the median gap between consecutive distinct moments).
    With fewer than 1,000 moments there is no such tail and the latest moment is used.
    One lost_at typed as 2062 thus does not move the data end; a real last busy month
    does, since its moments are close together and to the rest.

    The event timestamps come from `events` or, summarised, from `event_moments` (the
    Spark engine's, computed where the events are).
    """
    if leads.attrs.get("exported_at"):
        return pd.Timestamp(leads.attrs["exported_at"]).as_unit("us")
    parts: list[Moments] = [lead_moments(leads)]
    if events is not None and "timestamp" in events.columns and len(events):
        parts.append(ArrayMoments(
            as_datetime_us(events["timestamp"]).dropna().to_numpy().view(np.int64)))
    if event_moments is not None:
        parts.append(event_moments)
    moments = UnionMoments(parts)
    if not moments.n:
        raise ValueError("data_end: the leads and events hold no dates")
    return pd.Timestamp(robust_max_of(moments), unit="us")


def robust_max(moments: pd.Series) -> pd.Timestamp:
    """The latest of `moments` (datetime, no NaT) once an isolated top tail is left out
    (the rule in `data_end`)."""
    values = moments.to_numpy(dtype="datetime64[us]").astype(np.int64)
    return pd.Timestamp(robust_max_of(ArrayMoments(values)), unit="us")


def tail_count(n: int) -> int:
    """How many of the largest of `n` moments `robust_max_of` reads: from the 99.9th
    percentile (numpy's "lower" quantile, index floor((n - 1) q)) up."""
    return n - int(np.floor((n - 1) * TAIL_QUANTILE))


def robust_max_of(moments: Moments) -> int:
    """The rule of `data_end` on a summary of the moments (epoch microseconds).

    The typical gap needs every distinct moment only when it could matter: the median gap
    of D distinct moments spanning R is below 4 R / (D - 1) (at most a quarter of the D - 1
    gaps can be 4 R / (D - 1) or more), so when 10 x that is at most 28 days the limit is
    28 days without reading them.
    """
    if moments.n < TAIL_MIN_MOMENTS:
        return int(moments.hi)
    top = moments.top(tail_count(moments.n))
    min_gap = TAIL_MIN_GAP.value // 1000
    gap = min_gap
    span = int(moments.hi) - int(moments.lo)
    if not (moments.distinct_lb >= 1
            and 4 * TAIL_GAP_FACTOR * span <= min_gap * (moments.distinct_lb - 1)):
        gaps = np.diff(moments.distinct())
        typical = int(np.median(gaps)) if len(gaps) else 0
        gap = max(min_gap, TAIL_GAP_FACTOR * typical)
    limit = int(top[0]) + gap
    return int(top[top <= limit][-1])


def outcome_labels(spine: pd.DataFrame, leads: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """1 where the spine row's lead converted after its `as_of` and within `horizon_days`
    (the training label's definition), else 0; int8, aligned with `spine`. A lead missing
    from `leads` or without a conversion date is 0."""
    _require(spine, ("lead_id", "as_of"), "spine")
    _require(leads, ("lead_id",), "leads")
    _, conv_at, _ = _outcome(leads)
    by_lead = pd.Series(conv_at.to_numpy(), index=leads["lead_id"].astype(str).to_numpy())
    by_lead = by_lead[~by_lead.index.duplicated()]
    conv = pd.to_datetime(by_lead.reindex(spine["lead_id"].astype(str).to_numpy()).to_numpy())
    at = as_datetime_us(spine["as_of"]).to_numpy()
    horizon = np.timedelta64(int(round(float(horizon_days) * 86_400_000_000)), "us")
    conv = conv.to_numpy(dtype="datetime64[us]")
    ok = ~np.isnat(conv) & ~np.isnat(at)
    out = np.zeros(len(spine), dtype=np.int8)
    out[ok] = ((conv[ok] > at[ok]) & (conv[ok] <= at[ok] + horizon)).astype(np.int8)
    return out


def sample_spine(spine: pd.DataFrame, max_leads: int, seed: int = 0
                 ) -> tuple[pd.DataFrame, dict]:
    """The training spine of at most `max_leads` leads, and the sampling report.

    At scale (more leads than one machine holds features for, README "Spark engine"), the
    model trains on a sample: whole leads (every snapshot of a drawn lead, none of the
    others), stratified by outcome (a lead is `converted` when any of its snapshots is a
    positive example, else `not_converted`), with proportional allocation: each stratum
    keeps round(share x its leads), share = max_leads / leads, so the sample's conversion
    rate is the table's and the probabilities need no reweighting. A lead is drawn when its
    seeded hash ranks among the lowest of its stratum: the same leads for the same seed
    whatever the row order, and a larger sample contains a smaller one. The report records
    each stratum's leads, drawn leads and weight (leads / drawn: what one drawn lead stands
    for); the spine keeps its order. A spine of at most `max_leads` leads is returned whole.
    """
    ids = spine["lead_id"].astype(str)
    positive = spine["label"].astype(bool).groupby(ids, sort=True).any()
    n = len(positive)
    report: dict = {"max_leads": int(max_leads), "seed": int(seed), "leads": n,
                    "snapshots": int(len(spine)), "sampled": n > max_leads}
    if n <= max_leads:
        return spine, {**report, "drawn_leads": n, "drawn_snapshots": int(len(spine))}
    share = max_leads / n
    rank = pd.Series(pd.util.hash_array((f"{seed}\x1f" + positive.index).to_numpy(
        dtype=object)), index=positive.index)
    keep: list[pd.Index] = []
    strata = {}
    for name, members in (("converted", positive.index[positive.to_numpy()]),
                          ("not_converted", positive.index[~positive.to_numpy()])):
        k = int(round(share * len(members)))
        keep.append(rank.loc[members].sort_values(kind="stable").index[:k])
        strata[name] = {"leads": int(len(members)), "drawn_leads": k,
                        "weight": float(len(members) / k) if k else None}
    drawn = ids.isin(keep[0].append(keep[1])).to_numpy()
    out = spine.loc[drawn].reset_index(drop=True)
    out.attrs = dict(spine.attrs)
    return out, {**report, "share": share, "drawn_leads": int(sum(len(k) for k in keep)),
                 "drawn_snapshots": int(drawn.sum()), "strata": strata}
