"""Array helpers shared by the behaviour and journey features: events sorted by (lead,
timestamp), snapshots addressed by index ranges [start, pos) into them."""

from __future__ import annotations

import numpy as np


def prefix_counts(mask: np.ndarray) -> np.ndarray:
    """P[i] = number of True in mask[:i] (len n + 1; int32 while that fits)."""
    out = np.zeros(len(mask) + 1, np.int32 if len(mask) < 2**31 - 1 else np.int64)
    np.cumsum(mask, out=out[1:])
    return out


def run_starts(k: np.ndarray, values: np.ndarray, gap: float,
               chunk: int = 4_000_000) -> np.ndarray:
    """Flags of elements that start a run: first of their lead, or more than `gap` after
    the previous element (values sorted within each lead). Chunked to bound temporaries."""
    out = np.ones(len(values), bool)
    for a in range(1, len(values), chunk):
        b = min(a + chunk, len(values))
        out[a:b] = (k[a:b] != k[a - 1:b - 1]) | ((values[a:b] - values[a - 1:b - 1]) > gap)
    return out


def last_before(where: np.ndarray, pos: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Largest index in the sorted index array `where` inside [start, pos), or -1."""
    j = np.searchsorted(where, pos, side="left") - 1
    last = where[np.maximum(j, 0)] if len(where) else np.full(len(pos), -1)
    return np.where((j >= 0) & (last >= start), last, -1)


def tie_runs(k: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For events sorted by (lead, timestamp): each event's run of events of the same lead at
    the same moment, as (index of the run's first event, index of its last event). Features
    that look at order use them so that events at one moment count alike whatever their
    order in the file."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = (k[1:] != k[:-1]) | (ts[1:] != ts[:-1])
    firsts = np.flatnonzero(new)
    run = np.cumsum(new) - 1
    lasts = np.append(firsts[1:] - 1, n - 1)
    return firsts[run], lasts[run]
