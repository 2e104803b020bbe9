"""The leakage audit flags planted leaks, ranks them, and copes with odd columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.audit import leakage_audit
from features.settings import FeatureSettings

N = 2000


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    y = (rng.random(N) < 0.25).astype(int)
    return pd.DataFrame({
        "label": y,
        "noise": rng.normal(size=N),
        "status": np.where(y == 1, "won", np.where(rng.random(N) < 0.6, "lost", "open")),
        "genuine": y * 0.5 + rng.random(N),
        "demo_notes_filled": np.where(y == 1, 1.0, np.nan),
        "all_missing": np.full(N, np.nan),
        "constant": np.ones(N),
        "constant_text": ["same"] * N,
        "lead_id": [f"L{i}" for i in range(N)],
        "job_title": rng.choice(["Customer Success Manager", "CEO", "Engineer"], N),
        "source": pd.Categorical(rng.choice(["paid_search", "organic", "unknown"], N)),
        "as_of": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 99, N), unit="D"),
    })


def test_planted_status_column_ranks_first(frame):
    report = leakage_audit(frame)
    first = report["suspects"][0]
    assert first["column"] == "status"
    assert any("separates the outcome almost alone" in r for r in first["reasons"])
    assert any("values name an outcome" in r and "'won'" in r for r in first["reasons"])
    assert report["columns"][0]["column"] == "status"


def test_missingness_leak_flagged(frame):
    report = leakage_audit(frame)
    rep = {c["column"]: c for c in report["columns"]}["demo_notes_filled"]
    assert rep["suspect"] is True
    assert rep["missing_auc"] == 1.0
    assert rep["conversion_when_present"] == 1.0 and rep["conversion_when_missing"] == 0.0
    assert any("missingness alone" in r for r in rep["reasons"])


def test_innocent_columns_not_suspects(frame):
    cols = {c["column"]: c for c in leakage_audit(frame)["columns"]}
    for name in ("noise", "lead_id", "job_title", "source", "as_of", "constant"):
        assert cols[name]["suspect"] is False, name
    assert cols["lead_id"]["auc"] == pytest.approx(0.5, abs=0.05)  # ids do not memorise
    assert cols["job_title"]["outcome_values"] == ["Customer Success Manager"]


def test_all_missing_and_constant_columns(frame):
    cols = {c["column"]: c for c in leakage_audit(frame)["columns"]}
    assert cols["all_missing"]["auc"] is None
    assert cols["all_missing"]["missing_share"] == 1.0
    assert cols["all_missing"]["missing_auc"] == 0.5
    assert cols["all_missing"]["score"] == 0.0
    assert cols["constant"]["auc"] == 0.5
    assert cols["constant_text"]["auc"] == 0.5
    assert cols["constant"]["score"] == 0.0


def test_safe_and_excluded_are_reported_not_suspects(frame):
    s = FeatureSettings(safe=("genuine",), exclude=("status",))
    report = leakage_audit(frame, settings=s)
    cols = {c["column"]: c for c in report["columns"]}
    assert cols["genuine"]["safe"] is True and cols["genuine"]["suspect"] is False
    assert cols["genuine"]["flagged"] is True
    assert cols["status"]["excluded"] is True and cols["status"]["suspect"] is False
    assert [s["column"] for s in report["suspects"]] == ["demo_notes_filled"]


def test_threshold_is_configurable(frame):
    loose = leakage_audit(frame, settings=FeatureSettings(audit_auc_threshold=0.51))
    assert "genuine" in {s["column"] for s in loose["suspects"]}
    strict = leakage_audit(frame, settings=FeatureSettings(audit_auc_threshold=0.999))
    assert "genuine" not in {s["column"] for s in strict["suspects"]}


def test_report_is_json_and_summarises(frame):
    report = leakage_audit(frame, columns=["noise", "status"], max_rows=500)
    assert json.loads(json.dumps(report))["rows"] == 500
    assert report["rows_total"] == N
    assert [c["column"] for c in report["columns"]] == ["status", "noise"]
    assert "informs" in report["limits"]


def test_single_class_label_gives_no_auc():
    f = pd.DataFrame({"label": [0, 0, 0], "x": [1.0, 2.0, 3.0]})
    report = leakage_audit(f)
    assert report["columns"][0]["auc"] is None and report["suspects"] == []


def test_bad_label_rejected():
    with pytest.raises(ValueError, match="0/1"):
        leakage_audit(pd.DataFrame({"label": [0, 2], "x": [1, 2]}))
