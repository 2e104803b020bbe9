"""Behavioural features: what a lead did strictly before each snapshot's `as_of`.

Method (set-oriented, no Python loop per lead; cost O(events + snapshots x event types)):

1. `lead_id` and `event_type` become integer codes (pandas factorize, i.e. Arrow
   dictionary encoding); the events are sorted by (lead, timestamp) - skipped when the
   input is already in that order, as the contract's interim files are; large inputs are
   sorted by an in-memory DuckDB over the integer columns, small ones by numpy.
2. For every snapshot and every window boundary `b` (as_of, as_of - w days, ...) numpy finds
   `pos(b)` = the index of the lead's first event with `timestamp >= b` in that sorted array,
   so "events before as_of" is the slice [lead start, pos(as_of)) and a window is
   [pos(as_of - w), pos(as_of)). The comparison is strict: an event at exactly `as_of`
   is never seen; one at exactly `as_of - w days` is inside the w-day window.
3. Counts are differences of prefix sums over that array (exact integers); recency is a
   binary search for the last event of a group before pos(as_of); the decay score sums
   each snapshot's slice in array order.

Every feature of a snapshot therefore depends only on the set of its lead's events before
`as_of` (ties are summed in a fixed order), which the leakage property tests pin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.arrays import last_before, prefix_counts, run_starts
from features.journey import INT_PREFIXES as JOURNEY_INT
from features.journey import add_journey_features, journey_columns
from features.settings import FeatureSettings

DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
_PAIR_CHUNK = 4_000_000  # (snapshot, event) pairs per decay chunk: bounds memory
_NUMPY_SORT_MAX = 1_000_000  # rows; above this the sort runs in DuckDB


def window_label(days: int | None) -> str:
    """Column suffix of a window: `7d`, `30d`, ... or `all`."""
    return "all" if days is None else f"{days}d"


def sanitize(name: str) -> str:
    """An event type or group name as a column-name fragment (lower case, [a-z0-9_])."""
    out = re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")
    return out or "unnamed"


def type_slugs(types: Sequence[str]) -> list[str]:
    """Unique column fragments for the sorted event types (collisions get `_2`, `_3`...)."""
    seen: dict[str, int] = {}
    out = []
    for t in types:
        slug = sanitize(t)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}_{seen[slug]}"
        seen.setdefault(slug, 1)
        out.append(slug)
    return out


@dataclass(frozen=True)
class _Events:
    """Events of the spine's leads, sorted by (k, ts)."""

    k: np.ndarray  # int32 lead key
    ts: np.ndarray  # int64 epoch microseconds
    c: np.ndarray  # int16 event type code
    types: list[str]  # code -> raw event type (all types seen in the events frame, sorted)
    start: np.ndarray  # int64, len K + 1: lead k owns [start[k], start[k + 1])


def as_datetime_us(values: pd.Series) -> pd.Series:
    """A datetime column as naive UTC datetime64[us] (input untouched; no copy when it
    already is one)."""
    if values.dtype == "datetime64[us]":
        return values
    out = pd.to_datetime(values)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[us]")


def as_epoch_us(values: pd.Series) -> np.ndarray:
    """Datetimes as int64 epoch microseconds (NaT -> int64 min)."""
    return as_datetime_us(values).to_numpy().view(np.int64)


