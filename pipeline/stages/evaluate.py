"""`evaluate` stage: every scorer on the test split, side by side, plus the truth (synthetic).

Reads `data/models/` (bundle, predictions, summary, run id), `paths.features/train.parquet`
(for per-feature contributions) and, when present, `paths.raw/truth.csv` (the synthetic
generator's true probabilities). Writes `reports/metrics.json` (keys
`test.<scorer>.<metric>`, with lead-clustered 95 % intervals `<metric>_ci_low/high` for ROC
AUC, log-loss and ECE, and `ece_null_median/p95`: the ECE a perfectly calibrated scorer
shows on the same rows, `models.metrics.ece_null`), `reports/bands.json`,
`reports/reliability.json` (calibration per snapshot age), `reports/plots/*.csv` (DVC plots),
`reports/model_report.html` (all of them as one unit behind
`reports/evaluate_manifest.json`, which `register` checks), and logs all of it to the
training run in MLflow. It refuses a model folder or features folder whose manifest does
not match (a killed `train`/`features`).
`reports/headline.json` holds the few numbers `dvc metrics show` / `dvc exp show` compare
(the served model on the test split); `metrics.json` keeps every scorer and metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from models.bands import band_table, score_1_99
from models.bundle import ScoringBundle
from models.metrics import (
    calibration_frame,
    ece,
    ece_null,
    evaluate_scores,
    gains_frame,
    lead_bootstrap,
    log_loss,
    pr_curve_frame,
    roc_auc,
    roc_curve_frame,
    wilson_interval,
)
from models.subscores import grid_report
from pipeline import tracking
from pipeline.console import num, pct, progress, summary_table
from pipeline.io import dump_json, read_json, require_unit, write_group
from pipeline.report import ReportContext, promise_verdicts, render_plots, render_report

log = logging.getLogger(__name__)
CURVES = {
    "roc": roc_curve_frame,
    "pr": pr_curve_frame,
    "calibration": calibration_frame,
    "gains": gains_frame,
}
#: The manifest of evaluate's reports and plots (written together; `register` checks it).
EVALUATE_MANIFEST = "evaluate_manifest.json"
#: What `register` checks against it: the git-tracked reports (as is the manifest, so a
#: `git checkout` keeps them in step) that DVC makes `register` depend on.
EVALUATE_CHECKED = ("metrics.json", "headline.json")
PLOT_FILES = {
    "roc": "roc.csv",
    "pr": "pr.csv",
    "calibration": "calibration.csv",
    "gains": "gains.csv",
}


def attach_truth(predictions: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """Add `p_truth` (NaN where the generator has no row) by (lead_id, as_of)."""
    if truth is None:
        return predictions
    t = truth.assign(
        lead_id=truth["lead_id"].astype(str),
        as_of=pd.to_datetime(truth["as_of"]).astype("datetime64[us]"),
    )
    t = t.drop_duplicates(["lead_id", "as_of"])[["lead_id", "as_of", "p_true"]]
    p = predictions.assign(
        as_of=pd.to_datetime(predictions["as_of"]).astype("datetime64[us]"),
        lead_id=predictions["lead_id"].astype(str),
    )
    merged = p.merge(t, on=["lead_id", "as_of"], how="left", validate="one_to_one")
    return merged.rename(columns={"p_true": "p_truth"}).set_index(predictions.index)


def scorers_of(predictions: pd.DataFrame) -> list[str]:
    return [c[2:] for c in predictions.columns if c.startswith("p_")]


def test_metrics(test: pd.DataFrame) -> dict[str, dict[str, float]]:
    """scorer -> evaluate_scores on the test rows (truth only where every row has it)."""
    out = {}
    y = test["label"].to_numpy()
    for scorer in scorers_of(test):
        p = test[f"p_{scorer}"].to_numpy(dtype=float)
        if np.isnan(p).any():
            log.warning(
                "%s: %d test snapshots have no score; %s is left out of the metrics",
                scorer,
                int(np.isnan(p).sum()),
                scorer,
            )
            continue
        out[scorer] = evaluate_scores(y, p)
    return out


def lead_intervals(test: pd.DataFrame, scorers: Any, n_boot: int = 200, seed: int = 0,
                   advance: Callable[[], None] | None = None,
                   ) -> dict[str, dict[str, list[float]]]:
    """scorer -> metric -> [low, high]: 95 % intervals of ROC AUC, log-loss and the
    equal-mass ECE on the test split, resampling whole leads (a lead's snapshots move
    together). `advance` is called after each scorer (progress)."""
    fns = {"roc_auc": roc_auc, "log_loss": log_loss,
           "ece": lambda y, p: ece(y, p, strategy="quantile")}
    y, groups = test["label"].to_numpy(), test["lead_id"].astype(str).to_numpy()
    out = {}
    for s in scorers:
        out[s] = {k: list(v) for k, v in lead_bootstrap(
            y, test[f"p_{s}"].to_numpy(dtype=float), groups, fns, n_boot=n_boot,
            seed=seed).items()}
        if advance is not None:
            advance()
    return out


def reliability_by_age(test: pd.DataFrame, scorer: str = "lightgbm") -> list[dict[str, Any]]:
    """Per snapshot age on the test split: snapshots, mean predicted, observed rate with its
    Wilson interval, their ratio and the equal-mass ECE (bias that one pooled ECE hides)."""
    if "age_days" not in test.columns or test["age_days"].isna().all():
        return []
    rows = []
    for age, part in test.groupby("age_days", sort=True):
        y, p = part["label"].to_numpy(), part[f"p_{scorer}"].to_numpy(dtype=float)
        low, high = wilson_interval(int(y.sum()), len(y))
        rows.append({
            "age_days": int(age), "snapshots": len(y), "positives": int(y.sum()),
            "mean_predicted": float(p.mean()), "observed_rate": float(y.mean()),
            "ci_low": low, "ci_high": high,
            "predicted_over_observed": float(p.mean() / y.mean()) if y.sum() else None,
            "ece": ece(y, p, strategy="quantile") if len(y) >= 10 else None,
        })
    return rows


def bands_report(bundle: ScoringBundle, predictions: pd.DataFrame, band_params: Mapping) -> dict:
    """bands.json: per band set its policy and, per band, cutoff, promise and observed
    conversion on the calibration and test splits with Wilson intervals."""
    out: dict[str, Any] = {
        "score_meaning": ("score = floor(100 x propensity), clipped to 1..99; a band holds the "
                          "scores >= its min_score"),
        "band_sets": {},
    }
    cal = predictions[predictions["split"] == "calibration"]
    test = predictions[predictions["split"] == "test"]
    for name, fitted in bundle.bands.items():
        tables = {
            split: band_table(frame["p_served"], frame["label"], fitted)
            for split, frame in (("calibration", cal), ("test", test))
        }
        bands = []
        for i, band in enumerate(fitted.bands):
            row = {
                "name": band.name,
                "min_propensity": band.min_propensity,
                "min_score": int(score_1_99([band.min_propensity])[0]) if i else 1,
                "promised_conversion": tables["test"][i]["promised_conversion"],
                "target_kind": band.target_kind,
                "target": band.target,
                "feasible": band.feasible,
                # simulated new entries per week (mean, p10, p90), models.bands.WeeklyBatches
                "weekly_entries": getattr(band, "weekly_entries", None),
            }
            for split, table in tables.items():
                t = table[i]
                row[split] = {k: t[k] for k in ("n", "conversions", "rate", "ci_low", "ci_high")}
            bands.append(row)
        policy = getattr(band_params.get(name), "policy", None)
        out["band_sets"][name] = {
            "policy": policy,
            "conversion_rule": fitted.conversion_rule,
            "leads_per_week": fitted.leads_per_week,
            "weekly_simulation": getattr(fitted, "weekly", None),
            "feasible": fitted.feasible,
            "notes": fitted.messages,
            "bands": bands,
        }
    return out


def importance(bundle: ScoringBundle, frame: pd.DataFrame, max_rows: int = 20_000) -> pd.DataFrame:
    """Mean |contribution| (log-odds) per feature on (a sample of) the given rows."""
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=0) if len(frame) else frame
    contrib = bundle.contributions(sample).drop(columns="bias")
    mean_abs = contrib.abs().mean().sort_values(ascending=False)
    return pd.DataFrame(
        {
            "feature": mean_abs.index,
            "group": [bundle.groups.get(f, "other") for f in mean_abs.index],
            "mean_abs_contribution": mean_abs.to_numpy(),
        }
    )


def run(
    bundle: ScoringBundle,
    predictions: pd.DataFrame,
    features: pd.DataFrame,
    summary: dict,
    params: Any,
    leakage: dict | None,
    truth: pd.DataFrame | None,
) -> dict:
    """Everything the stage writes, computed in memory (no IO)."""
    preds = attach_truth(predictions, truth)
    test = preds[preds["split"] == "test"]
    metrics = test_metrics(test)
    curves = {
        kind: {s: fn(test["label"], test[f"p_{s}"]) for s in metrics} for kind, fn in CURVES.items()
    }
    boot = [s for s in metrics if s != "truth"]
    with progress(f"evaluate: 95 % intervals, 200 lead resamples x {len(boot)} scorers",
                  total=len(boot)) as advance:
        intervals = lead_intervals(test, boot, advance=advance)
    for scorer, ci in intervals.items():
        for key, (low, high) in ci.items():
            metrics[scorer][f"{key}_ci_low"], metrics[scorer][f"{key}_ci_high"] = low, high
        # the ECE a perfectly calibrated scorer would show on these rows (noise floor)
        metrics[scorer]["ece_null_median"], metrics[scorer]["ece_null_p95"] = ece_null(
            test[f"p_{scorer}"].to_numpy(dtype=float))
    reliability = reliability_by_age(test, "served")
    bands = bands_report(bundle, preds, params.bands)
    subscores = grid_report(getattr(bundle, "subscores", None) or {}, test,
                            {n: metrics.get(n, {}).get("ece") for n in ("fit", "engagement")})
    test_features = features.loc[predictions.index[predictions["split"] == "test"]]
    with progress(f"evaluate: feature contributions on {min(len(test_features), 20_000):,} "
                  "test snapshots"):
        imp = importance(bundle, test_features)
    group_imp = imp.groupby("group")["mean_abs_contribution"].sum().sort_values(ascending=False)
    cal = summary["calibration"]["served"]
    flat = {f"test.{s}.{k}": v for s, m in metrics.items() for k, v in m.items()}
    flat["calibration.served.ece_before"] = cal["ece_before"]
    flat["calibration.served.ece_after"] = cal["ece_after"]
    if "truth" in metrics:
        for scorer in ("served", "lightgbm"):
            flat[f"test.{scorer}.auc_share_of_truth"] = (
                metrics[scorer]["roc_auc"] / metrics["truth"]["roc_auc"]
            )
    notes = [summary["split"]["warning"]] if summary["split"].get("warning") else []
    if summary.get("served"):
        notes.insert(0, f"Served model: {bundle_name(summary)}. {summary['served']['why']}.")
    for name, b in bands["band_sets"].items():
        notes += [f"{name}: {m}" for m in b["notes"]]
    ctx = ReportContext(
        title="leadprop — lead propensity model report",
        subtitle=(
            f"horizon {bundle.horizon_days} days · data up to {summary.get('data_end', '?')[:10]}"
            f" · {summary['split']['leads']['test']:,} test leads "
            f"({summary['split']['rows']['test']:,} snapshots)"
        ),
        metrics=metrics,
        curves=curves,
        bands={
            n: {"policy": b["policy"], "bands": b["bands"], "notes": b["notes"]}
            for n, b in bands["band_sets"].items()
        },
        leakage=leakage,
        calibration_summary={
            "method": cal["method"],
            "ece_before": cal["ece_before"],
            "ece_after": cal["ece_after"],
        },
        feature_importance=imp,
        notes=notes,
        subscores=subscores or {},
        split_counts={
            part: {"leads": summary["split"]["leads"][part],
                   "snapshots": summary["split"]["rows"][part]}
            for part in summary["split"]["leads"] if part in summary["split"]["rows"]
        },
    )
    with progress(f"evaluate: {len(curves) + len(bands['band_sets']) + 1} plots and the report"):
        plots = render_plots(ctx)
    return {
        "metrics": metrics,
        "flat": flat,
        "curves": curves,
        "bands": bands,
        "reliability": {"scorer": "served", "split": "test", "by_age": reliability},
        "plots": plots,
        "html": render_report(ctx, plots),
        "subscores": subscores,
        "importance": imp,
        "group_importance": group_imp,
    }


#: The served model's test metrics in `headline.json`: few, so `dvc metrics show` stays one
#: readable line per file (every other metric, interval end and count is in metrics.json).
HEADLINE_KEYS = ("roc_auc", "roc_auc_ci_low", "log_loss", "ece", "capture_at_10")
CURVE_POINTS = 201


def headline(metrics: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any]) -> dict:
    """The compact metrics file: the served model's `HEADLINE_KEYS` test metrics (rounded to
    4 places) and, on synthetic data, the share of the truth's ROC AUC."""
    served = metrics.get("served", {})
    out: dict[str, Any] = {k: round(float(served[k]), 4) for k in HEADLINE_KEYS if k in served}
    if "truth" in metrics and "roc_auc" in served:
        out["auc_share_of_truth"] = round(served["roc_auc"] / metrics["truth"]["roc_auc"], 4)
    return {"test": out}


