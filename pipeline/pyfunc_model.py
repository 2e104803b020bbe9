"""The MLflow pyfunc wrapper around a scoring bundle.

Kept tiny and self-contained: MLflow ships this file and the `models` package with the
model (code_paths), so `mlflow models predict` works on a feature CSV anywhere.
"""

from __future__ import annotations

from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd


class LeadPropensityModel(mlflow.pyfunc.PythonModel):
    """Feature table in; propensity, 1-99 score, temperature and lifecycle stage out."""

    def load_context(self, context: Any) -> None:
        self.bundle = joblib.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.bundle.predict_frame(pd.DataFrame(model_input))