def _encode_events(lead_keys: pd.Index, events: pd.DataFrame | None) -> _Events:
    """Integer-encode the events of the given leads and sort them by (lead, timestamp).

    Events of leads not in `lead_keys`, or with a missing type or timestamp, are dropped.
    Sorting happens only when the input is not already in (lead_id, timestamp) order.
    """
    n_keys = len(lead_keys)
    empty = _Events(
        k=np.zeros(0, np.int32), ts=np.zeros(0, np.int64), c=np.zeros(0, np.int16),
        types=[], start=np.zeros(n_keys + 1, np.int64),
    )
    if events is None or len(events) == 0:
        return empty
    missing = {"lead_id", "timestamp", "event_type"} - set(events.columns)
    if missing:
        raise ValueError(f"events: missing column(s) {sorted(missing)}")
    type_codes, types = pd.factorize(events["event_type"], sort=True)
    types = [str(t) for t in types]
    if not types:
        return empty
    if len(types) > np.iinfo(np.int16).max:
        raise ValueError(f"events: {len(types)} distinct event types; at most 32767 supported")
    if len(events) >= _NUMPY_SORT_MAX and _looks_unsorted(events) and \
            pd.api.types.is_string_dtype(events["lead_id"]) and \
            pd.api.types.is_string_dtype(events["event_type"]):
        return _encode_and_sort_in_duckdb(lead_keys, events, types)
    c = type_codes.astype(np.int16)
    del type_codes
    ev_codes, ev_leads = pd.factorize(events["lead_id"])
    key_of = lead_keys.get_indexer(pd.Index(ev_leads).astype(str)).astype(np.int32)
    k = np.append(key_of, np.int32(-1))[ev_codes]  # code -1 (missing id) -> key -1
    del ev_codes
    # A view of the input's timestamps (never written to); copied only when filtering.
    ts = as_datetime_us(events["timestamp"]).to_numpy().view(np.int64)
    keep = (k >= 0) & (c >= 0) & (ts != np.iinfo(np.int64).min)
    if not keep.all():
        k, ts, c = k[keep], ts[keep], c[keep]
    del keep
    if not _is_sorted(k, ts):
        k, ts, c = _sort_events(k, ts, c)
    start = np.zeros(n_keys + 1, np.int64)
    np.cumsum(np.bincount(k, minlength=n_keys), out=start[1:])
    return _Events(k=k, ts=ts, c=c, types=types, start=start)


def _looks_unsorted(events: pd.DataFrame, samples: int = 10_000) -> bool:
    """A cheap look at random adjacent rows: is the frame visibly not in
    (lead_id, timestamp) order? (False does not prove it sorted; `_is_sorted` does.)"""
    n = len(events)
    i = np.unique(np.random.default_rng(0).integers(0, n - 1, min(samples, n - 1)))
    a = events.iloc[i][["lead_id", "timestamp"]].reset_index(drop=True)
    b = events.iloc[i + 1][["lead_id", "timestamp"]].reset_index(drop=True)
    la, lb = a["lead_id"].astype(str), b["lead_id"].astype(str)
    bad = (lb < la) | ((lb == la) & (b["timestamp"] < a["timestamp"]))
    return bool(bad.any())


