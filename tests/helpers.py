"""Small builders shared by tests that train and register a tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import tracking


def tiny_training(n_estimators: int = 40) -> dict[str, Any]:
    """`split`, `train`, `calibration` and a share-policy `temperature` band set for a model
    that trains in a second on a few hundred generated leads."""
    return {
        "split": {"train": 0.6, "calibration": 0.2, "test": 0.2},
        "train": {"seed": 1, "min_positives": 5, "min_calibration_positives": 5,
                  "early_stopping_rounds": 10, "validation_fraction": 0.2,
                  "lightgbm": {"n_estimators": n_estimators, "learning_rate": 0.1,
                               "num_leaves": 7, "min_child_samples": 10}},
        "calibration": {"method": "sigmoid"},
        "bands": {"temperature": {"policy": "share", "min_band_size": 5, "bands": [
            {"name": "cold"}, {"name": "warm", "top_share": 0.3},
            {"name": "hot", "top_share": 0.1}]}},
    }


def register_champion(bundle_path: Path, name: str = "lead-propensity") -> str:
    """Log the joblib bundle at `bundle_path` as a model version of `name` in the
    configured MLflow store, alias it `champion`, and return the version."""
    tracking.configure()
    ml = tracking.mlflow()
    ml.set_experiment(tracking.TRAINING_EXPERIMENT)
    with ml.start_run():
        info = tracking.log_bundle_model(bundle_path, registered_model_name=name)
    version = str(info.registered_model_version)
    ml.MlflowClient().set_registered_model_alias(name, "champion", version)
    return version