def thin(frame: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """At most `points` rows of a curve, evenly spaced along it, first and last kept: plot
    files stay small enough for git, so `dvc plots diff` can compare experiments."""
    if len(frame) <= points:
        return frame.reset_index(drop=True)
    keep = np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))
    return frame.iloc[keep].reset_index(drop=True)


def _plot_csv(curves: dict[str, dict[str, pd.DataFrame]], kind: str) -> pd.DataFrame:
    return pd.concat([thin(f).assign(scorer=s) for s, f in curves[kind].items()],
                     ignore_index=True)


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop evaluate`)."""
    mdir = Path(params.paths.models)
    # present, and written together by one `train` / `features` run (their manifests)?
    require_unit(mdir, ("bundle.joblib", "predictions.parquet", "summary.json", "run.json"),
                 "train")
    require_unit(Path(params.paths.features), ("train.parquet",), "features")
    bundle: ScoringBundle = joblib.load(mdir / "bundle.joblib")
    predictions = pd.read_parquet(mdir / "predictions.parquet")
    summary = read_json(mdir / "summary.json")
    features = pd.read_parquet(Path(params.paths.features) / "train.parquet")
    from pipeline.stages.train import with_learned_decay

    features = with_learned_decay(features, params, bundle)  # learned-decay features
    truth_path = Path(params.paths.raw) / "truth.csv"
    truth = (
        pd.read_csv(truth_path) if truth_path.exists() and params.source == "synthetic" else None
    )
    audit_path = Path(params.paths.reports) / "leakage_audit.json"
    leakage = read_json(audit_path) if audit_path.exists() else None
    result = run(bundle, predictions, features, summary, params, leakage, truth)

    reports = Path(params.paths.reports)
    nested: dict[str, Any] = {"test": result["metrics"]}
    nested["calibration"] = {
        "served": {
            "ece_before": result["flat"]["calibration.served.ece_before"],
            "ece_after": result["flat"]["calibration.served.ece_after"],
        }
    }
    for scorer in ("served", "lightgbm"):
        key = f"test.{scorer}.auc_share_of_truth"
        if key in result["flat"]:
            nested["test"][scorer]["auc_share_of_truth"] = result["flat"][key]
    plots_dir = reports / "plots"
    jobs: list[tuple[Path, Callable[[Path], None]]] = [
        (reports / "metrics.json", lambda tmp: dump_json(nested, tmp)),
        (reports / "headline.json", lambda tmp: dump_json(headline(result["metrics"], summary),
                                                          tmp)),
        (reports / "bands.json", lambda tmp: dump_json(result["bands"], tmp)),
        (reports / "subscores.json",
         lambda tmp: dump_json(result.get("subscores") or {"skipped": "no sub-scores"}, tmp)),
        (reports / "reliability.json", lambda tmp: dump_json(result["reliability"], tmp)),
    ]
    for kind, name in PLOT_FILES.items():
        frame = _plot_csv(result["curves"], kind)
        jobs.append((plots_dir / name,
                     lambda tmp, f=frame: f.to_csv(tmp, index=False, float_format="%.6g")))
    band_rows = pd.DataFrame(
        [
            {
                "band_set": s,
                "band": b["name"],
                "label": f"{s}: {b['name']}",
                "rate": b["test"]["rate"],
                "ci_low": b["test"]["ci_low"],
                "ci_high": b["test"]["ci_high"],
                "n": b["test"]["n"],
            }
            for s, bs in result["bands"]["band_sets"].items()
            for b in bs["bands"]
        ]
    )
    jobs.append((plots_dir / "bands.csv", lambda tmp: band_rows.to_csv(tmp, index=False)))
    for name, png in result["plots"].items():
        jobs.append((plots_dir / name, lambda tmp, b=png: tmp.write_bytes(b)))
    jobs.append((reports / "model_report.html",
                 lambda tmp: tmp.write_text(result["html"], encoding="utf-8")))
    # one unit behind reports/evaluate_manifest.json, checked by `register`
    write_group(jobs, manifest=reports / EVALUATE_MANIFEST, kill_name="evaluate")

    run_info = read_json(mdir / "run.json")
    tracking.configure()
    ml = tracking.mlflow()
    with progress("evaluate: logging metrics, plots and the report to MLflow"), \
            tracking.start_run(run_id=run_info["run_id"]):
        ml.log_metrics(
            {k: float(v) for k, v in result["flat"].items() if v is not None and np.isfinite(v)}
        )
        ml.log_dict(result["bands"], "bands.json")
        ml.log_text(result["html"], "model_report.html")
        ml.log_artifacts(str(plots_dir), "plots")
        ml.log_text(result["importance"].to_csv(index=False), "feature_importance.csv")
    lg = result["metrics"].get("served", {})
    shown = {"roc_auc": lg.get("roc_auc"), "log_loss": lg.get("log_loss"), "ece": lg.get("ece")}
    if "truth" in result["metrics"]:
        shown["truth_roc_auc"] = result["metrics"]["truth"]["roc_auc"]
    return {"served": bundle_name(read_json(mdir / "summary.json")), "test.served": shown,
            "report": str(reports / "model_report.html"),
            "test_leads": summary["split"]["leads"]["test"],
            "test_snapshots": summary["split"]["rows"]["test"],
            "test": {k: lg.get(k) for k in ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high",
                                            "pr_auc", "log_loss", "ece", "capture_at_10",
                                            "lift_at_10", "base_rate")},
            "calibration_ece": result["flat"]["calibration.served.ece_after"],
            "promises": {name: promise_verdicts(b)
                         for name, b in result["bands"]["band_sets"].items()}}


def render(result: dict) -> Any:
    """The CLI summary: the served model on the test split, and the bands' promises."""
    t = result.get("test") or {}
    ci = ""
    if t.get("roc_auc_ci_low") is not None and t.get("roc_auc_ci_high") is not None:
        ci = f" (95 % CI {num(t['roc_auc_ci_low'])}–{num(t['roc_auc_ci_high'])})"
    rows: list[tuple] = [
        ("ROC AUC", num(t.get("roc_auc")) + ci),
        ("PR AUC", num(t.get("pr_auc"))),
        ("log-loss", num(t.get("log_loss"), 4)),
        ("calibration error (ECE), test split",
         num(100 * t["ece"], 2, "pp") if t.get("ece") is not None else "—"),
        ("calibration error (ECE), calibration split",
         num(100 * result["calibration_ece"], 2, "pp")
         if result.get("calibration_ece") is not None else "—"),
        ("conversions found in the top 10 %", pct(t.get("capture_at_10"))),
        ("lift in the top 10 %", num(t.get("lift_at_10"), 2, "x")),
        ("base rate (converted snapshots)", pct(t.get("base_rate"))),
    ]
    truth = (result.get("test.served") or {}).get("truth_roc_auc")
    if truth is not None:
        rows.append(("truth ROC AUC (generator's probability)", num(truth)))
    for set_name, verdicts in (result.get("promises") or {}).items():
        counted = {v: sum(x == v for x in verdicts.values()) for v in ("kept", "beaten",
                                                                      "not kept")}
        broken = [b for b, v in verdicts.items() if v == "not kept"]
        rows.append((f"bands {set_name}: promises kept / beaten / not kept",
                     f"{counted['kept']} / {counted['beaten']} / {counted['not kept']}"
                     + (f" ({', '.join(broken)})" if broken else "")))
    rows.append(("report", result["report"]))
    return summary_table(
        f"evaluate: {result['served']} on the test split "
        f"({num(result.get('test_leads'))} leads, {num(result.get('test_snapshots'))} snapshots)",
        rows)


def bundle_name(summary: dict) -> str:
    """`lightgbm`, `logreg` or `blend (LightGBM weight w)`: what the bundle serves."""
    served = summary.get("served", {})
    name = served.get("served", "lightgbm")
    return f"blend (LightGBM weight {served['weight']:g})" if name == "blend" else name
