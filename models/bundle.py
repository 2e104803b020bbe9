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
from models.contrib import PathTable, path_contributions, path_table
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
            shown = ", ".join(missing[:15]) + (
                f" (and {len(missing) - 15} more)" if len(missing) > 15 else ""
            )
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
        out = pd.DataFrame(
            {"propensity": p, "score": score_1_99(p).astype("int64")}, index=frame.index
        )
        for name, fitted in self.bands.items():
            out[band_column(name)] = apply_bands(p, fitted)
        return out

    def array(self, X: pd.DataFrame) -> np.ndarray:
        """A `matrix` as a float array (categories as their training codes, NaN if missing):
        what LightGBM sees, without its slower pandas conversion."""
        cols = []
        for col in self.features:
            values = X[col]
            if col in self.categories:
                codes = values.cat.codes.to_numpy().astype("float64")
                codes[codes < 0] = np.nan
                cols.append(codes)
            else:
                cols.append(values.to_numpy(dtype="float64", na_value=np.nan))
        return np.ascontiguousarray(np.column_stack(cols))

    def score_frame(
        self,
        frame: pd.DataFrame,
        reasons: bool = True,
        n_for: int = 3,
        n_against: int = 2,
        marks: tuple[str, str] = ("+ ", "− "),
    ) -> pd.DataFrame:
        """`predict_frame` plus `reasons`, from one pass over the trees: each lead's leaves
        give both its contributions and (their sum + bias) its raw score."""
        X = self.matrix(frame)
        contrib = path_contributions(self.model.booster_, self.array(X), self._paths())
        raw = contrib.sum(axis=1) + self._paths().bias
        p = self.calibrator.predict(1.0 / (1.0 + np.exp(-raw)))
        out = pd.DataFrame(
            {"propensity": p, "score": score_1_99(p).astype("int64")}, index=frame.index
        )
        for name, fitted in self.bands.items():
            out[band_column(name)] = apply_bands(p, fitted)
        if reasons:
            out["reasons"] = top_reasons(
                contrib, X, self.features, n_for=n_for, n_against=n_against, marks=marks
            )
        return out

    def _paths(self) -> PathTable:
        table = self.metadata.get("_path_table")
        if table is None:
            best = self.model.best_iteration_ or None
            table = path_table(self.model.booster_, len(self.features), best)
            self.metadata["_path_table"] = table
        return table

    def _contrib(self, X: pd.DataFrame) -> np.ndarray:
        return path_contributions(self.model.booster_, self.array(X), self._paths())

    def explain(self, frame: pd.DataFrame, n_for: int = 3, n_against: int = 2) -> list[str]:
        """Top reasons per row from the model's own per-lead contributions (path
        attribution over its trees; see models.contrib)."""
        X = self.matrix(frame)
        return top_reasons(self._contrib(X), X, self.features, n_for=n_for, n_against=n_against)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions in log-odds (the last column is the bias);
        each row sums to the model's raw score."""
        X = self.matrix(frame)
        contrib = self._contrib(X)
        out = pd.DataFrame(contrib, columns=self.features, index=frame.index)
        out["bias"] = self._paths().bias
        return out


def band_column(band_set: str) -> str:
    """Scored-table column of a band set: `temperature`, `lifecycle_stage`, else the name."""
    return "lifecycle_stage" if band_set == "lifecycle" else band_set


def model_input(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The given feature columns as a pyfunc would receive them from a CSV: categorical and
    text columns as strings, everything else float64 (the MLflow signature's types)."""
    out = {}
    for col in columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
            values
        ):
            out[col] = (
                values.astype("object")
                .where(values.notna(), None)
                .astype("string")
                .fillna("unknown")
                .astype(str)
            )
        else:
            out[col] = values.astype("float64")
    return pd.DataFrame(out, index=frame.index)
