"""`make bench-peers`, the peer side: AutoGluon's TabularPredictor on one export's Parquet
files (written by `benchmarks.peers.harness prepare`). Runs with the peer's own virtualenv
(benchmarks/peers/.venv, from benchmarks/peers/requirements.txt) and imports nothing from
the project.

Fits on `train.parquet` with `calibration.parquet` as AutoGluon's tuning data (early
stopping, ensemble weights, its own calibration), predicts `test.parquet`, and writes
`peer_predictions.parquet` (`row`, `p` = P(label = 1)) and `peer.json` (fit seconds, the
best model, the leaderboard). Skips a folder that already has `peer.json`.

    benchmarks/peers/.venv/bin/python benchmarks/peers/peer_autogluon.py WORK_DIR \
        [--presets medium_quality] [--time-limit 240]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--presets", default="medium_quality")
    parser.add_argument("--time-limit", type=int, default=240)
    parser.add_argument("--eval-metric", default="log_loss")
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if (folder / "peer.json").exists():
        print(f"{folder.name}: peer fitted already ({folder / 'peer.json'})")
        return 0
    if not (folder / "test.parquet").exists():
        print(f"{folder.name}: no test.parquet (prepare skipped or not run); peer skipped")
        return 0

    import autogluon.tabular
    from autogluon.tabular import TabularPredictor

    train = pd.read_parquet(folder / "train.parquet").drop(columns="row")
    tuning = pd.read_parquet(folder / "calibration.parquet").drop(columns="row")
    test = pd.read_parquet(folder / "test.parquet")
    models = folder / "autogluon"
    shutil.rmtree(models, ignore_errors=True)  # a fit interrupted earlier
    predictor = TabularPredictor(label="label", problem_type="binary",
                                 eval_metric=args.eval_metric, path=str(models), verbosity=1)
    print(f"{folder.name}: AutoGluon {args.presets}, time_limit {args.time_limit} s, "
          f"{len(train):,} training + {len(tuning):,} tuning rows", flush=True)
    load = round(os.getloadavg()[0], 1)
    start = time.perf_counter()
    predictor.fit(train_data=train, tuning_data=tuning, presets=args.presets,
                  time_limit=args.time_limit)
    fit_seconds = time.perf_counter() - start
    proba = predictor.predict_proba(test.drop(columns=["row", "label"]), as_multiclass=True)
    pd.DataFrame({"row": test["row"].to_numpy(),
                  "p": proba[1].to_numpy(dtype="float64")}).to_parquet(
        folder / "peer_predictions.parquet", index=False)
    board = predictor.leaderboard(silent=True)
    info = {
        "peer": "autogluon.tabular",
        "version": autogluon.tabular.__version__,
        "presets": args.presets,
        "time_limit": args.time_limit,
        "eval_metric": args.eval_metric,
        "fit_seconds": round(fit_seconds, 1),
        "load_average": load,
        "best_model": predictor.model_best,
        "leaderboard": board[["model", "score_val", "fit_time"]].head(10).to_dict("records"),
    }
    (folder / "peer.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    shutil.rmtree(models, ignore_errors=True)  # the fitted models are not needed again
    print(f"{folder.name}: peer fitted in {fit_seconds:.1f} s (best: {info['best_model']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
