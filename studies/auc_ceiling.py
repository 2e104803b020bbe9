"""The served model against the generator's truth on the synthetic sample. A study, not a stage.

What it measures, and nothing more: on the test and the calibration split of a finished run,
the ROC AUC and log-loss of the served model (`p_served`) and of `truth.csv` — the
generator's P(convert within the horizon | the lead's hidden fit, intent and buying phase at
`as_of`, pipeline/synth.py) — and the ratio of the two AUCs; then, per hidden phase at
`as_of` (regenerated from `params.yaml`: the generator is deterministic for its settings),
how many test snapshots sit in it, how often they convert, and the mean truth and served
probability there.

What it does not claim: the truth conditions on state the data never shows, so it is a
reference, not a ceiling for a model of the observable data. The only bound theory gives
is on proper scores: in expectation no predictor built from the observable data has a
lower log-loss (or Brier score) than the truth, since the truth conditions on more. For
ROC AUC there is no such guarantee, and how much of the measured gap any model of the
observable data could close is not measured here: that needs the Bayes posterior of the
observable events (the generator's event model inverted), which this study does not build.
An earlier version added hidden-state *estimates* learnt from the same features and called
the result a bound; being functions of the same features, they bound nothing.

Reads `paths.models/predictions.parquet` (the `train` stage's) and `paths.raw/truth.csv`;
writes `reports/truth_gap.json`. Usage, from the project root after `dvc repro`:

    python -m studies.auc_ceiling [--params params.yaml] [--out reports/truth_gap.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import log_loss, roc_auc
from pipeline import synth
from pipeline.settings import load_params
from pipeline.stages.evaluate import attach_truth
from pipeline.stages.generate import settings_from_params


def hidden_state(frame: pd.DataFrame, settings: synth.SynthSettings) -> pd.DataFrame:
    """`hidden_fit`, `hidden_intent` (floats) and `hidden_phase` (category) per snapshot
    (`lead_id`, `as_of`), from the generator re-run with `settings`."""
    latent = synth.generate(settings).latent
    row = frame["lead_id"].astype(str).str[1:].astype(np.int64).to_numpy() - 1
    days = (frame["as_of"].to_numpy().astype("datetime64[s]")
            - np.datetime64(settings.start, "s")) / np.timedelta64(1, "D")
    phase = synth.phase_at(latent, row, days.astype(np.float64))
    return pd.DataFrame({
        "hidden_fit": latent.fit[row],
        "hidden_intent": latent.intent[row],
        "hidden_phase": pd.Categorical.from_codes(phase, categories=list(synth.PHASES)),
    }, index=frame.index)


def measure(predictions: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Per split part ('test', 'calibration'): snapshots, conversions, ROC AUC and log-loss
    of `p_served` and of the truth on the snapshots the truth covers, and the AUC ratio
    served / truth. `predictions` has `lead_id`, `as_of`, `split`, `label`, `p_served`."""
    p_true = attach_truth(predictions[["lead_id", "as_of"]], truth)["p_truth"].to_numpy()
    out: dict[str, Any] = {}
    for part in ("test", "calibration"):
        mask = (predictions["split"] == part).to_numpy() & ~np.isnan(p_true)
        y = predictions.loc[mask, "label"].to_numpy()
        served = predictions.loc[mask, "p_served"].to_numpy()
        auc_served, auc_truth = roc_auc(y, served), roc_auc(y, p_true[mask])
        out[part] = {
            "snapshots": int(mask.sum()),
            "conversions": int(y.sum()),
            "served_roc_auc": round(auc_served, 4),
            "truth_roc_auc": round(auc_truth, 4),
            "auc_ratio": round(auc_served / auc_truth, 4),
            "served_log_loss": round(log_loss(y, served), 4),
            "truth_log_loss": round(log_loss(y, p_true[mask]), 4),
        }
    return out


def by_phase(predictions: pd.DataFrame, truth: pd.DataFrame, hidden: pd.DataFrame,
             part: str = "test") -> pd.DataFrame:
    """One row per hidden phase at `as_of` on the `part` split: `snapshots`, `conversion`
    (rate), `mean_truth`, `mean_served`. `hidden` is aligned with `predictions`."""
    p_true = attach_truth(predictions[["lead_id", "as_of"]], truth)["p_truth"]
    rows = pd.DataFrame({
        "phase": hidden["hidden_phase"].astype(str).to_numpy(),
        "label": predictions["label"].to_numpy(),
        "truth": p_true.to_numpy(),
        "served": predictions["p_served"].to_numpy(),
    })[(predictions["split"] == part).to_numpy()]
    table = rows.groupby("phase", sort=False).agg(
        snapshots=("label", "size"), conversion=("label", "mean"),
        mean_truth=("truth", "mean"), mean_served=("served", "mean"))
    order = [p for p in synth.PHASES if p in table.index]
    return table.loc[order].round(4).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/truth_gap.json")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if params.source != "synthetic":
        print("this study needs the synthetic data set (source: synthetic)", file=sys.stderr)
        return 2
    pred_path = Path(params.paths.models) / "predictions.parquet"
    truth_path = Path(params.paths.raw) / "truth.csv"
    for path in (pred_path, truth_path):
        if not path.exists():
            print(f"{path}: not found; run `dvc repro` (up to `train`) first", file=sys.stderr)
            return 2
    predictions = pd.read_parquet(pred_path)
    truth = pd.read_csv(truth_path)
    settings = settings_from_params(params)
    parts = measure(predictions, truth)
    phases = by_phase(predictions, truth, hidden_state(predictions, settings))
    out = {"leads": settings.n_leads, "seed": settings.seed, "splits": parts,
           "test_by_hidden_phase": phases.to_dict("records")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for part, row in parts.items():
        print(f"{part:12s} served AUC {row['served_roc_auc']:.4f}  truth AUC "
              f"{row['truth_roc_auc']:.4f}  ratio {row['auc_ratio']:.4f}  log-loss served "
              f"{row['served_log_loss']:.4f} truth {row['truth_log_loss']:.4f}  "
              f"({row['snapshots']:,} snapshots)")
    print(phases.to_string(index=False))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
