"""`make bench-peers`, the project side: the served model, the project's logistic regression
and a default LightGBM against an AutoML peer (benchmarks/peers/peer_autogluon.py, run in
its own virtualenv) on the same rows of each export.

The two sides meet only through Parquet files under `benchmarks/peers/work/<export>/`:

- `prepare EXPORT` runs the project's own stages (generate for the synthetic sample,
  ingest, features) into that folder, fits every scorer exactly as the `train` stage does
  (`pipeline.stages.train.run` -> `models.training.train_all`: the same split, tuning,
  calibration) and times it, fits a default LightGBM on the train + calibration rows, and
  writes `train.parquet`, `calibration.parquet`, `test.parquet` (features + `label` +
  `row`), `data/models/predictions.parquet` (as `leadprop train` writes it: every
  snapshot's split, label and scores), `project_predictions.parquet` (test rows: `row`,
  `label`, one `p_<scorer>` per scorer) and `project.json` (sizes and fit times). An
  export whose data file is missing is skipped with a message (`skipped.json`).
- the peer reads the three splits, fits on `train` (tuning on `calibration`), predicts
  `test` and writes `peer_predictions.parquet` (`row`, `p`) and `peer.json` (its fit time).
- `report` scores every prepared export's test rows (ROC AUC, log-loss), checks the
  targets (served AUC >= peer - 0.005, log-loss <= peer + 0.005, training faster than the
  peer's fit) and writes `benchmarks/results/peers.{md,json}` with the machine.

Each step skips an export whose output is already there, so an interrupted run resumes.

    python -m benchmarks.peers.harness prepare synthetic
    python -m benchmarks.peers.harness report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(__file__).resolve().parent / "work"
RESULTS = ROOT / "benchmarks" / "results"

#: Export name -> `source` of params.yaml (paths relative to the project folder).
EXPORTS: dict[str, str] = {
    "synthetic": "synthetic",
    "xeducation": "sources/xeducation.yaml",
    "directmail": "sources/directmail.yaml",
}
#: The scorers compared, in table order: column of the predictions -> label.
SCORERS: dict[str, str] = {
    "p_served": "served model (project)",
    "p_logreg": "logistic regression (project)",
    "p_lightgbm_default": "LightGBM, default settings",
    "p_peer": "AutoML peer",
}
AUC_TOLERANCE = 0.005
LOG_LOSS_TOLERANCE = 0.005


# ------------------------------------------------------------------------------ pure part


def split_frames(frame: pd.DataFrame, features: Sequence[str],
                 parts: pd.Series) -> dict[str, pd.DataFrame]:
    """The peer's inputs, one frame per split part ('train', 'calibration', 'test'): the
    feature columns (numbers as float64, categories as plain strings, missing as null,
    so any reader takes them), `label` (int8) and `row` (the row's position in `frame`,
    to join predictions back). `parts` is aligned with `frame`'s index. No IO."""
    from models.training import categorical_columns

    features = list(features)
    cats = set(categorical_columns(frame, features))
    columns: dict[str, Any] = {}
    for col in features:
        values = frame[col]
        if col in cats:
            obj = values.astype(object)
            columns[col] = obj.where(obj.isna(), obj.astype(str))
        else:
            columns[col] = values.astype("float64")
    columns["label"] = pd.Series(frame["label"].to_numpy(dtype=np.int8), index=frame.index)
    columns["row"] = pd.Series(np.arange(len(frame), dtype=np.int64), index=frame.index)
    out = pd.DataFrame(columns, index=frame.index)
    labels = parts.reindex(frame.index).to_numpy()
    return {part: out.loc[labels == part].reset_index(drop=True)
            for part in ("train", "calibration", "test")}


def fit_default_lightgbm(fit_rows: pd.DataFrame, test_rows: pd.DataFrame,
                         features: Sequence[str], seed: int) -> tuple[np.ndarray, float]:
    """LightGBM with its library defaults (only the seed, one thread and no logging set),
    fitted on `fit_rows` (the train + calibration rows of `split_frames`), no early stopping
    and no calibration. Returns the test rows' probabilities and the fit's seconds."""
    import lightgbm as lgb

    from models.estimators import prepare_categories
    from models.training import categorical_columns

    features = list(features)
    cats = categorical_columns(fit_rows, features)
    X_fit, categories = prepare_categories(fit_rows[features], cats)
    X_test, _ = prepare_categories(test_rows[features], cats, categories)
    start = time.perf_counter()
    model = lgb.LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)
    model.fit(X_fit, fit_rows["label"].to_numpy())
    seconds = time.perf_counter() - start
    return model.predict_proba(X_test)[:, 1], seconds