def _arrow_strings(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A string column as an Arrow large_string array (zero-copy for Arrow-backed str)."""
    arr = pa.array(values.astype("str").array)
    return arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr


def _encode_and_sort_in_duckdb(lead_keys: pd.Index, events: pd.DataFrame,
                               types: list[str]) -> _Events:
    """The unsorted-input path: one DuckDB query joins the string keys to integer codes and
    sorts (parallel; about a third faster than factorize + sort on shuffled input)."""
    ts = np.ascontiguousarray(as_datetime_us(events["timestamp"]).to_numpy().view(np.int64))
    ev = pa.table({"lead_id": _arrow_strings(events["lead_id"]), "ts": pa.array(ts),
                   "event_type": _arrow_strings(events["event_type"])})
    keys = pa.table({"lead_id": pa.array(np.asarray(lead_keys, dtype=object), pa.large_string()),
                     "k": pa.array(np.arange(len(lead_keys), dtype=np.int32))})
    codes = pa.table({"event_type": pa.array(types, pa.large_string()),
                      "c": pa.array(np.arange(len(types), dtype=np.int16))})
    con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": False})
    try:  # Arrow tables, each referenced by a local name while DuckDB scans it
        con.register("ev", ev)
        con.register("keys", keys)
        con.register("codes", codes)
        out = con.execute(
            f"""
            SELECT keys.k AS k, ev.ts AS ts, codes.c AS c
            FROM ev
            JOIN keys ON ev.lead_id = keys.lead_id
            JOIN codes ON ev.event_type = codes.event_type
            WHERE ev.ts <> {np.iinfo(np.int64).min}
            ORDER BY k, ts, c
            """
        ).fetchnumpy()
    finally:
        con.close()
    k = np.asarray(out["k"], np.int32)
    start = np.zeros(len(lead_keys) + 1, np.int64)
    np.cumsum(np.bincount(k, minlength=len(lead_keys)), out=start[1:])
    return _Events(k=k, ts=np.asarray(out["ts"], np.int64), c=np.asarray(out["c"], np.int16),
                   types=types, start=start)


def _is_sorted(k: np.ndarray, ts: np.ndarray, chunk: int = 4_000_000) -> bool:
    """True when (k, ts) is non-decreasing (checked in chunks to keep temporaries small)."""
    for a in range(0, max(len(k) - 1, 0), chunk):
        b = min(a + chunk, len(k) - 1)
        k0, k1, t0, t1 = k[a:b], k[a + 1:b + 1], ts[a:b], ts[a + 1:b + 1]
        if not np.all((k1 > k0) | ((k1 == k0) & (t1 >= t0))):
            return False
    return True


def _sort_events(
    k: np.ndarray, ts: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (k, ts, c): numpy for small inputs, else an in-memory DuckDB (parallel; numpy's
    lexsort is about 5x slower on 30M rows, DuckDB's start-up dominates on small ones)."""
    if len(k) < _NUMPY_SORT_MAX:
        order = np.lexsort((c, ts, k))
        return k[order], ts[order], c[order]
    con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": False})
    try:
        # An Arrow table over contiguous copies-or-views: DuckDB's pandas scan rejects some
        # numpy views (negative strides, views of datetime buffers) with std::bad_cast.
        table = pa.table({"k": pa.array(np.ascontiguousarray(k)),
                          "ts": pa.array(np.ascontiguousarray(ts)),
                          "c": pa.array(np.ascontiguousarray(c))})
        con.register("ev", table)
        out = con.execute("SELECT k, ts, c FROM ev ORDER BY k, ts, c").fetchnumpy()
    finally:
        con.close()
    return (np.asarray(out["k"], np.int32), np.asarray(out["ts"], np.int64),
            np.asarray(out["c"], np.int16))


class _Locator:
    """pos(k, t) = index of lead k's first event with ts >= t in the sorted event arrays.

    Vectorised with one searchsorted on a composite int64 key, k * span + (ms - lo_k),
    in milliseconds relative to each lead's earliest moment (an event, or a query minus
    the longest look-back); events in the same millisecond as t but earlier are stepped
    over afterwards, so the result is exact to the microsecond.
    """

    def __init__(self, ev: _Events, kq: np.ndarray, q: np.ndarray, max_back_days: int) -> None:
        self.ev = ev
        n_keys = len(ev.start) - 1
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        counts = np.diff(ev.start)
        has = counts > 0
        qms = q // 1000
        lo = np.full(n_keys, big)
        hi = np.full(n_keys, small)
        np.minimum.at(lo, kq, qms - max_back_days * 86_400_000)
        np.maximum.at(hi, kq, qms)
        if len(ev.ts):
            first = ev.ts[np.minimum(ev.start[:-1], len(ev.ts) - 1)] // 1000
            last = ev.ts[np.maximum(ev.start[1:] - 1, 0)] // 1000
            lo = np.where(has, np.minimum(lo, first), lo)
            hi = np.where(has, np.maximum(hi, last), hi)
        span = int((hi - lo).max()) + 2 if n_keys else 2
        if n_keys * span >= 2**62:
            raise ValueError("behaviour features: timestamps span too wide to index; "
                             "check events and as_of for absurd dates")
        self.span = np.int64(span)
        self.offset = np.arange(n_keys, dtype=np.int64) * self.span - lo
        self.comp = ev.ts // 1000
        self.comp += np.repeat(self.offset, counts)

    def pos(self, kq: np.ndarray, t: np.ndarray) -> np.ndarray:
        """pos(kq[i], t[i]) for every query."""
        ev = self.ev
        pos = np.searchsorted(self.comp, t // 1000 + self.offset[kq], side="left")
        pos = pos.astype(np.int64, copy=False)
        n = len(ev.ts)
        active = np.flatnonzero(pos < n)
        while active.size:
            p = pos[active]
            step = (ev.k[p] == kq[active]) & (ev.ts[p] < t[active])
            active = active[step]
            pos[active] += 1
            active = active[pos[active] < n]
        return pos








def _type_window_counts(ev: _Events, hi: np.ndarray, lo_sets: list[np.ndarray],
                        dest: list[list[np.ndarray]]) -> None:
    """Write per-type event counts in [lo, hi) into dest[s][c] for each lo in lo_sets.

    `hi` and every `lo` must be non-decreasing over the (sorted) snapshots. Prefix
    histograms: with cnt(e) = number of snapshots whose boundary p <= e, the number of
    type-c events before boundary p_i is the running sum over i of bincount(cnt) over the
    type-c events. Exact integer arithmetic.
    """
    n, n_ev = len(hi), len(ev.c)
    n_types = len(ev.types)
    by_type = np.argsort(ev.c, kind="stable").astype(np.int32 if n_ev < 2**31 else np.int64)
    cuts = np.concatenate([[0], np.cumsum(np.bincount(ev.c, minlength=n_types))])
    small = np.int32 if max(n, n_ev) < 2**31 - 1 else np.int64

    def before(cnt: np.ndarray, c: int) -> np.ndarray:
        where = by_type[cuts[c]:cuts[c + 1]]
        return np.cumsum(np.bincount(cnt[where], minlength=n + 1)[:n], dtype=small)

    cnt = np.cumsum(np.bincount(hi, minlength=n_ev + 1), dtype=small)
    for c in range(n_types):
        h = before(cnt, c)
        for rows in dest:
            rows[c][:] = h
    for lo, rows in zip(lo_sets, dest, strict=True):
        cnt = np.cumsum(np.bincount(lo, minlength=n_ev + 1), dtype=small)
        for c in range(n_types):
            rows[c] -= before(cnt, c).astype(rows[c].dtype, copy=False)


def _slice_sums(
    ts: np.ndarray, start: np.ndarray, stop: np.ndarray, q: np.ndarray, half_life_us: float,
    masks: list[np.ndarray], dest: list[np.ndarray],
) -> None:
    """dest[j][i] = sum over e in [start_i, stop_i) with masks[j][e] of 2^-((q_i - ts_e)/h).

    Each slice is summed in array order (deterministic; tied timestamps give equal terms);
    snapshots go in chunks of about `_PAIR_CHUNK` (snapshot, event) pairs to bound memory.
    """
    n = len(start)
    for d in dest:
        d[:] = 0.0
    lengths = np.maximum(stop - start, 0)
    total_pairs = int(lengths.sum())
    if total_pairs == 0:
        return
    marks = np.arange(_PAIR_CHUNK, total_pairs, _PAIR_CHUNK)
    cuts = np.searchsorted(np.cumsum(lengths), marks, side="right")
    edges = np.unique(np.concatenate([[0], cuts, [n]]))
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ln = lengths[a:b]
        total = int(ln.sum())
        if total == 0:
            continue
        offs = np.cumsum(ln) - ln
        ev_ix = np.repeat(start[a:b] - offs, ln)
        ev_ix += np.arange(total, dtype=np.int64)
        decay = np.repeat(q[a:b], ln).astype(np.float64)
        decay -= ts[ev_ix]
        decay *= -1.0 / half_life_us
        np.exp2(decay, out=decay)
        nonempty = ln > 0
        seg = offs[nonempty]
        for m, d in zip(masks, dest, strict=True):
            d[a:b][nonempty] = np.add.reduceat(np.where(m[ev_ix], decay, 0.0), seg)


_INT_PREFIXES = ("evt_", "grp_", "events_", "active_days_", "sessions_", *JOURNEY_INT)


class _Blocks:
    """Output columns preallocated as one (columns x rows) block per dtype, so the frame is
    built without copying: int32 for counts, float64 for the rest (NaN by default)."""

    def __init__(self, names: list[str], n: int) -> None:
        self.names = names
        ints = [c for c in names if c.startswith(_INT_PREFIXES)]
        floats = [c for c in names if not c.startswith(_INT_PREFIXES)]
        self.blocks = [(ints, np.zeros((len(ints), n), np.int32)),
                       (floats, np.full((len(floats), n), np.nan))]
        self.rows = {name: block[i] for group, block in self.blocks
                     for i, name in enumerate(group)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.rows[name]

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self.rows[name][:] = values

    def frame(self, inverse: np.ndarray | None, index: pd.Index) -> pd.DataFrame:
        frames = []
        for group, block in self.blocks:
            if inverse is not None:
                for row in block:
                    row[:] = row[inverse]
            frames.append(pd.DataFrame(block.T, columns=group, index=index, copy=False))
        return pd.concat(frames, axis=1)[self.names]


def behaviour_features(
    spine: pd.DataFrame, events: pd.DataFrame | None, settings: FeatureSettings
) -> pd.DataFrame:
    """Behavioural features per spine row (same row order and index as `spine`).

    Columns, with <w> each of settings.windows_days as `7d`, `30d`, ... and `all` for
    everything before as_of (an event at exactly as_of - w days is in the w-day window):
    `evt_<type>_<w>` per event type seen in `events` (sorted by raw name),
    `grp_<group>_<w>` per intent group, `events_<w>` (all types), `days_since_last_<group>`
    (NaN when none), `days_since_first_activity`, `days_since_last_activity`,
    `active_days_<W>d` / `active_days_all` (distinct UTC calendar days with activity;
    W = the longest window, as_of's own day counting as the first),
    `sessions_<W>d` / `sessions_all` (sessions that started in the window),
    `email_open_rate`, `email_click_rate`, `email_click_to_open_rate` (all time; NaN when
    the denominator is 0), `trend_7d_vs_prior_30d` (activity per day in the last 7 days
    minus per day in the 30 days before those), `decay_score` (sum of 2^(-age/half-life)
    = exp(-ln2 age/half-life) over activity events) and `decay_<group>`, then the journey
    columns (`features.journey.journey_columns`: email streaks, sequences, session landings,
    bursts).
    Counts are int32, the rest float64. "Activity" is every event except the outbound
    `settings.email_sent`.
    """
    for col in ("lead_id", "as_of"):
        if col not in spine.columns:
            raise ValueError(f"spine: missing column {col!r}")
    if spine["as_of"].isna().any():
        raise ValueError("spine: `as_of` must not be missing")
    n = len(spine)
    lead_codes, lead_keys = pd.factorize(spine["lead_id"].astype(str), sort=True)
    kq = lead_codes.astype(np.int32)
    q = as_epoch_us(spine["as_of"])
    order = np.lexsort((q, kq))  # internal order: by (lead, as_of)
    identity = bool(np.array_equal(order, np.arange(n)))
    if not identity:
        kq, q = kq[order], q[order]

    ev = _encode_events(pd.Index(lead_keys), events)
    windows = list(settings.windows_days)
    wmax = max(windows)
    code = {t: i for i, t in enumerate(ev.types)}
    activity = (ev.c != code[settings.email_sent]) if settings.email_sent in code \
        else np.ones(len(ev.c), bool)
    group_codes = {
        g: [code[t] for t in types if t in code] for g, types in settings.event_groups.items()
    }
    out = _Blocks(behaviour_columns(ev.types, settings), n)

    loc = _Locator(ev, kq, q, max_back_days=max(wmax, 37) + 2)
    start = ev.start[kq]
    pos_q = loc.pos(kq, q)
    pos_w = {w: loc.pos(kq, q - w * DAY_US) for w in sorted(set(windows) | {7, 37})}
    pos_cal = loc.pos(kq, (np.floor_divide(q, DAY_US) - (wmax - 1)) * DAY_US)
    del loc

    # -- per type, per group and total counts ---------------------------------------------
    lo_sets = [pos_w[w] for w in windows] + [start]
    labels = [window_label(w) for w in windows] + [window_label(None)]
    slugs = type_slugs(ev.types)
    dest = [[out[f"evt_{slug}_{lab}"] for slug in slugs] for lab in labels]
    _type_window_counts(ev, pos_q, lo_sets, dest)
    for g, codes in group_codes.items():
        for lab in labels:
            row = out[f"grp_{g}_{lab}"]
            for c in codes:
                row += out[f"evt_{slugs[c]}_{lab}"]
    for lab, lo in zip(labels, lo_sets, strict=True):
        out[f"events_{lab}"] = pos_q - lo

    # -- recency --------------------------------------------------------------------------
    def days_since(ix: np.ndarray) -> np.ndarray:
        if not len(ev.ts):
            return np.full(n, np.nan)
        return np.where(ix >= 0, (q - ev.ts[np.maximum(ix, 0)]) / DAY_US, np.nan)

    for g, codes in group_codes.items():
        where = np.flatnonzero(np.isin(ev.c, codes))
        out[f"days_since_last_{g}"] = days_since(last_before(where, pos_q, start))
    act_ix = np.flatnonzero(activity)
    j = np.searchsorted(act_ix, start, side="left")
    first = act_ix[np.minimum(j, len(act_ix) - 1)] if len(act_ix) else np.zeros(n, np.int64)
    first = np.where((j < len(act_ix)) & (first < pos_q), first, -1)
    out["days_since_first_activity"] = days_since(first)
    out["days_since_last_activity"] = days_since(last_before(act_ix, pos_q, start))
    del j, first

    # -- active days and sessions (activity events only) -----------------------------------
    flag = np.zeros(len(ev.ts), bool)
    a_k, a_ts = ev.k[act_ix], ev.ts[act_ix]
    flag[act_ix] = run_starts(a_k, a_ts, settings.session_gap_minutes * MINUTE_US)
    prefix = prefix_counts(flag)
    wlab = window_label(wmax)
    out[f"sessions_{wlab}"] = prefix[pos_q] - prefix[pos_w[wmax]]
    out["sessions_all"] = prefix[pos_q] - prefix[start]
    a_ts //= DAY_US
    flag[act_ix] = run_starts(a_k, a_ts, 0)
    del a_k, a_ts
    prefix = prefix_counts(flag)
    out[f"active_days_{wlab}"] = prefix[pos_q] - prefix[pos_cal]
    out["active_days_all"] = prefix[pos_q] - prefix[start]
    del flag, prefix

    # -- email engagement (all time before as_of) ------------------------------------------
    def total(name: str) -> np.ndarray:
        return out[f"evt_{slugs[code[name]]}_all"].astype(np.float64) if name in code \
            else np.zeros(n)

    sent, opened = total(settings.email_sent), total(settings.email_open)
    clicked = total(settings.email_click)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["email_open_rate"] = np.where(sent > 0, opened / sent, np.nan)
        out["email_click_rate"] = np.where(sent > 0, clicked / sent, np.nan)
        out["email_click_to_open_rate"] = np.where(opened > 0, clicked / opened, np.nan)
    del sent, opened, clicked

    # -- journey: streaks, sequences, session landings, bursts (features.journey) ----------
    add_journey_features(out, ev, q, start, pos_q, pos_w, activity, code, group_codes,
                         settings)

    # -- trend ------------------------------------------------------------------------------
    prefix = prefix_counts(activity)
    last7 = prefix[pos_q] - prefix[pos_w[7]]
    prior30 = prefix[pos_w[7]] - prefix[pos_w[37]]
    out["trend_7d_vs_prior_30d"] = last7 / 7.0 - prior30 / 30.0
    del prefix, act_ix

    # -- time-decayed engagement ------------------------------------------------------------
    masks = [activity] + [np.isin(ev.c, codes) for codes in group_codes.values()]
    rows = [out["decay_score"]] + [out[f"decay_{g}"] for g in group_codes]
    _slice_sums(ev.ts, start, pos_q, q, float(settings.decay_half_life_days) * DAY_US,
                masks, rows)
    del masks

    inverse = None
    if not identity:
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
    return out.frame(inverse, spine.index)


def behaviour_columns(types: Sequence[str], settings: FeatureSettings) -> list[str]:
    """The behaviour column names, in order, that `behaviour_features` makes when `events`
    holds these event types (for reindexing a scoring frame to the training columns)."""
    windows = [window_label(w) for w in settings.windows_days] + [window_label(None)]
    wmax = window_label(max(settings.windows_days))
    cols = [f"evt_{s}_{w}" for s in type_slugs(sorted(types)) for w in windows]
    cols += [f"grp_{g}_{w}" for g in settings.event_groups for w in windows]
    cols += [f"events_{w}" for w in windows]
    cols += [f"days_since_last_{g}" for g in settings.event_groups]
    cols += ["days_since_first_activity", "days_since_last_activity",
             f"active_days_{wmax}", "active_days_all", f"sessions_{wmax}", "sessions_all",
             "email_open_rate", "email_click_rate", "email_click_to_open_rate",
             "trend_7d_vs_prior_30d", "decay_score"]
    cols += [f"decay_{g}" for g in settings.event_groups]
    cols += journey_columns(settings)
    return cols


def group_decay_sums(spine: pd.DataFrame, events: pd.DataFrame | None,
                     settings: FeatureSettings,
                     half_lives_days: Sequence[float]) -> dict[float, pd.DataFrame]:
    """`decay_<group>` of every intent group at each half-life (the sum of 2^(-age/h) over
    the group's events before as_of, exactly as `behaviour_features` makes it for
    `settings.decay_half_life_days`), one frame per half-life in `spine`'s row order and
    index. For learning a half-life per group (`models.decay`)."""
    for col in ("lead_id", "as_of"):
        if col not in spine.columns:
            raise ValueError(f"spine: missing column {col!r}")
    lead_codes, lead_keys = pd.factorize(spine["lead_id"].astype(str), sort=True)
    kq = lead_codes.astype(np.int32)
    q = as_epoch_us(spine["as_of"])
    order = np.lexsort((q, kq))
    kq, q = kq[order], q[order]
    ev = _encode_events(pd.Index(lead_keys), events)
    code = {t: i for i, t in enumerate(ev.types)}
    groups = {g: [code[t] for t in types if t in code]
              for g, types in settings.event_groups.items()}
    pos_q = _Locator(ev, kq, q, max_back_days=1).pos(kq, q)
    start = ev.start[kq]
    masks = [np.isin(ev.c, codes) for codes in groups.values()]
    inverse = np.empty(len(spine), np.int64)
    inverse[order] = np.arange(len(spine))
    out: dict[float, pd.DataFrame] = {}
    for h in half_lives_days:
        if not (np.isfinite(h) and h > 0):
            raise ValueError(f"half-lives must be > 0 days; got {h!r}")
        rows = [np.zeros(len(spine)) for _ in groups]
        _slice_sums(ev.ts, start, pos_q, q, float(h) * DAY_US, masks, rows)
        out[float(h)] = pd.DataFrame({f"decay_{g}": r[inverse] for g, r in
                                      zip(groups, rows, strict=True)}, index=spine.index)
    return out


def decayed_hl_column(group: str) -> str:
    """The name of an intent group's decayed count at its learned half-life."""
    return f"{group}_decayed_hl"


def decayed_hl_features(spine: pd.DataFrame, events: pd.DataFrame | None,
                        settings: FeatureSettings,
                        half_lives_days: Mapping[str, float]) -> pd.DataFrame:
    """`<group>_decayed_hl` per group of `half_lives_days` (group -> half-life in days): the
    sum of 2^(-age/h) over the group's events strictly before as_of, h the group's learned
    half-life (`models.decay`); same row order and index as `spine`. Groups not in
    `settings.event_groups` raise ValueError."""
    unknown = sorted(set(half_lives_days) - set(settings.event_groups))
    if unknown:
        raise ValueError(f"decayed features: unknown intent group {unknown[0]!r}; known: "
                         f"{', '.join(settings.event_groups) or 'none'}")
    out = pd.DataFrame(index=spine.index)
    by_h: dict[float, list[str]] = {}
    for g, h in half_lives_days.items():
        by_h.setdefault(float(h), []).append(g)
    sums = group_decay_sums(spine, events, settings, list(by_h)) if by_h else {}
    for g, h in half_lives_days.items():
        out[decayed_hl_column(g)] = sums[float(h)][f"decay_{g}"].to_numpy(dtype=np.float64)
    return out
