"""Speed benchmark of the scoring core alone (`models.scoring.score_open_leads`) on frames
already in memory: the model-and-reasons throughput (`make bench` runs it only with
`--only score_core`). It does not measure what a user runs (reading and validating the
files): `benchmarks.bench_score_cli` does.

`bench(leads, events, bundle, settings)` scores the open leads of the given frames in chunks
and reports wall seconds (total and per phase: features, model, reasons), the peak RSS
and leads/s of the model-and-reasons part. `stand_in_model(...)` trains a scoring bundle
on contract-shaped random frames (`benchmarks.bench_features.random_frames`) with labels
drawn from a logistic function of a few behaviour and fit features, so the booster grows a
realistic number of trees. Run
`python -m benchmarks.bench_score --leads 1000000 --events 30000000`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_features import _peak_rss_mb, _reset_peak_rss, _status_mb
from features.settings import FeatureSettings

STAND_IN_PARAMS: dict[str, Any] = {
    "split": {"train": 0.6, "calibration": 0.2, "test": 0.2},
    "train": {"seed": 0, "early_stopping_rounds": 50, "tune": {"enabled": False},
              "lightgbm": {"n_estimators": 400, "learning_rate": 0.05}},
    "calibration": {"method": "isotonic"},
    "bands": {
        "temperature": {"policy": "share", "bands": [
            {"name": "cold"}, {"name": "warm", "top_share": 0.25},
            {"name": "hot", "top_share": 0.05}]},
        "lifecycle": {"policy": "share", "bands": [
            {"name": "lead"}, {"name": "MQL", "top_share": 0.3},
            {"name": "SQL", "top_share": 0.02}]},
    },
}


def stand_in_model(leads: pd.DataFrame, events: pd.DataFrame, settings: FeatureSettings,
                   n_train: int = 20_000, seed: int = 0) -> Any:
    """A ScoringBundle trained on the first `n_train` leads with synthetic labels."""
    from features.build import build_features, feature_columns
    from features.settings import SnapshotSettings
    from features.snapshots import data_end, training_spine
    from models.training import train_all
    from pipeline.settings import parse_params

    params = parse_params(STAND_IN_PARAMS)
    sub = leads.iloc[:n_train]
    ev = events[events["lead_id"].isin(sub["lead_id"])]
    spine = training_spine(sub, SnapshotSettings(), data_end(leads, events))
    frame = build_features(spine, sub, ev, settings)
    rng = np.random.default_rng(seed)

    def col(name: str) -> np.ndarray:
        if name not in frame:
            return np.zeros(len(frame))
        return frame[name].to_numpy(dtype=float, na_value=np.nan)

    z = (-2.5 + 0.8 * np.log1p(col("grp_pricing_30d")) + 1.2 * np.log1p(col("grp_ready_to_buy_all"))
         + 0.4 * np.log1p(col("events_7d")) + 0.3 * np.nan_to_num(col("fit_budget_rank"))
         - 0.01 * np.nan_to_num(col("days_since_last_activity"), nan=90.0))
    frame["label"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-z))).astype(np.int8)
    cols = feature_columns(frame)
    result = train_all(frame, cols, params.split, params.train, params.calibration,
                       params.bands, horizon_days=90)
    return result.bundle


def bench(leads: pd.DataFrame, events: pd.DataFrame, bundle: Any, settings: FeatureSettings,
          as_of: pd.Timestamp | None = None, chunk_size: int = 100_000) -> dict[str, Any]:
    """Score the open leads at `as_of` (default: the data end) and time it.

    Returns wall seconds (total and per phase), leads/s of the model-and-reasons part
    (`leads_per_second`) and of the whole scoring, peak RSS in MB during scoring (input
    frames and model included; the peak mark is reset first, on Linux), and the shape.
    """
    from features.snapshots import data_end
    from models.scoring import score_open_leads

    at = pd.Timestamp(as_of) if as_of is not None else data_end(leads, events)
    reset = _reset_peak_rss()
    rss_start = _status_mb("VmRSS")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scored = score_open_leads(leads, events, bundle, settings, at, chunk_size=chunk_size,
                              timings=timings)
    wall = time.perf_counter() - t0
    n = len(scored.table)
    model_reasons = timings["model"] + timings["reasons"]
    return {
        "leads": int(len(leads)),
        "events": int(len(events)),
        "scored": int(n),
        "not_open": int(len(scored.not_open)),
        "chunk_size": int(chunk_size),
        "model_trees": int(bundle.model.booster_.num_trees()),
        "model_features": len(bundle.features),
        "wall_seconds": round(wall, 2),
        "features_seconds": round(timings["features"], 2),
        "model_seconds": round(timings["model"], 2),
        "reasons_seconds": round(timings["reasons"], 2),
        "leads_per_second": round(n / model_reasons) if model_reasons > 0 else None,
        "leads_per_second_total": round(n / wall) if wall > 0 else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_rss_covers": "scoring only" if reset else "whole process",
        "rss_at_start_mb": round(rss_start, 1) if rss_start is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: random frames of the given size, a stand-in model, the bench result as JSON."""
    from benchmarks.bench_features import _DEFAULT_FEATURES, random_frames

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--train-leads", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = FeatureSettings.from_params(_DEFAULT_FEATURES)
    t = time.perf_counter()
    leads, events = random_frames(args.leads, args.events, seed=args.seed)
    generated = time.perf_counter() - t
    t = time.perf_counter()
    bundle = stand_in_model(leads, events, settings, n_train=args.train_leads, seed=args.seed)
    trained = time.perf_counter() - t
    result = bench(leads, events, bundle, settings, chunk_size=args.chunk_size)
    result["generate_seconds"] = round(generated, 2)
    result["train_seconds"] = round(trained, 2)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
