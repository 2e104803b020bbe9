"""`register` stage: log the scoring bundle as one MLflow pyfunc model, register it as
`register.model_name` with alias `challenger`, and promote it to `champion` only if it is
at least as good as the current champion on the current test split.

"As good": test log-loss no worse, and test ROC AUC no more than `register.auc_tolerance`
below the champion's. The comparison (both models on the same test snapshots) is logged to
the training run and written to `reports/registry.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.pii import personal_kind, personal_levels
from models.bundle import ScoringBundle, model_input
from models.metrics import log_loss, roc_auc
from pipeline import tracking
from pipeline.errors import DataError, LeadpropError
from pipeline.io import read_json, require_inputs, write_json

log = logging.getLogger(__name__)


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, auc_tolerance: float
) -> tuple[bool, str]:
    """(promote?, why) from test log-loss and ROC AUC of both models."""
    if champion is None:
        return True, "no champion yet"
    worse_loss = challenger["log_loss"] > champion["log_loss"] + 1e-12
    worse_auc = challenger["roc_auc"] < champion["roc_auc"] - auc_tolerance
    if worse_loss or worse_auc:
        why = []
        if worse_loss:
            why.append(
                f"log-loss {challenger['log_loss']:.4f} > champion {champion['log_loss']:.4f}"
            )
        if worse_auc:
            why.append(
                f"ROC AUC {challenger['roc_auc']:.4f} < champion {champion['roc_auc']:.4f}"
                f" - tolerance {auc_tolerance}"
            )
        return False, "; ".join(why)
    return True, (
        f"log-loss {challenger['log_loss']:.4f} <= {champion['log_loss']:.4f} and ROC AUC "
        f"{challenger['roc_auc']:.4f} within {auc_tolerance} of {champion['roc_auc']:.4f}"
    )


def refuse_personal(bundle: ScoringBundle, example: pd.DataFrame, file: str) -> None:
    """DataError when a feature's category levels (pickled with the model) or the input
    example hold emails, phones or person names: such a model must not reach the registry.
    Ingest refuses those columns already; this is the last line."""
    found = [(col, kind) for col, levels in bundle.categories.items()
             if (kind := personal_levels(levels)) is not None]
    found += [(col, hit.kind) for col in example.columns if col not in bundle.categories
              and (hit := personal_kind(example[col], col)) is not None]
    if found:
        shown = ", ".join(f"{col} ({kind})" for col, kind in found[:5])
        raise DataError(
            f"{file}: the model's features hold personal data: {shown}. It is not registered. "
            "Re-run ingest (which refuses such columns; set `ingest.personal_data` to drop or "
            "hash them) and train again, or add the source columns to `features.exclude`.",
            file=file, column=found[0][0], n_rows=len(found),
        )


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"log_loss": log_loss(y, p), "roc_auc": roc_auc(y, p)}


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop register`)."""
    mdir = Path(params.paths.models)
    require_inputs(
        [mdir / f for f in ("bundle.joblib", "predictions.parquet", "run.json")], "train"
    )
    require_inputs([Path(params.paths.features) / "train.parquet"], "features")
    name = params.register.model_name
    bundle: ScoringBundle = joblib.load(mdir / "bundle.joblib")
    predictions = pd.read_parquet(mdir / "predictions.parquet")
    features = pd.read_parquet(Path(params.paths.features) / "train.parquet")
    is_test = (predictions["split"] == "test").to_numpy()
    test_x, y = features.loc[is_test], predictions.loc[is_test, "label"].to_numpy()
    run_id = read_json(mdir / "run.json")["run_id"]

    tracking.configure()
    ml = tracking.mlflow()
    client = ml.MlflowClient()
    champion_version = tracking.registered_version(client, name, "champion")
    champion_scores = None
    if champion_version is not None:
        try:
            champ = ml.pyfunc.load_model(f"models:/{name}@champion")
            wanted = champ.metadata.get_input_schema().input_names()
            missing = [c for c in wanted if c not in test_x.columns]
            if missing:
                raise ValueError(f"the current features lack {missing[:10]}")
            champion_scores = _scores(
                y, champ.predict(model_input(test_x, wanted))["propensity"].to_numpy()
            )
        except LeadpropError:
            raise
        except Exception as err:  # noqa: BLE001 - an unreadable champion must not block training
            log.warning(
                "the champion (version %s) cannot score the current test split (%s); "
                "it is treated as absent",
                champion_version.version,
                err,
            )
            champion_scores = None
    challenger_scores = _scores(y, predictions.loc[is_test, "p_served"].to_numpy())
    promote, why = decide(challenger_scores, champion_scores, params.register.auc_tolerance)

    example = model_input(features.head(5), bundle.features)
    refuse_personal(bundle, example, str(mdir / "bundle.joblib"))
    with ml.start_run(run_id=run_id):
        info = tracking.log_bundle_model(
            mdir / "bundle.joblib",
            example,
            bundle.predict_frame(example),
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, "challenger", version)
        if promote:
            client.set_registered_model_alias(name, "champion", version)
        ml.log_dict(
            {
                "challenger": {"version": version, **challenger_scores},
                "champion": None
                if champion_version is None
                else {"version": champion_version.version, **(champion_scores or {})},
                "promoted": promote,
                "reason": why,
            },
            "registry_decision.json",
        )
        ml.set_tags({"registered_version": version, "promoted_to_champion": str(promote)})
    champion_now = version if promote else (champion_version.version if champion_version else None)
    record = {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "challenger": challenger_scores,
        "previous_champion": champion_scores,
        "previous_champion_version": champion_version.version if champion_version else None,
        "promoted": promote,
        "reason": why,
        "champion_version": champion_now,
    }
    write_json(Path(params.paths.reports) / "registry.json", record)
    (log.info if promote else log.warning)(
        "version %s %s champion: %s", version, "is now" if promote else "stays challenger; not", why
    )
    return record
