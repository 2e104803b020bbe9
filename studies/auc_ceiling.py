"""How close can any model get to the generator's true probabilities? A study, not a stage.

The synthetic `truth.csv` is P(convert within the horizon | the lead's hidden fit, intent and
buying phase at `as_of`). Events and fields reveal that hidden state only partly, so the
truth's ROC AUC is a ceiling no model reaches. This study measures how much of the gap is
information the data does not carry, by refitting the pipeline's own LightGBM (same split,
validation slice, parameters and seed, via `models.training.train_all`) on the features
plus pieces of the hidden state the generator knows and the pipeline never sees:

- `features`: what the pipeline trains on (the reference);
- `+ hidden fit` / `+ hidden intent` / `+ hidden phase` / combinations: the exact latent
  values, one piece at a time and together;
- `+ estimates of all three`: the latents predicted from the observable features by models
  that were *trained on the latents themselves* (cross-fitted by lead, 5 folds). No real
  model gets that supervision, so this bounds what the observable data can give from above
  (up to estimation error on this sample).

It reads a finished pipeline run (`dvc repro` up to `features`: `data/features/train.parquet`
and `data/raw/truth.csv`), regenerates the hidden state from `params.yaml` (the generator is
deterministic for its settings), and writes `reports/ceiling.json`. Usage, from the
project root:

    python -m studies.auc_ceiling [--params params.yaml] [--out reports/ceiling.json]

ROC AUC is on the uncalibrated LightGBM score (isotonic calibration adds ties), on the test
split and on the calibration split, each with the truth's AUC on the same snapshots.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from models.estimators import prepare_categories
from models.metrics import roc_auc
from models.training import categorical_columns, train_all
from pipeline import synth
from pipeline.settings import load_params
from pipeline.stages.evaluate import attach_truth
from pipeline.stages.generate import settings_from_params

HIDDEN = ("fit", "intent", "phase")
VARIANTS: dict[str, tuple[str, ...]] = {
    "features": (),
    "+ hidden fit": ("hidden_fit",),
    "+ hidden intent": ("hidden_intent",),
    "+ hidden phase": ("hidden_phase",),
    "+ hidden fit, intent": ("hidden_fit", "hidden_intent"),
    "+ hidden fit, intent, phase": ("hidden_fit", "hidden_intent", "hidden_phase"),
    "+ estimates of all three": ("est_fit", "est_intent",
                                 *(f"est_phase_{p}" for p in synth.PHASES[:synth.N_TRANSIENT + 1])),
}


def hidden_state(frame: pd.DataFrame, settings: synth.SynthSettings) -> pd.DataFrame:
    """`hidden_fit`, `hidden_intent` (floats) and `hidden_phase` (category) per snapshot."""
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


def estimates(frame: pd.DataFrame, features: Sequence[str], hidden: pd.DataFrame,
              seed: int, folds: int = 5) -> pd.DataFrame:
    """The hidden state predicted from `features`, cross-fitted so no lead's estimate comes
    from a model that saw it: `est_fit`, `est_intent`, `est_phase_<phase>` (probabilities)."""
    X, _ = prepare_categories(frame[list(features)], categorical_columns(frame, features))
    groups = frame["lead_id"].to_numpy()
    phases = hidden["hidden_phase"].cat.codes.to_numpy()
    out = pd.DataFrame(index=frame.index)
    est = {"est_fit": np.zeros(len(X)), "est_intent": np.zeros(len(X))}
    proba = np.zeros((len(X), synth.N_TRANSIENT + 1))
    common = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "verbose": -1,
              "random_state": seed, "n_jobs": 1, "deterministic": True, "force_row_wise": True}
    for fit_rows, est_rows in GroupKFold(n_splits=folds).split(X, groups=groups):
        X_fit, X_est = X.iloc[fit_rows], X.iloc[est_rows]
        for name in ("fit", "intent"):
            model = lgb.LGBMRegressor(**common).fit(X_fit, hidden[f"hidden_{name}"].iloc[fit_rows])
            est[f"est_{name}"][est_rows] = model.predict(X_est)
        clf = lgb.LGBMClassifier(**common).fit(X_fit, phases[fit_rows])
        proba[np.ix_(est_rows, clf.classes_)] = clf.predict_proba(X_est)
    for name, values in est.items():
        out[name] = values
    for code, phase in enumerate(synth.PHASES[:synth.N_TRANSIENT + 1]):
        out[f"est_phase_{phase}"] = proba[:, code]
    return out


def study(frame: pd.DataFrame, features: Sequence[str], truth: pd.DataFrame,
          hidden: pd.DataFrame, params: Any, horizon_days: int,
          variants: dict[str, tuple[str, ...]] = VARIANTS) -> dict[str, Any]:
    """Test- and calibration-split ROC AUC of each variant (the model's `features` plus the
    variant's additions), and its share of the truth's on the same snapshots."""
    features = list(features)
    extra = pd.concat([hidden, estimates(frame, features, hidden, params.train.seed)], axis=1)
    data = pd.concat([frame, extra], axis=1)
    p_true = attach_truth(data[["lead_id", "as_of"]], truth)["p_truth"].to_numpy()
    rows: dict[str, Any] = {}
    for name, added in variants.items():
        result = train_all(data, [*features, *added], params.split, params.train,
                           params.calibration, params.bands, horizon_days=horizon_days)
        pred = result.predictions
        row: dict[str, Any] = {"added": list(added)}
        for part in ("test", "calibration"):
            mask = (pred["split"] == part).to_numpy() & ~np.isnan(p_true)
            model = roc_auc(pred.loc[mask, "label"], pred.loc[mask, "raw_lightgbm"])
            ceiling = roc_auc(pred.loc[mask, "label"], p_true[mask])
            row[part] = {"snapshots": int(mask.sum()), "roc_auc": round(model, 4),
                         "truth_roc_auc": round(ceiling, 4),
                         "share_of_truth": round(model / ceiling, 4)}
        rows[name] = row
        print(f"{name:32s} test AUC {row['test']['roc_auc']:.4f} "
              f"({row['test']['share_of_truth']:.3f} x truth)  calibration "
              f"{row['calibration']['roc_auc']:.4f} ({row['calibration']['share_of_truth']:.3f} x)",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="reports/ceiling.json")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if params.source != "synthetic":
        print("the ceiling study needs the synthetic data set (source: synthetic)",
              file=sys.stderr)
        return 2
    frame = pd.read_parquet(Path(params.paths.features) / "train.parquet")
    meta = json.loads((Path(params.paths.features) / "meta.json").read_text())
    truth = pd.read_csv(Path(params.paths.raw) / "truth.csv")
    settings = settings_from_params(params)
    rows = study(frame, meta["features"], truth, hidden_state(frame, settings), params,
                 int(meta["horizon_days"]))
    out = {"leads": settings.n_leads, "seed": settings.seed, "variants": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
