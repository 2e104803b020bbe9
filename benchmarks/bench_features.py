"""Speed and memory benchmark of the `features` stage logic.

`bench(leads, events, settings)` times the whole feature build (training spine + behaviour +
fit features) on frames the caller passes in; `random_frames(n_leads, n_events)` makes
contract-shaped random frames of any size so the acceptance target (1M leads / 30M events,
4 snapshot ages: < 60 s, < 6 GB peak RSS on 2 cores) can be checked without the synthetic
generator. Run `python -m benchmarks.bench_features --leads 1000000 --events 30000000`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from features.settings import FeatureSettings, SnapshotSettings

_EVENT_TYPES = np.array(
    [
        "site_visit", "blog_read", "case_study_view", "lead_magnet_download", "newsletter_signup",
        "webinar_registration", "webinar_attended", "retargeting_click", "pricing_view",
        "price_list_download", "demo_request", "quote_request", "consultation_request",
        "chat_started", "email_sent", "email_open", "email_click", "unsubscribe", "careers_view",
        "contract_signed", "onboarding_view", "invoice_paid",
    ]
)
_TYPE_WEIGHTS = np.array(
    [30, 8, 3, 2, 1, 1, 1, 4, 4, 1, 1, 0.5, 0.5, 1, 20, 10, 4, 0.5, 0.5, 0.3, 0.3, 0.3]
)
_DAY_US = 86_400_000_000


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM, VmRSS) in MB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the peak covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MB since the last reset (VmHWM), or since
    process start (ru_maxrss) where the reset is unavailable."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_frames(
    n_leads: int, n_events: int, seed: int = 0, start: str = "2025-01-01", days: int = 540
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract-shaped random `leads` and `events` (events sorted by lead_id, timestamp).

    Not realistic, only shaped like the real thing: leads created uniformly over `days`,
    about 10% converted, 20% lost, events clustered after creation with random types.
    """
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start).value // 1000  # epoch microseconds
    end_us = t0 + days * _DAY_US
    created = t0 + rng.integers(0, days * _DAY_US, n_leads)
    conv = rng.random(n_leads) < 0.10
    conv_at = created + (rng.exponential(40.0, n_leads) * _DAY_US).astype(np.int64)
    conv &= conv_at <= end_us
    lost = ~conv & (rng.random(n_leads) < 0.2)
    lost_at = created + (rng.exponential(60.0, n_leads) * _DAY_US).astype(np.int64)
    lost &= lost_at <= end_us

    def ts(values: np.ndarray, mask: np.ndarray | None = None) -> pd.Series:
        out = pd.Series(values.astype("datetime64[us]"))
        return out.where(pd.Series(mask)) if mask is not None else out

    ids = pd.Series([f"L{i:08d}" for i in range(n_leads)], dtype="str")
    pick = lambda options, p=None: rng.choice(np.array(options, dtype=object), n_leads, p=p)  # noqa: E731
    locals_ = np.char.add(
        rng.choice(np.array(["anna.berg", "j.smith", "mike_lee", "superdrakon", "info", "x"]),
                   n_leads),
        rng.integers(0, 99, n_leads).astype(str),
    )
    domains = rng.choice(
        np.array(["gmail.com", "acme.io", "mailinator.com", "globex.de", "yahoo.com", "web.de"]),
        n_leads,
    )
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": ts(created),
            "source": pd.Series(pick(["organic_search", "paid_search", "referral", "event",
                                      "partner", "direct"]), dtype="str"),
            "email": pd.Series(np.char.add(np.char.add(locals_, "@"), domains), dtype="str"),
            "company_size": pd.array(
                np.where(rng.random(n_leads) < 0.1, 0, rng.lognormal(4, 2, n_leads)).astype(int),
                dtype="Int64",
            ),
            "industry": pd.Series(pick(["software", "retail", "finance", "health", None]),
                                  dtype="str"),
            "country": pd.Series(pick(["US", "DE", "GB", "FR", "BR", "IN", "JP", None]),
                                 dtype="str"),
            "job_title": pd.Series(pick(["CEO", "VP Sales", "Marketing Manager", "Software "
                                         "Engineer", "Intern", "Head of IT", None]), dtype="str"),
            "budget": pd.Series(pick(["<10k", "10k-50k", "50k-250k", ">250k", None]), dtype="str"),
            "need": pd.Series(pick(["exploring", "problem_identified", "urgent", None]),
                              dtype="str"),
            "timeframe": pd.Series(pick(["0-3m", "3-6m", "6-12m", "12m+", None]), dtype="str"),
            "converted": pd.array(conv.astype(int), dtype="Int64"),
            "converted_at": ts(conv_at, conv),
            "lost_at": ts(lost_at, lost),
        }
    )
    lead_ix = np.sort(rng.integers(0, n_leads, n_events))
    kind = rng.random(n_events)
    offset_days = np.where(
        kind < 0.6, rng.exponential(10.0, n_events),
        np.where(kind < 0.9, rng.exponential(60.0, n_events), -30.0 * rng.random(n_events)),
    )
    ev_ts = created[lead_ix] + (offset_days * _DAY_US).astype(np.int64)
    ev_ts = np.minimum(ev_ts, end_us - rng.integers(0, _DAY_US, n_events))
    order = np.lexsort((ev_ts, lead_ix))
    lead_ix, ev_ts = lead_ix[order], ev_ts[order]
    types = rng.choice(_EVENT_TYPES, n_events, p=_TYPE_WEIGHTS / _TYPE_WEIGHTS.sum())
    events = pd.DataFrame(
        {
            "lead_id": ids.take(lead_ix).reset_index(drop=True),
            "timestamp": ts(ev_ts),
            "event_type": pd.Series(types, dtype="str"),
        }
    )
    return leads, events


