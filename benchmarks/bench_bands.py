"""Bands in weekly use at full scale (issue 12 targets): fit on the default synthetic sample
(`params.yaml` generate section, tuning off), then score a later sample (another seed and
period) week by week with the fitted model and bands, as `score` would.

Measured:
- the SQL capacity band's new entries per week over the later sample's last `--weeks`
  weekly batches (target: within 20 % of `capacity_per_week`), with the inflow of both;
- every `min_conversion` band's conversion in the later sample's weekly batches whose
  outcome horizon has passed (label as in training: converted within `label.horizon_days`
  after the batch), with its Wilson 95 % lower bound (target: >= the promise).

`python -m benchmarks.bench_bands` (about 5 minutes on 2 cores); `--leads 4000` runs a small
version. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def sample(root: Path, leads: int, seed: int, start: dt.date,
           months: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate and ingest a synthetic sample; (leads, events) as the features stage reads them."""
    from pipeline.stages import features as feature_stage
    from pipeline.stages import generate as generate_stage
    from pipeline.stages import ingest as ingest_stage
    from pipeline.synth import SynthSettings

    synth = SynthSettings(n_leads=leads, seed=seed, start=start, months=months)
    generate_stage.run(synth, root / "raw", workers=1)
    ingest_stage.run(root / "raw" / "leads.csv", root / "raw" / "events.csv", root / "interim",
                     root / "reports", now=pd.Timestamp(synth.end) + pd.Timedelta(days=1))
    return feature_stage.read_interim(root / "interim")


