"""The scoring bundle: everything needed to turn a feature table into a scored table —
feature list and category levels, the LightGBM model, its calibrator and the band cutoffs.

It is what the MLflow pyfunc model wraps, so it holds no paths and no MLflow objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.bands import FittedBands, apply_bands, score_1_99
from models.calibration import ScoreCalibrator
from models.reasons import top_reasons
from models.settings import InputError


@dataclass
class ScoringBundle:
    """A fitted LightGBM + calibrator + bands, with the exact training feature contract."""

    features: list[str]
    categories: dict[str, list[str]]
    model: lgb.LGBMClassifier
    calibrator: ScoreCalibrator
    bands: dict[str, FittedBands]
    horizon_days: int
    groups: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Raise InputError naming the model's features the frame lacks."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            shown = ", ".join(missing[:15]) + (f" (and {len(missing) - 15} more)" if len(missing) > 15 else "")
            raise InputError(
                f"the input lacks {len(missing)} of the model's {len(self.features)} feature "
                f"columns: {shown}. Build features with the same `features` settings the model "
                "was trained with."
            )

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature matrix: training columns in order, categories on training levels
        (unseen values -> 'other', missing -> 'unknown')."""
        self.check_columns(frame)
        out = {}
        for col in self.features:
            values = frame[col]
            if col in self.categories:
                levels = self.categories[col]
                fill = "unknown" if "unknown" in levels else "other"
                text = values.astype("object").where(values.notna(), fill).astype(str)
                text = text.where(text.isin(levels), "other" if "other" in levels else fill)
                values = pd.Categorical(text.where(text.isin(levels), None), categories=levels)
            else:
                values = pd.to_numeric(values, errors="coerce").astype("float64")
            out[col] = values
        return pd.DataFrame(out, index=frame.index)

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self.matrix(frame))[:, 1]

    def propensity(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of converting within `horizon_days`."""
        return self.calibrator.predict(self.raw_proba(frame))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`propensity`, `score` (1-99), one column per band set (`temperature`,
        `lifecycle_stage`), in input order."""
        p = self.propensity(frame)
        out = pd.DataFrame({"propensity": p, "score": score_1_99(p).astype("int64")}, index=frame.index)
        for name, fitted in self.bands.items():
            out[band_column(name)] = apply_bands(p, fitted)
        return out

    def explain(self, frame: pd.DataFrame, n_for: int = 3, n_against: int = 2) -> list[str]:
        """Top reasons per row from LightGBM's own per-lead contributions (pred_contrib)."""
        X = self.matrix(frame)
        contrib = np.asarray(self.model.booster_.predict(X, pred_contrib=True))
        return top_reasons(contrib[:, :-1], X, self.features, n_for=n_for, n_against=n_against)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions in log-odds (the last column is the bias)."""
        X = self.matrix(frame)
        contrib = self.model.booster_.predict(X, pred_contrib=True)
        return pd.DataFrame(contrib, columns=[*self.features, "bias"], index=frame.index)


def band_column(band_set: str) -> str:
    """Scored-table column of a band set: `temperature`, `lifecycle_stage`, else the name."""
    return "lifecycle_stage" if band_set == "lifecycle" else band_set


def model_input(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The given feature columns as a pyfunc would receive them from a CSV: categorical and
    text columns as strings, everything else float64 (the MLflow signature's types)."""
    out = {}
    for col in columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
            out[col] = values.astype("object").where(values.notna(), None).astype("string").fillna("unknown").astype(str)
        else:
            out[col] = values.astype("float64")
    return pd.DataFrame(out, index=frame.index)