def bench(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    settings: FeatureSettings,
    snapshots: SnapshotSettings | None = None,
) -> dict[str, Any]:
    """Time the training feature build on the given frames.

    Returns wall seconds (total and per step), peak RSS in MB of the whole process during
    the build (input frames included: the peak mark is reset first, on Linux), the RSS and
    the input frames' size at the start, events/s, and the output shape.
    """
    from features.build import build_features
    from features.snapshots import data_end, training_spine

    snapshots = snapshots or SnapshotSettings()
    input_mb = (leads.memory_usage(deep=True).sum() + events.memory_usage(deep=True).sum()) / 2**20
    reset = _reset_peak_rss()
    rss_start = _status_mb("VmRSS")
    t0 = time.perf_counter()
    end = data_end(leads, events)
    spine = training_spine(leads, snapshots, end)
    t1 = time.perf_counter()
    frame = build_features(spine, leads, events, settings)
    t2 = time.perf_counter()
    wall = t2 - t0
    return {
        "leads": int(len(leads)),
        "events": int(len(events)),
        "snapshot_rows": int(len(frame)),
        "feature_columns": int(frame.shape[1] - spine.shape[1]),
        "wall_seconds": round(wall, 2),
        "spine_seconds": round(t1 - t0, 2),
        "build_seconds": round(t2 - t1, 2),
        "events_per_second": round(len(events) / wall) if wall > 0 else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_rss_covers": "build only" if reset else "whole process",
        "rss_at_start_mb": round(rss_start, 1) if rss_start is not None else None,
        "input_frames_mb": round(float(input_mb), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: generate random frames of the given size and print the bench result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffle", action="store_true",
                        help="shuffle the event rows first (measures the sort path)")
    parser.add_argument("--cache", default=None,
                        help="folder to keep the generated frames in as parquet (reused)")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    leads, events = _frames(args.leads, args.events, args.seed, args.cache)
    if args.shuffle:
        order = np.random.default_rng(args.seed).permutation(len(events))
        events = events.take(order).reset_index(drop=True)
        del order
    generated = time.perf_counter() - t
    result = bench(leads, events, FeatureSettings.from_params(_DEFAULT_FEATURES))
    result["generate_seconds"] = round(generated, 2)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _frames(n_leads: int, n_events: int, seed: int, cache: str | None):
    """Random frames, read from / written to `cache` as parquet when given."""
    if cache is None:
        return random_frames(n_leads, n_events, seed=seed)
    from pathlib import Path

    folder = Path(cache) / f"features_{n_leads}_{n_events}_{seed}"
    if not (folder / "events.parquet").exists():
        folder.mkdir(parents=True, exist_ok=True)
        leads, events = random_frames(n_leads, n_events, seed=seed)
        leads.to_parquet(folder / "leads.parquet")
        events.to_parquet(folder / "events.parquet")
        del leads, events
    return pd.read_parquet(folder / "leads.parquet"), pd.read_parquet(folder / "events.parquet")


_DEFAULT_FEATURES: dict[str, Any] = {
    "event_groups": {
        "research": ["site_visit", "blog_read", "case_study_view", "lead_magnet_download",
                     "newsletter_signup", "webinar_registration", "webinar_attended",
                     "retargeting_click"],
        "pricing": ["pricing_view", "price_list_download"],
        "ready_to_buy": ["demo_request", "quote_request", "consultation_request", "chat_started"],
        "email": ["email_sent", "email_open", "email_click"],
        "negative": ["unsubscribe", "careers_view"],
    }
}


if __name__ == "__main__":
    raise SystemExit(main())
