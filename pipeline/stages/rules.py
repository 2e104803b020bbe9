"""`rules` stage: the manual point rules marketing uses, next to what the data says.

Reads `rules.yaml`, `paths.interim/{leads,events}.parquet`, `paths.features/{train.parquet,
meta.json}` and `data/models/` (`predictions.parquet` for the split and the models' scores,
`bundle.joblib` for the fitted bands and LightGBM's contributions, `run.json`). Writes to
`paths.reports`:

- `rules_comparison.csv`: rule, manual_points, learned_points, ci_low, ci_high, support,
  lift, verdict (`models.rules.comparison_table`; points learned on the training split),
  why (one sentence per verdict, `pipeline.rules_report.explain_verdicts`);
- `rules.learned.yaml`: the suggested rule set (learned, rounded points; thresholds that hit
  the model's band targets on the calibration split), loadable with `load_rules`;
- `rules_headline.json` (DVC metrics: the manual and learned points' test ROC AUC) and
  `rules_performance.json`: manual rules, learned-point rules, logistic regression and
  LightGBM on the test split: ROC/PR AUC, conversion per band with Wilson intervals, the
  hot band's leads and conversions (`pipeline.rules_report`);
- `rules_vs_model_weights.csv`: LightGBM's mean |contribution| per feature group and
  feature, next to the rules touching the same behaviour;
- `rules_plots/*.png` and `rules_summary.md`;

and logs all of it to the MLflow training run (metrics `rules.<scorer>.<metric>`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.settings import FeatureSettings
from models.backtest import capacity_backtest, capacity_grid, decision_batches
from models.bundle import ScoringBundle
from models.decay import fit_decays, manual_inactivity_half_lives
from models.rules import (
    VERDICTS,
    LearnedPoints,
    LearnSettings,
    RuleSet,
    comparison_table,
    learn_points,
    learned_ruleset,
    rule_features,
    with_half_lives,
)
from models.settings import BandSet, CalibrationSettings, InsufficientDataError, ModelError
from pipeline import rules_report as report
from pipeline import tracking
from pipeline.console import num, progress, summary_table
from pipeline.errors import ConfigError, DataError, LeadpropError
from pipeline.io import read_json, write_json, write_with
from pipeline.rules_config import dump_rules, fading_block

log = logging.getLogger(__name__)

COMPARISON_FILE = "rules_comparison.csv"
LEARNED_FILE = "rules.learned.yaml"
PERFORMANCE_FILE = "rules_performance.json"
HEADLINE_FILE = "rules_headline.json"


def rules_headline(performance: dict) -> dict:
    """The two numbers `dvc metrics show` compares for the rules: the test ROC AUC of the
    manual points and of the learned points (`rules.manual_auc`, `rules.learned_auc`; the
    models' AUCs are in headline.json and the verdict counts in rules_performance.json)."""
    if "skipped" in performance:
        return {"rules": {"skipped": 1}}
    scorers = performance.get("scorers", {})
    names = {"manual_rules": "manual_auc", "learned_rules": "learned_auc"}
    return {"rules": {short: round(float(scorers[name]["roc_auc"]), 4)
                      for name, short in names.items()
                      if scorers.get(name, {}).get("roc_auc") is not None}}
WEIGHTS_FILE = "rules_vs_model_weights.csv"
SUMMARY_FILE = "rules_summary.md"
PLOTS_DIR = "rules_plots"
#: Test snapshots sampled for LightGBM's per-lead contributions (enough for stable means).
CONTRIBUTION_ROWS = 5_000
MODEL_SCORERS = ("logreg", "lightgbm")
_KEY = ["lead_id", "as_of"]


@dataclass
class RulesResult:
    """Everything the stage writes, in memory."""

    learned: LearnedPoints
    comparison: pd.DataFrame
    learned_ruleset: RuleSet
    learned_yaml: str
    performance: dict[str, Any]
    weights: pd.DataFrame
    plots: dict[str, bytes]
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)


def learn_settings(params: Any) -> LearnSettings:
    """`LearnSettings` from the `rules` params section (ConfigError on bad values)."""
    try:
        section = {k: v for k, v in (getattr(params, "rules", None) or {}).items()
                   if k != "file"}  # the rules file is read by the stage
        return LearnSettings.from_params(section)
    except ModelError as err:
        raise ConfigError(f"params: {err}") from err


