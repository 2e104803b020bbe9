"""`train` stage: fit LightGBM, logistic regression and the manual-rules baseline on the
time-ordered split, calibrate them, fit band cutoffs; start the MLflow training run.

Reads `paths.features/{train.parquet,meta.json}` (+ `paths.interim` and `rules.yaml` for
the rules baseline); writes `data/models/`: `bundle.joblib` (the scoring bundle),
`logreg.joblib`, `predictions.parquet` (every snapshot's split, label and raw/calibrated
score per scorer), `summary.json` and `run.json` (the MLflow run id), as one unit behind
`data/models/manifest.json` (`write_outputs`), which `evaluate` and `register` check.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from features.build import align_features, basic_feature_columns, build_features
from models.drift import drift_reference, top_features
from models.settings import ModelError
from models.subscores import subscore_columns
from models.training import train_all
from models.weekly import weekly_bands
from pipeline import pyfunc_model, tracking
from pipeline.console import num, pct, progress, secs, summary_table
from pipeline.errors import ConfigError, LeadpropError
from pipeline.io import (
    MANIFEST_FILE,
    dump_json,
    kill_point,
    read_json,
    require_unit,
    write_group,
)
from pipeline.settings import flatten

log = logging.getLogger(__name__)


def rule_points(frame: pd.DataFrame, params: Any) -> tuple[pd.Series | None, dict]:
    """Manual point totals per snapshot from the rules file (`rules.file`, default
    rules.yaml); None, with the reason logged and recorded, when no rule applies."""
    from models.rules import score_rules
    from pipeline.rules_config import load_applicable_ruleset, rules_file
    from pipeline.stages.features import feature_settings, read_interim

    path = rules_file(params)
    if not path.exists():
        why = f"no rules file {path}: the manual-rules baseline is skipped"
        log.warning(why)
        return None, {"rules_file": str(path), "skipped": why}
    leads, events = read_interim(Path(params.paths.interim))
    if "created_at" not in leads.columns:  # lead-level export: rules need lead ages/events
        why = "lead-level data (no created_at): the manual-rules baseline is skipped"
        log.warning(why)
        return None, {"rules_file": str(path), "skipped": why}
    _, fs = feature_settings(params)
    ruleset, left_out = load_applicable_ruleset(
        path, leads=leads, events=events, features=frame, event_groups=fs.event_groups
    )
    for message in left_out:
        log.warning("rules: %s", message)
    info = {"rules_file": str(path), "n_rules": len(ruleset.rules), "left_out": left_out}
    if not ruleset.rules:
        why = (f"none of the {len(left_out)} rules in {path} fits this data, so the "
               "manual-rules baseline is skipped; write rules for this export and name the file "
               "in `rules.file` (or the source configuration's `params: {rules: {file: ...}}`)")
        log.warning(why)
        return None, {**info, "skipped": why}
    points = score_rules(frame[["lead_id", "as_of"]], leads, events, frame, ruleset)
    return points["total"].set_axis(frame.index), info


def scoring_reference(result: Any, params: Any) -> dict | None:
    """Drift reference for batch scoring: the open leads as a scoring batch would have seen
    them on the day the test period starts (all lead ages, like a real batch — the training
    snapshots sit at fixed ages and would make every batch look drifted)."""
    from features.snapshots import scoring_spine
    from pipeline.stages.features import feature_settings, read_interim

    pred = result.predictions
    if "created_at" not in pred.columns or pred["created_at"].isna().any():
        return None
    as_of = pd.Timestamp(pred.loc[pred["split"] == "test", "created_at"].min())
    leads, events = read_interim(Path(params.paths.interim))
    spine, _ = scoring_spine(leads, as_of)
    if spine.empty:
        return None
    _, fs = feature_settings(params)
    bundle = result.bundle
    from models.decay import add_decayed_features

    built = add_decayed_features(build_features(spine, leads, events, fs), events, fs,
                                 bundle.metadata.get("decayed_half_lives"))
    X = bundle.matrix(align_features(built, bundle.features, bundle.categories))
    ref = drift_reference(
        X,
        bundle.calibrator.predict(bundle.raw_proba(X)),
        top_features(bundle.features, bundle.model.booster_.feature_importance("gain"), 10),
    )
    return {**ref, "as_of": as_of.isoformat(), "population": "open leads at the test-period start"}


def decayed_features(frame: pd.DataFrame, meta: dict, params: Any) -> tuple[pd.DataFrame,
                                                                           dict, dict]:
    """Learned decay as features (`models.decay`, params `decay`): half-lives fitted on the
    training split, kept where they help on the calibration split, added to the frame as
    `<group>_decayed_hl` (and to meta's features/groups). Returns (frame, meta, summary);
    the summary's `features` is the setting (true, false or auto)."""
    from models.decay import DecaySettings, add_decayed_features, select_decayed_features
    from models.split import split_leads
    from pipeline.stages.features import feature_settings, read_interim

    try:
        ds = DecaySettings.from_params(params.raw.get("decay"))
    except ValueError as err:
        raise ConfigError(f"params: {err}") from err
    _, fs = feature_settings(params)
    empty = {"features": ds.features, "chosen": {}, "groups": []}
    if not ds.features or not fs.event_groups:
        return frame, meta, empty
    _, events = read_interim(Path(params.paths.interim))
    if events is None or not len(events):
        return frame, meta, empty
    parts = split_leads(frame, "label", params.split.fractions, seed=params.train.seed).parts
    with progress("train: learned half-life per intent group (training split)"):
        fits, chosen = select_decayed_features(frame, parts.to_numpy(), events, fs,
                                               n_boot=ds.n_boot, seed=params.train.seed)
    frame = add_decayed_features(frame, events, fs, chosen)
    cols = [c for c in frame.columns if c.endswith("_decayed_hl") and c[:-11] in chosen]
    meta = {**meta, "features": [*[c for c in meta["features"] if c not in cols], *cols],
            "groups": {**(meta.get("groups") or {}),
                       **{f"{g}_decayed_hl": f"behaviour:{g}" for g in chosen}}}
    return frame, meta, {"features": ds.features, "chosen": chosen,
                         "groups": [f.as_dict() for f in fits]}


def decay_to_check(decay: dict) -> list[str] | None:
    """The decayed columns the model-level check decides on (`decay.features: auto`)."""
    from models.decay import decayed_columns

    return decayed_columns(decay["chosen"]) if decay["features"] == "auto" else None


def settle_decay(result: Any, decay: dict) -> None:
    """After `train_all`: the bundle's `decayed_half_lives` (the chosen ones, or none when
    the model-level check dropped their columns) and the summary's `decay`: `decay` plus
    `used` (what the bundle holds) and `model_check` (`models.training.keep_optional`'s
    verdict; None when no check ran)."""
    check = result.summary.pop("optional_features", None)
    used = decay["chosen"] if check is None or check["kept"] else {}
    result.bundle.metadata["decayed_half_lives"] = used
    result.summary["decay"] = {**decay, "used": used, "model_check": check}


def decay_metrics(decay: dict) -> dict[str, float]:
    """The model-level decay check as MLflow metrics (`train.decay.*`); none without one."""
    check = decay.get("model_check")
    if not check:
        return {}
    return {"train.decay.validation_log_loss_without": check["validation_log_loss_without"],
            "train.decay.validation_log_loss_with": check["validation_log_loss_with"],
            "train.decay.kept": float(check["kept"])}


def with_learned_decay(features: pd.DataFrame, params: Any, bundle: Any,
                       events: pd.DataFrame | None = None) -> pd.DataFrame:
    """`paths.features/train.parquet`'s frame plus the bundle's `<group>_decayed_hl`
    columns (`decayed_features`), for the stages after `train` that read it."""
    from models.decay import add_decayed_features
    from pipeline.stages.features import feature_settings, read_interim

    half_lives = bundle.metadata.get("decayed_half_lives")
    if not half_lives:
        return features
    if events is None:
        _, events = read_interim(Path(params.paths.interim))
    return add_decayed_features(features, events, feature_settings(params)[1], half_lives)


def run(frame: pd.DataFrame, meta: dict, params: Any, points: pd.Series | None,  # noqa: ANN201
        optional: list[str] | None = None):
    """Fit everything (no IO): models.training.train_all with typed settings; `optional`
    columns stay only when they help on validation (`optional_features`)."""
    try:
        return train_all(
            frame,
            meta["features"],
            params.split,
            params.train,
            params.calibration,
            params.bands,
            horizon_days=int(meta["horizon_days"]),
            rule_points=points,
            groups=meta.get("groups"),
            baseline_features=basic_feature_columns(meta["features"]),
            subscores=(subscore_columns(meta["features"], meta.get("groups") or {})
                       if params.train.subscores else None),
            optional_features=optional,
        )
    except ModelError as err:
        raise LeadpropError(f"train: {err}") from err


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop train`)."""
    from pipeline.stages.features import FEATURE_FILES

    feat_dir = Path(params.paths.features)
    require_unit(feat_dir, FEATURE_FILES, "features")  # present, and written together?
    frame = pd.read_parquet(feat_dir / "train.parquet")
    meta = read_json(feat_dir / "meta.json")
    try:
        points, rules_info = rule_points(frame, params)
    except ValueError as err:
        raise ConfigError(f"rules: {err}") from err
    frame, meta, decay = decayed_features(frame, meta, params)
    with progress(fitting_label(params, len(frame))):
        result = run(frame, meta, params, points, decay_to_check(decay))
    settle_decay(result, decay)
    if any(bs.uses_capacity for bs in params.bands.values()):
        from pipeline.stages.features import feature_settings, read_interim

        leads, events = read_interim(Path(params.paths.interim))
        try:
            with progress("train: capacity bands on simulated weekly scoring batches"):
                weekly_bands(result, leads, events, feature_settings(params)[1], params.bands,
                             pd.Timestamp(meta["data_end"]))
        except ModelError as err:
            raise LeadpropError(f"train: weekly capacity bands: {err}") from err
    with progress("train: drift reference (open leads at the test-period start)"):
        result.bundle.metadata["reference"] = scoring_reference(result, params)
    # what the registered model accepts: raw leads in this source's contract (pyfunc_model)
    result.bundle.metadata["input_contract"] = pyfunc_model.contract_from_params(params)
    if result.summary["split"]["warning"]:
        log.warning(result.summary["split"]["warning"])

    out = Path(params.paths.models)
    summary = {**result.summary, "rules": rules_info, "data_end": meta["data_end"]}
    if meta.get("sampling"):  # trained on a sample of leads (snapshots.sample_leads)
        summary["sampling"] = meta["sampling"]

    uri = tracking.configure()
    ml = tracking.mlflow()
    ml.set_experiment(tracking.TRAINING_EXPERIMENT)
    data_hash = tracking.file_hash(
        [
            Path(params.paths.interim) / "leads.parquet",
            Path(params.paths.interim) / "events.parquet",
        ]
    )
    with tracking.start_run(run_name=f"train-{data_hash}") as run_:
        ml.set_tags(
            {
                "git_commit": tracking.git_commit(),
                "data_hash": data_hash,
                "source": params.source,
                "stage": "train",
            }
        )
        tracking.log_params(flatten(params.raw))
        tracking.log_params({f"tuned.{k}": v for k, v in summary["lightgbm"]["settings"].items()})
        ml.log_metrics(
            {
                "train.best_iteration": summary["lightgbm"]["best_iteration"],
                "train.n_trees": summary["lightgbm"]["n_trees"],
                "train.tuning.trials": summary["tuning"]["trials"],
                "train.tuning.validation_log_loss": summary["tuning"]["validation_log_loss"],
                "train.tuning.configured_validation_log_loss":
                    summary["tuning"]["configured_validation_log_loss"],
                "train.positives": summary["split"]["positives"]["train"],
                **{
                    f"calibration.{name}.ece_before": c["ece_before"]
                    for name, c in summary["calibration"].items()
                },
                **{
                    f"calibration.{name}.ece_after": c["ece_after"]
                    for name, c in summary["calibration"].items()
                },
                **decay_metrics(summary["decay"]),
            }
        )
        ml.log_dict(summary, "train_summary.json")
        if summary.get("sampling", {}).get("sampled"):
            ml.log_metrics({"train.sample.leads": summary["sampling"]["leads"],
                            "train.sample.drawn_leads": summary["sampling"]["drawn_leads"],
                            "train.sample.share": summary["sampling"]["share"]})
        run_id = run_.info.run_id
        kill_point("train.run")
        # inside the run: a kill while writing leaves it RUNNING, closed FAILED next time
        write_outputs(out, result, summary,
                      {"run_id": run_id, "tracking_uri": uri, "data_hash": data_hash})
    return {
        "run_id": run_id,
        "best_iteration": summary["lightgbm"]["best_iteration"],
        "tuning": {k: summary["tuning"][k] for k in ("trials", "stopped_by", "seconds",
                                                      "validation_log_loss",
                                                      "configured_validation_log_loss")},
        "split_rows": summary["split"]["rows"],
        "split_leads": summary["split"]["leads"],
        "positives": summary["split"]["positives"],
        "calibration": {k: v["method"] for k, v in summary["calibration"].items()},
        "calibration_ece": {k: v["ece_after"] for k, v in summary["calibration"].items()},
        "served": summary.get("served", {}),
        "decay_check": summary["decay"]["model_check"],
    }


def write_outputs(out: Path, result: Any, summary: dict, run_info: dict) -> None:
    """Write the model folder's five files as one unit behind `out/manifest.json`
    (`pipeline.io.write_group`): `evaluate` and `register` refuse a mix of two runs."""
    bundle, logreg, predictions = result.bundle, result.logreg, result.predictions
    write_group(
        [(out / "bundle.joblib", lambda tmp: joblib.dump(bundle, tmp, compress=3)),
         (out / "logreg.joblib", lambda tmp: joblib.dump(logreg, tmp, compress=3)),
         (out / "predictions.parquet", lambda tmp: predictions.to_parquet(tmp, index=False)),
         (out / "summary.json", lambda tmp: dump_json(summary, tmp)),
         (out / "run.json", lambda tmp: dump_json(run_info, tmp))],
        manifest=out / MANIFEST_FILE, kill_name="train",
    )


def fitting_label(params: Any, rows: int) -> str:
    """The progress label of the fitting step: what runs, and its budget."""
    tune = getattr(params.train, "tune", None)
    budget = ""
    if tune is not None and tune.enabled and tune.n_trials > 1:
        budget = f"tuning up to {tune.n_trials} trials (stops after {tune.timeout_seconds:g} s), "
    return (f"train: {budget}fitting LightGBM, logistic regression, calibration and bands on "
            f"{rows:,} snapshots")


def render(result: dict) -> Any:
    """The CLI summary: the split, the tuning and the calibration, as short tables."""
    from rich.console import Group

    rows, leads, pos = result["split_rows"], result.get("split_leads", {}), result["positives"]
    split = summary_table(
        "train: time-ordered split",
        [(part, rows[part], leads.get(part), pos.get(part),
          pct(pos.get(part) / rows[part]) if rows.get(part) else "—") for part in rows],
        headers=("split", "snapshots", "leads", "converted", "rate"),
    )
    t, served = result["tuning"], result.get("served") or {}
    name = served.get("served", "lightgbm")
    if name == "blend":
        name = f"blend (LightGBM weight {served.get('weight', 0):g})"
    model_rows: list[tuple] = [
        ("served model", name),
        ("LightGBM trees (best iteration)", result["best_iteration"]),
        ("tuning trials", f"{t['trials']} (stopped by {t['stopped_by']})"),
        ("tuning time", secs(t["seconds"])),
        ("validation log-loss, tuned", num(t["validation_log_loss"], 4)),
        ("validation log-loss, configured", num(t["configured_validation_log_loss"], 4)),
    ]
    ece = result.get("calibration_ece", {})
    model_rows += [(f"calibration: {k}", f"{m}, ECE {num(100 * ece[k], 2, 'pp')}"
                    if ece.get(k) is not None else m)
                   for k, m in result["calibration"].items()]
    check = result.get("decay_check")
    if check:
        with_, without = (num(check[f"validation_log_loss_{k}"], 5) for k in ("with", "without"))
        model_rows.append(("learned-decay features", f"{'kept' if check['kept'] else 'dropped'}"
                           f" (validation log-loss {with_} with, {without} without)"))
    model_rows.append(("MLflow run", result["run_id"]))
    model = summary_table("train: model", model_rows,
                          caption="ECE on the calibration split (cross-fitted); the test "
                                  "split's is in `leadprop evaluate`.")
    return Group(split, model)
