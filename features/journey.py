"""Journey features: the order of a lead's events, not only their counts.

Counts per window say how much a lead did; the sequence says where in its journey it is.
Four families, each computed from the lead's events strictly before `as_of` (on the same
sorted event arrays and positions as `features.behaviour`, so the same point-in-time
guarantee holds and the leakage property tests cover them):

- **email streaks**: `streak_unopened_emails` (emails sent since the last open, or since
  the first email when none was opened; a long run of unopened mail is how interest ends)
  and `days_since_email_open`.
- **sequences**: for each configured pair `name: [first, then]`, a `then` event that comes
  within `sequence_gap_minutes` after a `first` event of the same lead (an ad click followed
  by a visit, an email click followed by a visit): `seq_<name>_<w>` for the shortest and the
  longest window and all time, and `days_since_seq_<name>`.
- **session landings**: per intent group, the sessions whose first activity event (any of
  them, when several share the first moment) is in the group (`landing_<group>_<W>d`,
  `landing_<group>_all`): the page a session lands on says why the lead came.
- **bursts**: activity separated by at least `burst_gap_days` of silence starts a new burst
  (a lead coming back). `bursts_all`, `bursts_current_events`, `burst_age_days` (days since
  the current burst began) and `burst_gap_days` (the silence before it; NaN for the first).

Settings: `features.journey` (`features.settings.JourneySettings`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features.arrays import last_before, prefix_counts, run_starts, tie_runs
from features.settings import FeatureSettings

DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
#: Column prefixes of the journey counts (int32 columns).
INT_PREFIXES = ("seq_", "landing_", "streak_", "bursts_")


def journey_columns(settings: FeatureSettings) -> list[str]:
    """The journey column names, in order (empty when `features.journey.enabled` is false)."""
    j = settings.journey
    if not j.enabled:
        return []
    short, long_ = min(settings.windows_days), max(settings.windows_days)
    cols = ["streak_unopened_emails", "days_since_email_open"]
    for name in j.sequences:
        cols += [f"seq_{name}_{short}d", f"seq_{name}_{long_}d", f"seq_{name}_all",
                 f"days_since_seq_{name}"]
    for g in settings.event_groups:
        cols += [f"landing_{g}_{long_}d", f"landing_{g}_all"]
    cols += ["bursts_all", "bursts_current_events", "burst_age_days", "burst_gap_days"]
    return cols


def add_journey_features(
    out: Any,
    ev: Any,
    q: np.ndarray,
    start: np.ndarray,
    pos_q: np.ndarray,
    pos_w: Mapping[int, np.ndarray],
    activity: np.ndarray,
    code: Mapping[str, int],
    group_codes: Mapping[str, Sequence[int]],
    settings: FeatureSettings,
) -> None:
    """Fill the `journey_columns` of `out` (a `behaviour._Blocks`) for snapshots sorted by
    (lead, as_of): `q` as_of (epoch us), `start` / `pos_q` each snapshot's slice of the
    sorted events `ev`, `pos_w[w]` the slice start of the w-day window."""
    j = settings.journey
    if not j.enabled or not len(ev.ts):
        return  # no events: counts stay 0, days-since and gaps NaN
    n = len(q)
    short, long_ = min(settings.windows_days), max(settings.windows_days)

    def days_since(ix: np.ndarray) -> np.ndarray:
        if not len(ev.ts):
            return np.full(n, np.nan)
        return np.where(ix >= 0, (q - ev.ts[np.maximum(ix, 0)]) / DAY_US, np.nan)

    def type_mask(name: str) -> np.ndarray:
        return ev.c == code[name] if name in code else np.zeros(len(ev.c), bool)

    run_last = tie_runs(ev.k, ev.ts)[1]

    # -- email streaks (an email sent at the moment of the last open is not in the streak) --
    sent_prefix = prefix_counts(type_mask(settings.email_sent))
    last_open = last_before(np.flatnonzero(type_mask(settings.email_open)), pos_q, start)
    since = np.where(last_open >= 0, run_last[np.maximum(last_open, 0)] + 1, start)
    since = np.minimum(since, pos_q)
    out["streak_unopened_emails"] = sent_prefix[pos_q] - sent_prefix[since]
    out["days_since_email_open"] = days_since(last_open)
    del sent_prefix, last_open, since

    # -- sequences: `then` within the gap after `first`, same lead ------------------------
    gap = float(j.sequence_gap_minutes) * MINUTE_US
    for name, (first, then) in j.sequences.items():
        hit = np.zeros(len(ev.c), bool)
        a_ix, b_ix = np.flatnonzero(type_mask(first)), np.flatnonzero(type_mask(then))
        if len(a_ix) and len(b_ix):
            # the last `first` at or before the moment of each `then` (ties count as before)
            prev = np.searchsorted(a_ix, run_last[b_ix], side="right") - 1
            a = a_ix[np.maximum(prev, 0)]
            ok = (prev >= 0) & (ev.k[a] == ev.k[b_ix]) & (ev.ts[b_ix] - ev.ts[a] <= gap)
            hit[b_ix[ok]] = True
        prefix = prefix_counts(hit)
        out[f"seq_{name}_{short}d"] = prefix[pos_q] - prefix[pos_w[short]]
        out[f"seq_{name}_{long_}d"] = prefix[pos_q] - prefix[pos_w[long_]]
        out[f"seq_{name}_all"] = prefix[pos_q] - prefix[start]
        out[f"days_since_seq_{name}"] = days_since(last_before(np.flatnonzero(hit), pos_q,
                                                               start))
    # -- session landings ---------------------------------------------------------------
    act_ix = np.flatnonzero(activity)
    a_k, a_ts = ev.k[act_ix], ev.ts[act_ix]
    starts = run_starts(a_k, a_ts, settings.session_gap_minutes * MINUTE_US)
    # every activity event at the moment a session starts is one of its landings
    session_start = np.zeros(len(ev.c), bool)
    session_start[act_ix] = starts[tie_runs(a_k, a_ts)[0]]
    del a_k, a_ts, starts
    for g, codes in group_codes.items():
        prefix = prefix_counts(session_start & np.isin(ev.c, list(codes)))
        out[f"landing_{g}_{long_}d"] = prefix[pos_q] - prefix[pos_w[long_]]
        out[f"landing_{g}_all"] = prefix[pos_q] - prefix[start]
    del session_start

    # -- bursts -------------------------------------------------------------------------
    burst = np.zeros(len(ev.c), bool)
    burst[act_ix] = run_starts(ev.k[act_ix], ev.ts[act_ix], float(j.burst_gap_days) * DAY_US)
    prefix = prefix_counts(burst)
    out["bursts_all"] = prefix[pos_q] - prefix[start]
    last_burst = last_before(np.flatnonzero(burst), pos_q, start)
    has = last_burst >= 0
    act_prefix = prefix_counts(activity)
    out["bursts_current_events"] = np.where(has, act_prefix[pos_q] -
                                            act_prefix[np.maximum(last_burst, 0)], 0)
    out["burst_age_days"] = days_since(last_burst)
    before = last_before(act_ix, np.maximum(last_burst, 0), start)
    ok = has & (before >= 0)
    if len(ev.ts):
        gap_days = (ev.ts[np.maximum(last_burst, 0)] - ev.ts[np.maximum(before, 0)]) / DAY_US
        out["burst_gap_days"] = np.where(ok, gap_days, np.nan)
