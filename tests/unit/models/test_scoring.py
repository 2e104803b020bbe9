"""The pure scoring core (`models.scoring`): hand-built frames, no files, no MLflow.

The full core (open leads -> features -> propensity, bands, reasons) on a trained bundle is
pinned in tests/unit/pipeline/test_score.py (chunking, point-in-time) and
tests/pipeline/test_serving.py (the stage, the pyfunc and `mlflow models serve` agree).
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.settings import FeatureSettings
from models import scoring
from models.bundle import ScoringBundle
from models.settings import InputError, SettingsError


def _bundle(features: list[str]) -> ScoringBundle:
    """A bundle with only a feature list: enough for the column checks (no model needed)."""
    return ScoringBundle(features=features, categories={}, model=None, calibrator=None,
                         bands={}, horizon_days=30)


def test_fit_source_columns_are_the_present_fit_columns_not_excluded():
    columns = ["lead_id", "created_at", "industry", "job_title", "budget", "company", "utm"]
    assert scoring.fit_source_columns(columns, FeatureSettings()) == [
        "job_title", "industry", "budget"]
    assert scoring.fit_source_columns(columns, FeatureSettings(exclude=("industry",))) == [
        "job_title", "budget"]


def test_missing_fit_columns_names_those_the_model_was_fitted_on():
    fit = ["job_title", "industry", "budget", "need", "timeframe"]
    assert scoring.missing_fit_columns(["lead_id", "job_title", "need"], fit) == [
        "industry", "budget", "timeframe"]
    assert scoring.missing_fit_columns([*fit, "lead_id"], fit) == []
    # a column the training data did not have is not asked for
    assert scoring.missing_fit_columns(["lead_id"], []) == []


def test_check_feature_columns_names_what_is_missing_and_fills_counts():
    bundle = _bundle(["fit_industry", "extra_tier", "evt_demo_request_30d"])
    # an event type absent from this batch is a count column: filled with 0, no error
    scoring.check_feature_columns(["fit_industry", "extra_tier"], bundle)
    with pytest.raises(scoring.MissingFeaturesError, match="extra_tier") as info:
        scoring.check_feature_columns(["fit_industry"], bundle)
    assert info.value.missing == ["extra_tier"]
    assert "training export had" in info.value.hint
    assert isinstance(info.value, InputError)


def test_chunk_size_below_one_is_a_settings_error():
    leads = pd.DataFrame({"lead_id": pd.Series(["a"], dtype="str"),
                          "created_at": pd.Series([pd.Timestamp("2025-01-01")],
                                                  dtype="datetime64[us]")})
    with pytest.raises(SettingsError, match="`chunk_size` must be >= 1; got 0"):
        scoring.score_open_leads(leads, None, _bundle([]), FeatureSettings(),
                                 pd.Timestamp("2025-02-01"), chunk_size=0)


def test_empty_events_are_typed():
    events = scoring.empty_events()
    assert list(events.columns) == ["lead_id", "timestamp", "event_type"]
    assert str(events["timestamp"].dtype) == "datetime64[us]" and len(events) == 0