def align(features: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """`split`, `label` and the models' calibrated scores (`p_logreg`, `p_lightgbm`) per
    feature row, in feature-row order (matched on lead_id and as_of)."""
    keep = [c for c in ("split", "label", *(f"p_{s}" for s in MODEL_SCORERS))
            if c in predictions.columns]
    for col in ("split", "label"):
        if col not in keep:
            raise DataError(f"predictions: missing column {col!r}; rerun `leadprop train`")

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(lead_id=frame["lead_id"].astype(str),
                            as_of=pd.to_datetime(frame["as_of"]).astype("datetime64[us]"))

    left = keyed(features[_KEY])
    right = keyed(predictions[[*_KEY, *keep]]).drop_duplicates(_KEY)
    merged = left.merge(right, on=_KEY, how="left", validate="many_to_one")
    if merged["split"].isna().any():
        n = int(merged["split"].isna().sum())
        raise DataError(f"{n} feature snapshot(s) have no prediction row: the features and "
                        "data/models come from different runs; rerun `leadprop train`")
    return merged[keep].set_axis(features.index)


def _leads_per_week(bundle: ScoringBundle) -> float | None:
    for fitted in bundle.bands.values():
        if fitted.leads_per_week is not None:
            return float(fitted.leads_per_week)
    return None


def suggest(ruleset: RuleSet, learned: LearnedPoints, rule_x_cal: pd.DataFrame,
            y_cal: np.ndarray, bands: Mapping[str, BandSet],
            calibration: CalibrationSettings | None, leads_per_week: float | None,
            settings: LearnSettings) -> RuleSet:
    """`models.rules.learned_ruleset`, with thresholds fitted to the model's band targets;
    when the calibration split cannot support that (too few distinct totals), thresholds
    that keep the manual thresholds' shares instead (logged)."""
    targets = {name: b for name, b in bands.items()
               if name in {pb.set_name for pb in ruleset.bands}}
    try:
        return learned_ruleset(ruleset, learned, rule_x_cal, y_cal, targets,
                               calibration=calibration, leads_per_week=leads_per_week,
                               settings=settings)
    except InsufficientDataError as err:
        log.warning("rules: learned thresholds cannot hit the band targets (%s); keeping the "
                    "manual thresholds' shares of calibration snapshots instead", err)
        return learned_ruleset(ruleset, learned, rule_x_cal, y_cal, None,
                               calibration=calibration, settings=settings)


def _sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=n, random_state=seed) if len(frame) > n else frame


