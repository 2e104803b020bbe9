"""Per-feature contributions of the logistic-regression scorer, exact in log-odds.

The logistic regression (`models.estimators.make_logreg`) sees each feature through its
own preprocessing: numerics are imputed, get a missing indicator where training had gaps,
and are standardised; categoricals are one-hot encoded (rare levels pooled). Its logit is
`intercept + sum_j coef_j * z_j` over those output columns, so a feature's contribution is
the sum of `coef_j * z_j` over the columns it produced. The contributions of a row plus
the intercept equal the model's decision function, like the path attribution of the trees
(`models.contrib`), so a blend of the two in log-odds keeps reasons that add up.

The output columns are mapped back to their input feature from the fitted transformers'
structure (numerics in order, then their indicators; each categorical's one-hot block in
order), never by parsing column names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from models.settings import InputError


@dataclass
class LinearContributions:
    """A fitted logistic-regression pipeline and, per output column, its input feature."""

    pipeline: Pipeline
    features: list[str]  # the input columns, in the order the pipeline was fitted on
    owner: np.ndarray  # output column -> index into `features`
    coef: np.ndarray
    intercept: float

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline, features: Sequence[str]) -> LinearContributions:
        """Read the structure of a fitted `make_logreg` pipeline."""
        columns = pipeline.named_steps["features"]
        model = pipeline.named_steps["model"]
        index = {f: i for i, f in enumerate(features)}
        owner: list[int] = []
        for name, transformer, cols in columns.transformers_:
            if name == "remainder" or transformer == "drop":
                continue
            cols = list(cols)
            if name == "numeric":
                owner += [index[c] for c in cols]
                indicator = transformer.named_steps["impute"].indicator_
                if indicator is not None:
                    owner += [index[cols[i]] for i in indicator.features_]
            elif name == "categorical":
                onehot = transformer.named_steps["onehot"]
                infrequent = getattr(onehot, "infrequent_categories_", None) or \
                    [None] * len(cols)
                for col, cats, rare in zip(cols, onehot.categories_, infrequent, strict=True):
                    n_rare = 0 if rare is None else len(rare)
                    n_out = len(cats) - n_rare + (1 if n_rare else 0)
                    owner += [index[col]] * n_out
            else:
                raise InputError(f"unknown logistic-regression transformer {name!r}")
        coef = np.asarray(model.coef_, dtype=np.float64).ravel()
        if len(owner) != coef.size:
            raise InputError(f"logistic regression: {coef.size} coefficients for {len(owner)} "
                             "mapped columns; the pipeline is not one make_logreg built")
        return cls(pipeline, list(features), np.asarray(owner, np.int64), coef,
                   float(np.asarray(model.intercept_).ravel()[0]))

    def contributions(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(logit per row, contributions (rows, features)); each row's contributions plus
        the intercept equal its logit."""
        Z = self.pipeline.named_steps["features"].transform(X[self.features])
        Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z, dtype=np.float64)
        to_feature = np.zeros((self.coef.size, len(self.features)))
        to_feature[np.arange(self.coef.size), self.owner] = self.coef
        out = Z @ to_feature
        return out.sum(axis=1) + self.intercept, out
