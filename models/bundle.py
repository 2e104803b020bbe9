"""The scoring bundle: everything needed to turn a feature table into a scored table —
feature list and category levels, the LightGBM model, its calibrator and the band cutoffs.

It is what the MLflow pyfunc model wraps, so it holds no paths and no MLflow objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.bands import FittedBands, apply_bands, score_1_99
from models.calibration import ScoreCalibrator
from models.contrib import Forest, compile_forest
from models.linear import LinearContributions
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
    # The served score blends LightGBM and the logistic regression in log-odds:
    # raw = w * trees + (1 - w) * linear (w = 1: LightGBM alone; w = 0: logistic regression).
    linear: LinearContributions | None = None
    blend_weight: float = 1.0
    # explaining sub-scores (models.subscores.SubScore by name: "fit", "engagement")
    subscores: dict[str, Any] = field(default_factory=dict)

    @property
    def blended(self) -> bool:
        """True when the logistic regression takes part in the served score."""
        return self.linear is not None and self.blend_weight < 1.0

    @property
    def scorer_name(self) -> str:
        """What is served: `lightgbm`, `logreg` or `blend`."""
        if not self.blended:
            return "lightgbm"
        return "logreg" if self.blend_weight == 0.0 else "blend"

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
        out = {col: self._column(frame[col], col) for col in self.features}
        return pd.DataFrame(out, index=frame.index)

    def _column(self, values: pd.Series, col: str) -> pd.Series:
        """One `matrix` column: float64, or a categorical on the training levels."""
        if col not in self.categories:
            return pd.to_numeric(values, errors="coerce").astype("float64")
        levels = self.categories[col]
        codes = level_codes(values, levels)
        return pd.Series(pd.Categorical.from_codes(codes, categories=levels), index=values.index)

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The served model's uncalibrated probability."""
        X = self.matrix(frame)
        if not self.blended:
            return self.model.predict_proba(X)[:, 1]
        trees = self.model.predict_proba(X, raw_score=True) if self.blend_weight > 0 else 0.0
        linear, _ = self.linear.contributions(X)  # type: ignore[union-attr]
        return _sigmoid(self.blend_weight * trees + (1.0 - self.blend_weight) * linear)

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

    def score_frame(
        self,
        frame: pd.DataFrame,
        reasons: bool = True,
        n_for: int = 3,
        n_against: int = 2,
        marks: tuple[str, str] = ("+ ", "− "),
        phrases: Any = None,
    ) -> pd.DataFrame:
        """`predict_frame` plus `reasons`, from one pass over the compiled trees: each lead's
        leaves give both its raw score (summed like LightGBM, so the same propensity to the
        last bit) and its contributions. Only the features the trees split on are read.
        `phrases`: the reasons' phrase file (`models.reasons.load_phrases`; default shipped)."""
        columns, raw, contrib = self._contributions(frame)
        p = self.calibrator.predict(_sigmoid(raw))
        out = pd.DataFrame(
            {"propensity": p, "score": score_1_99(p).astype("int64")}, index=frame.index
        )
        for name, fitted in self.bands.items():
            out[band_column(name)] = apply_bands(p, fitted)
        if reasons:
            out["reasons"] = top_reasons(
                contrib.T, columns, list(columns), n_for=n_for, n_against=n_against, marks=marks,
                phrases=phrases,
            )
        return out

    def explain(self, frame: pd.DataFrame, n_for: int = 3, n_against: int = 2) -> list[str]:
        """Top reasons per row from the model's own per-lead contributions (path
        attribution over its trees; see models.contrib)."""
        columns, _, contrib = self._contributions(frame)
        return top_reasons(contrib.T, columns, list(columns), n_for=n_for, n_against=n_against)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row, per-feature contributions in log-odds (the last column is the bias);
        each row sums to the model's raw score."""
        forest = self._forest()
        *_, contrib = self._contributions(frame)
        if self.blended:
            full = contrib.T
            bias = self.blend_weight * forest.bias + (1.0 - self.blend_weight) * \
                self.linear.intercept  # type: ignore[union-attr]
        else:
            full, bias = forest.full_width(contrib), forest.bias
        out = pd.DataFrame(full, columns=self.features, index=frame.index)
        out["bias"] = bias
        return out

    def _contributions(
        self, frame: pd.DataFrame
    ) -> tuple[dict[str, pd.Series], np.ndarray, np.ndarray]:
        """The `matrix` columns of the features the trees split on (the only ones that can
        contribute), the raw scores and the (used features, rows) contributions."""
        self.check_columns(frame)
        forest = self._forest()
        names = [self.features[i] for i in forest.used]
        if not self.blended:
            columns = {col: self._column(frame[col], col) for col in names}
            X = [self._model_values(values) for values in columns.values()]
            return columns, *forest.contributions(X or np.empty((0, len(frame))))
        # a blend: every feature may contribute through the linear part
        w = self.blend_weight
        columns = {col: self._column(frame[col], col) for col in self.features}
        X = [self._model_values(columns[col]) for col in names]
        raw_t, contrib_t = forest.contributions(X or np.empty((0, len(frame))))
        raw_l, contrib_l = self.linear.contributions(  # type: ignore[union-attr]
            pd.DataFrame(columns, index=frame.index))
        contrib = (1.0 - w) * contrib_l.T
        contrib[np.asarray(forest.used, dtype=np.int64)] += w * contrib_t
        return columns, w * raw_t + (1.0 - w) * raw_l, contrib

    @staticmethod
    def _model_values(values: pd.Series) -> np.ndarray:
        """A `matrix` column as LightGBM reads it: float64, categories as codes, NaN missing
        (numeric columns are not copied)."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
            return np.where(codes >= 0, codes, np.nan)
        return np.asarray(values, dtype=np.float64)

    def _forest(self) -> Forest:
        """The compiled trees (built once, kept in `metadata`; picklable)."""
        forest = self.metadata.get("_forest")
        if forest is None:
            best = self.model.best_iteration_ or None
            forest = compile_forest(self.model.booster_, len(self.features), best)
            self.metadata["_forest"] = forest
        return forest


def _sigmoid(raw: np.ndarray) -> np.ndarray:
    """LightGBM's probability 1 / (1 + exp(-raw)) to the last bit: with the C library's exp,
    as LightGBM (numpy's vectorised exp can differ in the last bit, and a lead exactly on a
    band cutoff would then change band). exp(-raw) overflows to inf past -raw = 709."""
    neg = -raw
    e = np.fromiter(map(math.exp, np.minimum(neg, 709.0).tolist()), np.float64, len(neg))
    return 1.0 / (1.0 + np.where(neg > 709.0, np.inf, e))


def level_codes(values: pd.Series, levels: Sequence[str]) -> np.ndarray:
    """Codes of `values` on the training `levels` (-1: none), compared as strings: missing
    -> "unknown" (else "other"), values not in `levels` -> "other" (else the missing one)."""
    index = {str(v): i for i, v in enumerate(levels)}
    missing = index.get("unknown", index.get("other", -1))
    unseen = index.get("other", index.get("unknown", -1))
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, uniques = values.cat.codes.to_numpy(), values.cat.categories
    else:
        present = values.notna().to_numpy()
        codes = np.full(len(values), -1, dtype=np.intp)
        codes[present], uniques = pd.factorize(values[present].astype("object").astype(str))
    lookup = np.array([index.get(str(u), unseen) for u in uniques] + [missing], dtype=np.intp)
    return lookup[codes]  # code -1 (missing) picks the last entry


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