def weekly_batch_rows(bundle: Any, fs: Any, leads: pd.DataFrame, events: pd.DataFrame,
                      start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Every open lead in weekly batches from `start` to `end`, with p and both band sets."""
    from models.bands import apply_bands
    from models.weekly import simulate_batches

    rows = simulate_batches(bundle, leads, events, fs, leads["lead_id"], end, 7, start=start)
    for name, fitted in bundle.bands.items():
        rows[name] = apply_bands(rows["p"], fitted)
    return rows


def entries_per_week(rows: pd.DataFrame, band_set: str, band: str) -> pd.DataFrame:
    """Per batch (the first excluded: it has no batch before): open leads, leads in `band`
    and leads newly in it (in it now, not in it the batch before)."""
    inside = rows.assign(v=rows[band_set] == band).pivot_table(
        index="lead_id", columns="as_of", values="v", fill_value=False, aggfunc="any").astype(bool)
    new = inside.iloc[:, 1:].to_numpy() & ~inside.iloc[:, :-1].to_numpy()
    return pd.DataFrame({"open": rows.groupby("as_of").size().iloc[1:].to_numpy(),
                         "in_band": inside.iloc[:, 1:].sum().to_numpy(),
                         "entries": new.sum(axis=0)}, index=inside.columns[1:])


def promise_table(rows: pd.DataFrame, bundle: Any) -> list[dict[str, Any]]:
    """Per min_conversion band of every band set: the promise, n, rate and Wilson 95 % bounds
    on labelled batch rows; `holds` when the lower bound clears the promise."""
    from models.bands import band_table

    out = []
    for name, fitted in bundle.bands.items():
        for row in band_table(rows["p"].to_numpy(), rows["label"].to_numpy(), fitted):
            if row["promised_conversion"] is None:
                continue
            out.append({"band_set": name, "band": row["name"],
                        "promise": row["promised_conversion"], "n": row["n"],
                        "rate": row["rate"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                        "holds": bool(row["n"] and row["ci_low"] >= row["promised_conversion"])})
    return out


def bench(root: Path, leads: int | None = None, later_seed: int = 43,
          later_start: dt.date = dt.date(2026, 7, 1), weeks: int = 26,
          inflow: str | None = None) -> dict[str, Any]:
    from features.snapshots import outcome_labels
    from models.bands import estimate_leads_per_week
    from models.weekly import weekly_bands
    from pipeline.settings import parse_params
    from pipeline.stages import features as feature_stage
    from pipeline.stages import train as train_stage

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["tune"] = {"enabled": False}
    if inflow is not None:
        for band_set in raw["bands"].values():
            band_set["inflow"] = inflow
    params = parse_params(raw)
    gen = raw["generate"]
    n = int(leads or gen["leads"])
    months = int(gen["months"])
    t0 = time.perf_counter()
    snap, fs = feature_stage.feature_settings(params)
    train_leads, train_events = sample(root / "train", n, int(gen["seed"]),
                                       dt.date.fromisoformat(str(gen["start"])), months)
    frame, meta, _ = feature_stage.run(train_leads, train_events, snap, fs)
    result = train_stage.run(frame, meta, params, None)
    t_sim = time.perf_counter()
    weekly_bands(result, train_leads, train_events, fs, params.bands,
                 pd.Timestamp(meta["data_end"]))
    t_sim = time.perf_counter() - t_sim
    bundle = result.bundle
    later_leads, later_events = sample(root / "later", n, later_seed, later_start, months)
    end = pd.Timestamp(later_leads["created_at"].max()).normalize()
    horizon = float(snap.horizon_days)
    # entries: the last `weeks` batches (and the one before), when open leads span every age
    recent = weekly_batch_rows(bundle, fs, later_leads, later_events,
                               end - pd.Timedelta(days=7 * weeks), end)
    # promises: the `weeks` batches whose outcome horizon has passed by the data's end
    labelled_end = end - pd.Timedelta(days=horizon)
    labelled = weekly_batch_rows(bundle, fs, later_leads, later_events,
                                 labelled_end - pd.Timedelta(days=7 * (weeks - 1)), labelled_end)
    labelled["label"] = outcome_labels(labelled, later_leads, horizon)
    created = pd.to_datetime(later_leads["created_at"])
    window = created > end - pd.Timedelta(days=7 * weeks)
    out: dict[str, Any] = {"leads": n, "later_seed": later_seed,
                           "later_start": later_start.isoformat(), "weeks": weeks,
                           "simulation_seconds": round(t_sim, 1)}
    for name, fitted in bundle.bands.items():
        for band in fitted.bands:
            if band.target_kind != "capacity_per_week":
                continue
            per_week = entries_per_week(recent, name, band.name)
            out.setdefault("capacity", []).append({
                "band_set": name, "band": band.name, "capacity": band.target,
                "min_propensity": band.min_propensity,
                "simulated": band.weekly_entries,
                "later_entries_mean": float(per_week["entries"].mean()),
                "later_entries_p10": float(per_week["entries"].quantile(0.1)),
                "later_entries_p90": float(per_week["entries"].quantile(0.9)),
                "later_in_band_mean": float(per_week["in_band"].mean()),
                "ratio": float(per_week["entries"].mean() / band.target),
                "within_20pct": bool(abs(per_week["entries"].mean() - band.target)
                                     <= 0.2 * band.target),
                "simulation": fitted.weekly,
            })
    out["later_inflow_per_week"] = float(window.sum() / weeks)
    out["later_inflow_whole_sample"] = estimate_leads_per_week(later_leads["created_at"])
    out["promises"] = promise_table(labelled, bundle)
    out["labelled_rows"] = int(len(labelled))
    out["all_promises_hold"] = all(r["holds"] for r in out["promises"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=None,
                        help="leads per sample (default: params.yaml generate.leads)")
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--later-seed", type=int, default=43)
    parser.add_argument("--inflow", choices=("trend", "calibration"), default=None,
                        help="override every band set's `inflow` (default: params.yaml)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = bench(Path(tmp), args.leads, args.later_seed, weeks=args.weeks,
                    inflow=args.inflow)
    print(json.dumps(res, indent=2, default=float))
    return 0 if res["all_promises_hold"] and all(c["within_20pct"] for c in res["capacity"]) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