def run(
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    ruleset: RuleSet,
    bundle: ScoringBundle,
    settings: LearnSettings,
    bands: Mapping[str, BandSet],
    calibration: CalibrationSettings | None = None,
    groups: Mapping[str, str] | None = None,
    feature_settings: FeatureSettings | None = None,
    data_end: pd.Timestamp | None = None,
) -> RulesResult:
    """Everything the stage writes, computed in memory (no IO).

    `features`: the features stage's training frame (spine + label + features);
    `predictions`: the train stage's predictions (split, label, p_<scorer> per snapshot);
    `groups`: feature -> group (meta.json `groups`; default `bundle.groups`).
    """
    groups = dict(groups or bundle.groups or {})
    aligned = align(features, predictions)
    split = aligned["split"].to_numpy()
    y = aligned["label"].to_numpy(dtype=float)
    spine_cols = [c for c in ("lead_id", "as_of", "created_at") if c in features.columns]
    try:
        rule_x = rule_features(features[spine_cols], leads, events, features, ruleset)
    except ModelError as err:
        raise DataError(f"rules: {err}") from err
    train, cal, test = (split == s for s in ("train", "calibration", "test"))
    if not test.any():
        raise DataError("rules: the predictions have no test snapshots; rerun `leadprop train`")
    try:
        with progress(f"rules: learning points, {settings.n_bootstrap} lead-bootstrap refits "
                      f"on {int(train.sum()):,} training snapshots"):
            learned = learn_points(rule_x[train], y[train], ruleset, settings)
        suggested = suggest(ruleset, learned, rule_x[cal], y[cal], bands, calibration,
                            _leads_per_week(bundle), settings)
    except ModelError as err:
        raise LeadpropError(f"rules: {err}") from err
    comparison = comparison_table(learned)
    comparison = comparison.assign(why=report.explain_verdicts(
        comparison, overlaps=report.rule_overlaps(rule_x[train], ruleset.names),
        ruleset=ruleset, pdo=learned.pdo, settings=settings))

    X_test = rule_x.loc[test, ruleset.names].to_numpy(dtype=float)
    y_test = y[test]
    scores: dict[str, np.ndarray] = {
        "manual_rules": X_test @ ruleset.points,
        "learned_rules": X_test @ suggested.points,
    }
    bandings: dict[str, dict[str, Any]] = {
        "manual_rules": {b.set_name: b for b in ruleset.bands},
        "learned_rules": {b.set_name: b for b in suggested.bands},
    }
    for scorer in MODEL_SCORERS:
        col = f"p_{scorer}"
        if col in aligned.columns and aligned.loc[test, col].notna().all():
            scores[scorer] = aligned.loc[test, col].to_numpy(dtype=float)
            bandings[scorer] = dict(bundle.bands)
    performance = report.performance_report(y_test, scores, bandings)
    performance["learning"] = {**learned.summary(), "n_test_leads": int(
        features.loc[test, "lead_id"].nunique())}
    performance["verdicts"] = {v: int((comparison["verdict"] == v).sum()) for v in VERDICTS}

    sample = _sample(features.loc[test], CONTRIBUTION_ROWS, settings.seed)
    contributions = bundle.contributions(sample).drop(columns="bias")
    x_sample = rule_x.loc[sample.index, ruleset.names].to_numpy(dtype=float)
    centre = rule_x.loc[train, ruleset.names].to_numpy(dtype=float).mean(axis=0)
    rule_log_odds = pd.DataFrame((x_sample - centre) * learned.coef, columns=ruleset.names,
                                 index=sample.index)
    rule_map = report.rule_feature_map(ruleset, bundle.features, groups, feature_settings)
    weights = report.weights_table(contributions, groups, rule_map, comparison, rule_log_odds)

    fs_all = feature_settings or FeatureSettings()
    with progress("rules: half-life per intent group (training split, lead bootstrap)"):
        decays = fit_decays(_labelled(features, train, y), _labelled(features, cal, y), events,
                            fs_all)
    fading = {d.group: d.half_life_days for d in decays
              if d.helps and d.ci_high <= INFORMATIVE_CI_RATIO * d.ci_low}
    faded_ruleset, faded = with_half_lives(suggested, fading, fs_all.event_groups)
    performance["decay"] = {
        "groups": [d.as_dict() for d in decays],
        "manual_inactivity": manual_inactivity_half_lives(ruleset, rule_x.loc[train]),
        "faded_rules": faded,
    }
    backtest = None
    if data_end is not None and "created_at" in leads.columns:
        with progress("rules: decision backtest (weekly calls on the test period)"):
            backtest = decision_backtest(features.loc[test, "lead_id"].unique(), leads, events,
                                         ruleset, bundle, feature_settings, bands, data_end)
        if backtest is not None:
            performance["decision_backtest"] = {
                "weeks": backtest.attrs["weeks"],
                "converted_leads": backtest.attrs["converted_leads"],
                "rows": backtest.to_dict(orient="records")}
    with progress("rules: plots and rules_summary.md"):
        plots = report.render_plots(comparison, performance, weights)
        summary = report.render_summary(comparison, performance, ruleset=ruleset,
                                        learning=learned.summary(), weights=weights,
                                        plots=list(plots), plots_dir=PLOTS_DIR)
    if backtest is not None:
        summary += report.backtest_section(backtest, PLOTS_DIR)
    summary += report.decay_section(performance["decay"], PLOTS_DIR)
    header = ("Suggested rule set, learned by `leadprop rules` from the manual rules in "
              "rules.yaml.\nPoints: what the data gives each rule (rounded); band thresholds "
              "hit the model's band targets.\nReview before use; see rules_summary.md.")

    metrics = report.flat_metrics(performance)
    metrics["rules.learned.pdo"] = float(learned.pdo)
    metrics.update({f"rules.verdicts.{v.replace(' ', '_')}": float(n)
                    for v, n in performance["verdicts"].items()})
    return RulesResult(learned=learned, comparison=comparison, learned_ruleset=suggested,
                       learned_yaml=dump_rules(suggested, learned, header)
                       + fading_block(faded_ruleset, faded),
                       performance=performance, weights=weights, plots=plots, summary=summary,
                       metrics=metrics)


#: A learned half-life is suggested for the rules only when its interval is this narrow
#: (upper bound at most this many times the lower bound).
INFORMATIVE_CI_RATIO = 4.0


