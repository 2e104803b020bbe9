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
ROC AUC there is no such guarantee. An earlier version added hidden-state *estimates* learnt
from the same features and called the result a bound; being functions of the same
features, they bound nothing.

With `--learning-curve` it also measures where the gap comes from, with one fixed learner
(LightGBM on the served model's tuned settings and feature matrix, early-stopped on the
calibration split, never tuned on the test split):

- how the test AUC grows with the number of training leads (nested random subsets of the
  training split's leads, several draws each): a curve still rising at the full split says
  part of the gap is sample size, which more history would close;
- how much the same learner gains when it is *given* the generator's hidden state at
  `as_of` as extra columns (phase; then phase, fit and intent): what no feature of the
  observable data can hand it directly, and the most a better feature could be worth.

Reads `paths.models/predictions.parquet` (the `train` stage's) and `paths.raw/truth.csv`;
writes `reports/truth_gap.json`. Usage, from the project root after `dvc repro`:

    python -m studies.auc_ceiling [--params params.yaml] [--out reports/truth_gap.json]
                                  [--learning-curve [--repeats 3]]

(`--learning-curve` fits about 3 x repeats + 3 LightGBM models: minutes on the default sample.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.estimators import fit_lightgbm
from models.metrics import log_loss, roc_auc
from models.settings import LightGBMSettings
from pipeline import synth
from pipeline.settings import load_params
from pipeline.stages.evaluate import attach_truth
from pipeline.stages.generate import settings_from_params

#: Shares of the training split's leads the learning curve fits on.
FRACTIONS = (0.125, 0.25, 0.5, 1.0)


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


def nested_lead_subsets(leads: np.ndarray, fractions: tuple[float, ...],
                        seed: int) -> dict[float, np.ndarray]:
    """Row masks, one per fraction: the rows of the first ceil(fraction x n) of the unique
    `leads` in one seeded random order, so every smaller subset lies inside the larger ones
    and a lead's snapshots are never split."""
    unique = pd.unique(leads)
    order = np.random.default_rng(seed).permutation(len(unique))
    rank = pd.Series(np.empty(len(unique), dtype=np.int64), index=unique)
    rank.iloc[order] = np.arange(len(unique))
    lead_rank = rank.loc[leads].to_numpy()
    return {f: lead_rank < int(np.ceil(f * len(unique))) for f in fractions}


def _fit_and_score(X: pd.DataFrame, y: np.ndarray, fit_rows: np.ndarray, parts: np.ndarray,
                   p_truth: np.ndarray, settings: LightGBMSettings, seed: int,
                   early_stopping_rounds: int) -> dict[str, Any]:
    """LightGBM fitted on `fit_rows` (training-split rows), early-stopped on the calibration
    split, scored on the test rows the truth covers: ROC AUC, log-loss, the AUC's share of
    the truth's on the same rows, trees."""
    cal = parts == "calibration"
    test = (parts == "test") & ~np.isnan(p_truth)
    model = fit_lightgbm(X.loc[fit_rows], y[fit_rows], X.loc[cal], y[cal], settings, seed,
                         early_stopping_rounds=early_stopping_rounds)
    p = model.predict_proba(X.loc[test])[:, 1]
    auc = roc_auc(y[test], p)
    return {"test_roc_auc": round(auc, 4),
            "auc_share_of_truth": round(auc / roc_auc(y[test], p_truth[test]), 4),
            "test_log_loss": round(log_loss(y[test], p), 4),
            "trees": int(model.best_iteration_ or settings.n_estimators)}


def learning_curve(X: pd.DataFrame, y: np.ndarray, parts: np.ndarray, leads: np.ndarray,
                   p_truth: np.ndarray, settings: LightGBMSettings, *, seed: int,
                   repeats: int = 3, fractions: tuple[float, ...] = FRACTIONS,
                   early_stopping_rounds: int = 100) -> list[dict[str, Any]]:
    """One row per (fraction of the training leads, draw): leads, snapshots and
    `_fit_and_score`'s test figures. The whole split (fraction 1) is fitted once."""
    is_train = parts == "train"
    rows = []
    for draw in range(repeats):
        masks = nested_lead_subsets(leads[is_train], fractions, seed + draw)
        for fraction, inside in masks.items():
            if fraction >= 1.0 and draw > 0:
                continue
            fit_rows = is_train.copy()
            fit_rows[is_train] = inside
            rows.append({"fraction": fraction, "draw": draw,
                         "leads": int(pd.unique(leads[fit_rows]).size),
                         "snapshots": int(fit_rows.sum()),
                         **_fit_and_score(X, y, fit_rows, parts, p_truth, settings, seed,
                                          early_stopping_rounds)})
    return rows


def hidden_state_gain(X: pd.DataFrame, y: np.ndarray, parts: np.ndarray,
                      hidden: pd.DataFrame, p_truth: np.ndarray, settings: LightGBMSettings,
                      *, seed: int, early_stopping_rounds: int = 100) -> list[dict[str, Any]]:
    """The same learner on the whole training split with the observable features alone,
    with the hidden phase added, and with phase, fit and intent added (`hidden`, aligned
    with `X`): one row each, `_fit_and_score`'s test figures."""
    variants = {"observable features": [],
                "+ hidden phase": ["hidden_phase"],
                "+ hidden phase, fit and intent": ["hidden_phase", "hidden_fit", "hidden_intent"]}
    rows = []
    for name, extra in variants.items():
        frame = pd.concat([X, hidden[extra]], axis=1) if extra else X
        rows.append({"inputs": name, **_fit_and_score(frame, y, parts == "train", parts, p_truth,
                                                        settings, seed, early_stopping_rounds)})
    return rows


def summarise_curve(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per fraction: leads, draws and the mean, min and max share of the truth's AUC."""
    table = pd.DataFrame(rows).groupby("fraction").agg(
        leads=("leads", "mean"), draws=("draw", "size"), mean_share=("auc_share_of_truth", "mean"),
        min_share=("auc_share_of_truth", "min"), max_share=("auc_share_of_truth", "max"))
    return table.round({"leads": 0, "mean_share": 4}).reset_index()


def _study_inputs(params: Any, predictions: pd.DataFrame, truth: pd.DataFrame) -> tuple[
        pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray, LightGBMSettings,
        pd.DataFrame]:
    """The served model's feature matrix of every snapshot (`bundle.joblib` on
    `paths.features/train.parquet`), labels, split parts, lead ids, truth, the tuned
    LightGBM settings and the frame (`lead_id`, `as_of`) the rows belong to."""
    import joblib

    from features.build import align_features
    from pipeline.stages.train import with_learned_decay

    bundle = joblib.load(Path(params.paths.models) / "bundle.joblib")
    frame = pd.read_parquet(Path(params.paths.features) / "train.parquet")
    frame = frame.merge(predictions[["lead_id", "as_of", "split"]], on=["lead_id", "as_of"],
                        how="inner", validate="one_to_one").reset_index(drop=True)
    frame = with_learned_decay(frame, params, bundle)
    X = bundle.matrix(align_features(frame, bundle.features, bundle.categories))
    p_truth = attach_truth(frame[["lead_id", "as_of"]], truth)["p_truth"].to_numpy()
    settings = LightGBMSettings(**bundle.metadata["lightgbm"])
    return (X, frame["label"].to_numpy(dtype=np.int8), frame["split"].to_numpy(),
            frame["lead_id"].astype(str).to_numpy(), p_truth, settings,
            frame[["lead_id", "as_of"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/truth_gap.json")
    parser.add_argument("--learning-curve", action="store_true",
                        help="also fit the learning curve and the hidden-state comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="random draws of each training-lead fraction (learning curve)")
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
    if args.learning_curve:
        X, y, split, leads, p_truth, lgbm, keys = _study_inputs(params, predictions, truth)
        seed, stop = params.train.seed, params.train.early_stopping_rounds
        curve = learning_curve(X, y, split, leads, p_truth, lgbm, seed=seed,
                               repeats=args.repeats, early_stopping_rounds=stop)
        gain = hidden_state_gain(X, y, split, hidden_state(keys, settings), p_truth, lgbm,
                                 seed=seed, early_stopping_rounds=stop)
        out["learning_curve"] = {
            "learner": "LightGBM, the served model's tuned settings, early-stopped on the "
                       "calibration split",
            "rows": curve, "summary": summarise_curve(curve).to_dict("records")}
        out["hidden_state_gain"] = gain
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for part, row in parts.items():
        print(f"{part:12s} served AUC {row['served_roc_auc']:.4f}  truth AUC "
              f"{row['truth_roc_auc']:.4f}  ratio {row['auc_ratio']:.4f}  log-loss served "
              f"{row['served_log_loss']:.4f} truth {row['truth_log_loss']:.4f}  "
              f"({row['snapshots']:,} snapshots)")
    print(phases.to_string(index=False))
    if args.learning_curve:
        print("learning curve (share of the truth's test ROC AUC):")
        print(pd.DataFrame(out["learning_curve"]["summary"]).to_string(index=False))
        print(pd.DataFrame(out["hidden_state_gain"]).to_string(index=False))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