def join_peer(project: pd.DataFrame, peer: pd.DataFrame) -> pd.DataFrame:
    """`project` (`row`, `label`, the project's `p_*` columns) with the peer's `p` as
    `p_peer`, joined by row. A peer file that misses or repeats test rows, or holds a
    probability outside [0, 1], is a ValueError."""
    if peer["row"].duplicated().any():
        raise ValueError(f"peer predictions repeat {int(peer['row'].duplicated().sum())} rows")
    missing = set(project["row"]) - set(peer["row"])
    if missing or len(peer) != len(project):
        raise ValueError(f"peer predictions cover {len(peer)} rows; the test split has "
                         f"{len(project)} ({len(missing)} missing, e.g. row "
                         f"{min(missing) if missing else '-'})")
    p = pd.to_numeric(peer["p"], errors="coerce")
    if p.isna().any() or ((p < 0) | (p > 1)).any():
        raise ValueError("peer predictions must be probabilities in [0, 1]")
    return project.merge(peer.rename(columns={"p": "p_peer"}), on="row", how="left",
                         validate="one_to_one")


def score_export(project: pd.DataFrame, peer: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Test-split ROC AUC and log-loss per scorer (`join_peer`'s inputs and checks)."""
    from models.metrics import log_loss, roc_auc

    merged = join_peer(project, peer)
    y = merged["label"].to_numpy()
    return {col: {"roc_auc": round(roc_auc(y, merged[col]), 4),
                  "log_loss": round(log_loss(y, merged[col]), 4)}
            for col in SCORERS if col in merged.columns}


def served_minus_peer(project: pd.DataFrame, peer: pd.DataFrame,
                      leads: np.ndarray) -> dict[str, dict[str, float]]:
    """Served minus peer ROC AUC and log-loss on the test rows, each with a 95 % interval
    over 1,000 paired lead resamples (`models.metrics.paired_difference`; `leads`: the lead
    of each `project` row). A gap inside the interval's reach of zero is noise."""
    from models.metrics import log_loss, paired_difference, roc_auc

    merged = join_peer(project, peer)
    y, served, other = merged["label"], merged["p_served"], merged["p_peer"]
    return {name: {k: round(v, 4) if isinstance(v, float) else v
                   for k, v in paired_difference(y, served, other, leads, fn).items()}
            for name, fn in (("roc_auc", roc_auc), ("log_loss", log_loss))}


def check_targets(metrics: Mapping[str, Mapping[str, float]], served_seconds: float,
                  peer_seconds: float) -> dict[str, dict[str, Any]]:
    """The three targets, each with the two numbers it compares and whether it is met."""
    served, peer = metrics["p_served"], metrics["p_peer"]
    return {
        "roc_auc": {"served": served["roc_auc"], "bound": round(peer["roc_auc"] - AUC_TOLERANCE, 4),
                    "met": bool(served["roc_auc"] >= peer["roc_auc"] - AUC_TOLERANCE)},
        "log_loss": {"served": served["log_loss"],
                     "bound": round(peer["log_loss"] + LOG_LOSS_TOLERANCE, 4),
                     "met": bool(served["log_loss"] <= peer["log_loss"] + LOG_LOSS_TOLERANCE)},
        "training_time": {"served": round(served_seconds, 1), "bound": round(peer_seconds, 1),
                          "met": bool(served_seconds < peer_seconds)},
    }


def _loads(exports: Mapping[str, Any]) -> str:
    parts = [f"{name} {ex['load_average']['project']} / {ex['load_average']['peer']}"
             for name, ex in exports.items() if ex.get("load_average")]
    return ("project / peer: " + ", ".join(parts)) if parts else "not recorded"


def render_markdown(results: Mapping[str, Any]) -> str:
    """benchmarks/results/peers.md from the `report` result (see `report`)."""
    m = results["machine"]
    lines = [
        "# Peer benchmark: the served model against an AutoML peer",
        "",
        f"Measured {results['date']} by `make bench-peers` on {m.get('cpu_model', '?')}, "
        f"{m.get('cpus', '?')} cores, {m.get('memory_gb', '?')} GB RAM "
        f"(Python {m.get('python', '?')}). Peer: {results['peer']}.",
        "",
        "Every scorer sees the same rows: it fits on the project's time-ordered (or, without "
        "dates, stratified) train + calibration split and is scored on its test split. The "
        "served model and the logistic regression are trained exactly as `leadprop train` "
        "does (tuning, early stopping, calibration); the default LightGBM and the peer get "
        "the same feature columns. Training time: the served model's `train_all` (tuning, "
        "every scorer including the logistic regression, calibration, bands) against the "
        "peer's `fit`, both wall clock; the peer's `time_limit` adapts to a busy machine, the "
        "project's tuning stops at `train.tune.timeout_seconds` and the rest does not. "
        f"Load average (1 min) when each side started: {_loads(results['exports'])}.",
        "",
        "| export | test rows | scorer | ROC AUC | log-loss | fit s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, ex in results["exports"].items():
        if "skipped" in ex:
            lines.append(f"| {name} | — | skipped: {ex['skipped']} | | | |")
            continue
        for col, label in SCORERS.items():
            if col not in ex["metrics"]:
                continue
            sec = ex["seconds"].get(col)
            lines.append(f"| {name} | {ex['test_rows']:,} | {label} | "
                         f"{ex['metrics'][col]['roc_auc']:.4f} | "
                         f"{ex['metrics'][col]['log_loss']:.4f} | "
                         f"{'' if sec is None else f'{sec:.1f}'} |")
    lines += ["", "## Targets", "",
              f"Served ROC AUC >= peer - {AUC_TOLERANCE}, log-loss <= peer + "
              f"{LOG_LOSS_TOLERANCE}, training faster than the peer's fit.", "",
              "| export | AUC: served / bound | log-loss: served / bound | time: served / peer s |",
              "|---|---|---|---|"]
    for name, ex in results["exports"].items():
        t = ex.get("targets")
        if not t:
            continue

        def cell(key: str, t: Mapping[str, Any] = t) -> str:
            fmt = ".1f" if key == "training_time" else ".4f"
            return (f"{t[key]['served']:{fmt}} / {t[key]['bound']:{fmt}} "
                    f"{'met' if t[key]['met'] else '**not met**'}")

        lines.append(f"| {name} | {cell('roc_auc')} | {cell('log_loss')} | "
                     f"{cell('training_time')} |")
    paired = {n: ex["served_minus_peer"] for n, ex in results["exports"].items()
              if "served_minus_peer" in ex}
    if paired:
        lines += ["", "Served minus peer on the same test rows, with a 95 % interval over "
                  "1,000 paired resamples of whole leads:", "",
                  "| export | ROC AUC difference (95 %) | log-loss difference (95 %) |",
                  "|---|---|---|"]
        for name, d in paired.items():
            cells = [f"{d[k]['difference']:+.4f} ({d[k]['ci_low']:+.4f} to "
                     f"{d[k]['ci_high']:+.4f})" for k in ("roc_auc", "log_loss")]
            lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ IO


def _params_for(export: str, folder: Path) -> Any:
    """params.yaml with `source` and `paths` pointed at this export's work folder."""
    from pipeline.settings import load_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["source"] = EXPORTS[export]
    data = folder / "data"
    raw["paths"] = {"raw": str(data / "raw"), "interim": str(data / "interim"),
                    "features": str(data / "features"), "scored": str(data / "scored"),
                    "reports": str(folder / "reports")}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_params(path)


def _missing_data(source: str) -> str | None:
    """Why a source configuration's data cannot be read here, or None."""
    if source == "synthetic":
        return None
    from pipeline.sources import load_source

    config = load_source(source)
    for part in (config.leads, config.events):
        if part is not None and not Path(part.path).exists():
            return f"{part.path} not found (the data lives in ../shared/data beside the repo)"
    return None


def prepare(export: str, work: Path = WORK) -> int:
    """The project side of one export (see the module docstring); skips a finished one."""
    from pipeline.stages import features, generate, ingest, train

    folder = work / export
    if (folder / "project.json").exists():
        print(f"{export}: prepared already ({folder / 'project.json'})")
        return 0
    why = _missing_data(EXPORTS[export])
    if why:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "skipped.json").write_text(json.dumps({"skipped": why}) + "\n")
        print(f"{export}: skipped: {why}")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "skipped.json").unlink(missing_ok=True)
    params = _params_for(export, folder)
    raw, interim = Path(params.paths.raw), Path(params.paths.interim)
    feat_dir = Path(params.paths.features)
    # each stage's output marks it done, so an interrupted export resumes where it stopped
    if params.source == "synthetic" and not (raw / "truth.csv").exists():
        generate.main(params, workers=1)
    if not (interim / "manifest.json").exists():
        ingest.from_params(params)
    if not (feat_dir / "meta.json").exists():
        features.from_params(params)
    frame = pd.read_parquet(feat_dir / "train.parquet")
    meta = json.loads((feat_dir / "meta.json").read_text(encoding="utf-8"))
    load = round(os.getloadavg()[0], 1)
    print(f"{export}: training the project's scorers on {len(frame):,} snapshots", flush=True)
    start = time.perf_counter()
    result = train.run(frame, meta, params, None)
    served_seconds = time.perf_counter() - start
    pred = result.predictions
    models = Path(params.paths.models)
    models.mkdir(parents=True, exist_ok=True)
    pred.to_parquet(models / "predictions.parquet")  # what `leadprop train` writes
    frames = split_frames(frame, meta["features"], pred["split"])
    for part, rows in frames.items():
        rows.to_parquet(folder / f"{part}.parquet", index=False)
    fit_rows = pd.concat([frames["train"], frames["calibration"]], ignore_index=True)
    p_default, default_seconds = fit_default_lightgbm(fit_rows, frames["test"],
                                                      meta["features"], params.train.seed)
    test = (pred["split"] == "test").to_numpy()
    project = pd.DataFrame({
        "row": np.flatnonzero(test).astype(np.int64),
        "label": pred.loc[test, "label"].to_numpy(),
        "p_served": pred.loc[test, "p_served"].to_numpy(),
        "p_logreg": pred.loc[test, "p_logreg"].to_numpy(),
        "p_lightgbm_default": p_default,
    })
    project.to_parquet(folder / "project_predictions.parquet", index=False)
    summary = {
        "export": export,
        "source": EXPORTS[export],
        "load_average": load,
        "features": len(meta["features"]),
        "split": result.summary["split"],
        "served": result.summary["served"]["served"],
        "tuning": {k: result.summary["tuning"].get(k) for k in ("trials", "stopped_by",
                                                                 "seconds")},
        "seconds": {"p_served": round(served_seconds, 1),
                    "p_lightgbm_default": round(default_seconds, 1)},
    }
    (folder / "project.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"{export}: project scorers trained in {served_seconds:.1f} s "
          f"(served: {summary['served']}); default LightGBM {default_seconds:.1f} s")
    return 0


def collect(work: Path = WORK, exports: Sequence[str] = tuple(EXPORTS)) -> dict[str, Any]:
    """Every export's metrics, seconds and targets from the files both sides wrote."""
    out: dict[str, Any] = {}
    peer_name = "not run"
    for export in exports:
        folder = work / export
        if (folder / "skipped.json").exists():
            out[export] = json.loads((folder / "skipped.json").read_text())
            continue
        if not (folder / "project.json").exists() or not (folder / "peer.json").exists():
            out[export] = {"skipped": "not run yet (prepare and the peer write project.json "
                                      "and peer.json)"}
            continue
        project = json.loads((folder / "project.json").read_text())
        peer = json.loads((folder / "peer.json").read_text())
        peer_name = (f"{peer['peer']} {peer['version']}, presets={peer['presets']!r}, "
                     f"time_limit={peer['time_limit']} s, eval_metric={peer['eval_metric']!r}")
        rows = pd.read_parquet(folder / "project_predictions.parquet")
        peer_rows = pd.read_parquet(folder / "peer_predictions.parquet")
        metrics = score_export(rows, peer_rows)
        seconds = {**project["seconds"], "p_peer": round(float(peer["fit_seconds"]), 1)}
        out[export] = {
            "test_rows": int(project["split"]["rows"]["test"]),
            "split": project["split"]["method"],
            "served": project["served"],
            "tuning": project["tuning"],
            "peer_best_model": peer.get("best_model"),
            "metrics": metrics,
            "seconds": seconds,
            "targets": check_targets(metrics, seconds["p_served"], seconds["p_peer"]),
        }
        predictions = folder / "data" / "models" / "predictions.parquet"
        if predictions.exists():  # the lead of each test row, for the paired interval
            leads = pd.read_parquet(predictions, columns=["lead_id"])["lead_id"].astype(str)
            out[export]["served_minus_peer"] = served_minus_peer(
                rows, peer_rows, leads.to_numpy()[rows["row"].to_numpy()])
        if "load_average" in project and "load_average" in peer:
            out[export]["load_average"] = {"project": project["load_average"],
                                           "peer": peer["load_average"]}
    return {"peer": peer_name, "exports": out}


def report(work: Path = WORK, results: Path = RESULTS) -> int:
    """Write benchmarks/results/peers.{json,md}; print the markdown."""
    from benchmarks.run import machine

    data = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "command": "make bench-peers", **collect(work)}
    results.mkdir(parents=True, exist_ok=True)
    (results / "peers.json").write_text(json.dumps(data, indent=2) + "\n")
    text = render_markdown(data)
    (results / "peers.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="the project side of one export")
    prep.add_argument("export", choices=list(EXPORTS))
    sub.add_parser("report", help="score every export -> benchmarks/results/peers.*")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # source configurations name their files relative to the project folder
    if args.command == "prepare":
        return prepare(args.export)
    return report()


if __name__ == "__main__":
    sys.exit(main())