def _labelled(features: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    return features.loc[rows, ["lead_id", "as_of"]].assign(label=y[rows])


def decision_backtest(test_leads: Any, leads: pd.DataFrame, events: pd.DataFrame | None,
                      ruleset: RuleSet, bundle: ScoringBundle, fs: FeatureSettings | None,
                      bands: Mapping[str, BandSet], data_end: pd.Timestamp,
                      cadence_days: float = 7.0) -> pd.DataFrame | None:
    """Conversions reached with N calls a week on the test period, by the served model, the
    manual rules and at random (models.backtest); None when no week's outcome is known yet.
    Weekly batches run from the first test lead's creation to `data_end` minus the horizon,
    so every call's outcome window is over."""
    pool = leads[leads["lead_id"].astype(str).isin(pd.Index(test_leads).astype(str))]
    if pool.empty:
        return None
    start = pd.Timestamp(pool["created_at"].min()).normalize() + pd.Timedelta(days=1)
    end = pd.Timestamp(data_end) - pd.Timedelta(days=float(bundle.horizon_days))
    if end < start:
        return None
    batches = decision_batches(bundle, leads, events if events is not None else
                               pd.DataFrame(columns=["lead_id", "timestamp", "event_type"]),
                               fs or FeatureSettings(), pool["lead_id"], start, end,
                               cadence_days, bundle.horizon_days, ruleset)
    if batches.empty:
        return None
    extra = [int(b.target) for bs in bands.values() for b in bs.bands
             if b.target_kind == "capacity_per_week" and b.target]
    return capacity_backtest(batches.rename(columns={"model": "served_model"}),
                             ["served_model", "manual_rules"], capacity_grid(batches, extra))


def write_outputs(result: RulesResult, reports: Path) -> dict[str, Path]:
    """Write every output file under `reports` (each atomically); the plots folder holds
    exactly this run's plots. Returns the paths by name."""
    reports = Path(reports)
    paths = {
        "comparison": reports / COMPARISON_FILE, "learned": reports / LEARNED_FILE,
        "performance": reports / PERFORMANCE_FILE, "weights": reports / WEIGHTS_FILE,
        "summary": reports / SUMMARY_FILE, "plots": reports / PLOTS_DIR,
    }
    write_with(paths["comparison"], lambda tmp: result.comparison.to_csv(tmp, index=False))
    write_with(paths["learned"], lambda tmp: tmp.write_text(result.learned_yaml, encoding="utf-8"))
    write_json(paths["performance"], result.performance)
    write_json(reports / HEADLINE_FILE, rules_headline(result.performance))
    write_with(paths["weights"], lambda tmp: result.weights.to_csv(tmp, index=False))
    write_with(paths["summary"], lambda tmp: tmp.write_text(result.summary, encoding="utf-8"))
    plots_dir = paths["plots"]
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        if old.name not in result.plots:
            old.unlink()
    for name, png in result.plots.items():
        write_with(plots_dir / name, lambda tmp, b=png: tmp.write_bytes(b))
    return paths


def write_skipped(reports: Path, reason: str) -> dict:
    """The stage's outputs when the rules cannot apply to this data: empty tables and a
    summary saying why (DVC still finds every declared output)."""
    log.warning("rules stage skipped: %s", reason)
    reports = Path(reports)
    columns = "rule,manual_points,learned_points,ci_low,ci_high,support,lift,verdict,why\n"
    write_with(reports / COMPARISON_FILE, lambda tmp: tmp.write_text(columns, encoding="utf-8"))
    write_with(reports / LEARNED_FILE,
               lambda tmp: tmp.write_text(f"# skipped: {reason}\nrules: []\n", encoding="utf-8"))
    write_json(reports / PERFORMANCE_FILE, {"skipped": reason})
    write_json(reports / HEADLINE_FILE, rules_headline({"skipped": reason}))
    write_with(reports / WEIGHTS_FILE, lambda tmp: tmp.write_text("", encoding="utf-8"))
    write_with(reports / SUMMARY_FILE,
               lambda tmp: tmp.write_text(f"# Rules vs learned points\n\nSkipped: {reason}\n",
                                          encoding="utf-8"))
    plots = reports / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.png"):
        old.unlink()
    return {"skipped": reason}


def log_to_mlflow(result: RulesResult, paths: Mapping[str, Path], run_id: str) -> None:
    """Metrics and artifacts (under `rules/`) on the training run."""
    tracking.configure()
    ml = tracking.mlflow()
    with tracking.start_run(run_id=run_id):
        ml.log_metrics(result.metrics)
        for key in ("comparison", "learned", "performance", "weights", "summary"):
            ml.log_artifact(str(paths[key]), "rules")
        ml.log_artifacts(str(paths["plots"]), f"rules/{PLOTS_DIR}")


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop rules`)."""
    from pipeline.rules_config import load_applicable_ruleset, rules_file
    from pipeline.stages.features import feature_settings, read_interim

    settings = learn_settings(params)
    _, fs = feature_settings(params)
    feat_dir, mdir = Path(params.paths.features), Path(params.paths.models)
    for path, stage in ((feat_dir / "train.parquet", "features"),
                        (mdir / "predictions.parquet", "train"), (mdir / "bundle.joblib", "train")):
        if not path.exists():
            raise DataError(f"{path}: not found; run `leadprop {stage}` first", file=str(path))
    path = rules_file(params)
    if not path.exists():
        raise ConfigError(f"{path}: not found; the rules stage compares the manual "
                          "point rules in it with the data (see the shipped rules.yaml; "
                          "`rules.file` in params names another file)")
    features = pd.read_parquet(feat_dir / "train.parquet")
    meta = read_json(feat_dir / "meta.json")
    predictions = pd.read_parquet(mdir / "predictions.parquet")
    bundle: ScoringBundle = joblib.load(mdir / "bundle.joblib")
    leads, events = read_interim(Path(params.paths.interim))
    from pipeline.stages.train import with_learned_decay

    features = with_learned_decay(features, params, bundle, events)  # learned-decay features
    if "created_at" not in leads.columns:
        return write_skipped(Path(params.paths.reports),
                             "lead-level data (no created_at): rules need lead ages, events")
    ruleset, left_out = load_applicable_ruleset(path, leads=leads, events=events,
                                                features=features, event_groups=fs.event_groups)
    for message in left_out:
        log.warning("rules: %s", message)
    if not ruleset.rules:
        return write_skipped(Path(params.paths.reports),
                             f"none of the {len(left_out)} rules in {path} fits this data "
                             f"({left_out[0] if left_out else 'empty'}); write rules for this "
                             "export and name the file in `rules.file`")
    result = run(features, predictions, leads, events, ruleset, bundle, settings, params.bands,
                 params.calibration, groups=meta.get("groups"), feature_settings=fs,
                 data_end=pd.Timestamp(meta["data_end"]) if meta.get("data_end") else None)
    paths = write_outputs(result, Path(params.paths.reports))
    run_path = mdir / "run.json"
    if run_path.exists():
        log_to_mlflow(result, paths, read_json(run_path)["run_id"])
    else:
        log.warning("%s: not found; the rules results are not logged to MLflow", run_path)

    worst = report.most_wrong(result.comparison, 3)
    return {
        "roc_auc": {s: e["roc_auc"] for s, e in result.performance["scorers"].items()},
        "verdicts": {v: n for v, n in result.performance["verdicts"].items() if n},
        "most_wrong": [f"{r.rule}: {r.manual_points:+g} -> {r.learned_points:+.1f} ({r.verdict})"
                       for r in worst.itertuples(index=False)],
        "most_wrong_why": [{"rule": r.rule, "points": f"{r.manual_points:+g} -> "
                            f"{r.learned_points:+.1f} ({r.verdict})", "why": r.why}
                           for r in worst.itertuples(index=False)],
        "test_snapshots": result.performance["n"],
        "test_leads": result.performance["learning"]["n_test_leads"],
        "summary": str(paths["summary"]),
    }


def render(result: dict) -> Any:
    """The CLI summary: ROC AUC per scorer on the test split, the verdict counts and the
    most wrong rules with why."""
    from rich.console import Group

    if "skipped" in result:
        return summary_table("rules: skipped", [("why", str(result["skipped"]))])
    rows: list[tuple] = [("## ROC AUC on the test split",)]
    rows += [(report.LABELS.get(s, s), num(auc)) for s, auc in result["roc_auc"].items()]
    rows.append(("## verdicts (rules)",))
    rows += [(v, n) for v, n in result["verdicts"].items()]
    rows.append(("summary", result["summary"]))
    parts: list[Any] = [summary_table(
        f"rules: manual points vs the data ({num(result.get('test_leads'))} test leads, "
        f"{num(result.get('test_snapshots'))} snapshots)", rows)]
    worst = result.get("most_wrong_why") or []
    if worst:
        parts.append(summary_table(
            "rules: most wrong (all verdicts with why: the summary)",
            [(w["rule"], w["points"], w["why"]) for w in worst],
            headers=("rule", "manual -> learned points (verdict)", "why"),
            text_columns=("why",)))
    return Group(*parts)
