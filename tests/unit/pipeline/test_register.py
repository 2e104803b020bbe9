"""The register stage's gate fails closed, per source: identical models register no new
version; a champion that cannot be evaluated keeps the challenger a challenger (the reason in
reports/registry.json); a failing champion names the last good version; `promote` and
`rollback` move the alias with who/when/why in the version tags.

Two tiny LightGBM bundles are trained once per module (one on every feature, one without
`job_title`); each test gets its own project folder and sqlite MLflow store in tmp_path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from features.build import build_features, feature_columns, feature_groups
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models.training import train_all
from pipeline import pyfunc_model, tracking
from pipeline.contract import CONTRACT_VERSION, validate_leads
from pipeline.errors import ConfigError
from pipeline.io import read_json, write_json
from pipeline.settings import parse_params
from pipeline.stages import register as stage
from tests.helpers import tiny_training

T0 = pd.Timestamp("2025-01-01")
#: The feature columns built from `job_title` (left out of the "reduced" model and split).
FROM_JOB_TITLE = ("fit_seniority", "fit_function")
RAW = {
    "snapshots": {"ages_days": [1, 7, 30]},
    "label": {"horizon_days": 30},
    "features": {"windows_days": [7, 30]},
    **tiny_training(),
}


def _export(n: int = 500, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    created = (T0 + pd.to_timedelta(rng.uniform(0, 250, n), unit="D")).floor("s")
    title = rng.choice(["CEO", "VP Sales", "Engineer", "Intern"], n)
    intent = rng.normal(size=n) + np.isin(title, ["CEO", "VP Sales"])
    conv = rng.random(n) < 1 / (1 + np.exp(1.0 - 1.5 * intent))
    conv_at = created + pd.to_timedelta(1 + rng.exponential(15, n), unit="D")
    leads = pd.DataFrame({
        "lead_id": [f"L{i:04d}" for i in range(n)],
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
        "source": rng.choice(["organic_search", "paid_search", "referral"], n),
        "job_title": title,
        "converted": conv.astype(int).astype(str),
        "converted_at": np.where(conv, conv_at.strftime("%Y-%m-%d %H:%M:%S"), ""),
    })
    rows = []
    for i in range(n):
        k = rng.poisson(2 + 3 / (1 + np.exp(-intent[i])))
        ts = created[i] + pd.to_timedelta(rng.exponential(10, k), unit="D")
        rows += [(leads.lead_id[i], t.floor("s"), e) for t, e in
                 zip(ts, rng.choice(["site_visit", "pricing_view", "demo_request"], k),
                     strict=True)]
    events = pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])
    events["timestamp"] = events["timestamp"].astype("datetime64[us]")
    return leads, events.sort_values(["lead_id", "timestamp"], kind="stable")


@pytest.fixture(scope="module")
def trained() -> dict:
    """{'full': (bundle, features, predictions), 'reduced': (... without job_title)}."""
    params = parse_params(RAW)
    raw_leads, events = _export()
    leads, _ = validate_leads(raw_leads, "leads.csv")
    fs = FeatureSettings.from_params(params.features)
    snap = SnapshotSettings.from_params(params.snapshots, params.label)
    frame = build_features(training_spine(leads, snap, data_end(leads, events)), leads, events,
                           fs)
    out = {}
    for kind in ("full", "reduced"):
        cols = feature_columns(frame)
        if kind == "reduced":
            cols = [c for c in cols if c not in FROM_JOB_TITLE]
            assert len(cols) == len(feature_columns(frame)) - 2
        result = train_all(frame, cols, params.split, params.train, params.calibration,
                           params.bands, horizon_days=30, groups=feature_groups(cols, fs))
        result.bundle.metadata["input_contract"] = pyfunc_model.input_contract(
            leads, events, source="synthetic", source_hash="none", features=RAW["features"],
            ingest={}, contract_version=CONTRACT_VERSION)
        features = frame if kind == "full" else frame.drop(columns=list(FROM_JOB_TITLE))
        out[kind] = (result.bundle, features, result.predictions)
    return out


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _params(root: Path, source: str = "synthetic", **train: object):
    raw = {**RAW, "source": source,
           "train": {**RAW["train"], **train},
           "paths": {"features": str(root / "data/features"), "reports": str(root / "reports"),
                     "interim": str(root / "data/interim"), "scored": str(root / "data/scored")}}
    return parse_params(raw)


def _train(root: Path, trained: dict, kind: str = "full", data_hash: str = "d1") -> None:
    """What `leadprop train` leaves for register: data/models/* and a training run."""
    bundle, features, predictions = trained[kind]
    mdir, fdir = root / "data/models", root / "data/features"
    mdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, mdir / "bundle.joblib")
    predictions.to_parquet(mdir / "predictions.parquet")
    features.to_parquet(fdir / "train.parquet")
    tracking.configure()
    ml = tracking.mlflow()
    ml.set_experiment(tracking.TRAINING_EXPERIMENT)
    with ml.start_run() as run:
        pass
    write_json(mdir / "run.json", {"run_id": run.info.run_id, "data_hash": data_hash})


def _client():
    tracking.configure()
    return tracking.mlflow().MlflowClient()


def _champion(name: str = "lead-propensity") -> str:
    return str(_client().get_model_version_by_alias(name, "champion").version)


def _versions(name: str = "lead-propensity") -> list[str]:
    return sorted(str(v.version) for v in _client().search_model_versions(f"name='{name}'"))


# ------------------------------------------------------------------------------- gate


def test_first_model_is_champion_with_its_hashes(project, trained):
    _train(project, trained)
    record = stage.from_params(_params(project))
    assert record["decision"] == "promoted" and record["reason"] == "no champion yet"
    assert record["version"] == "1" == _champion()
    tags = _client().get_model_version("lead-propensity", "1").tags
    assert tags["leadprop.data_hash"] == "d1"
    assert tags["leadprop.params_hash"] == record["hashes"]["params_hash"]
    assert len(tags["leadprop.code_hash"]) == 12
    assert tags["leadprop.source"] == "synthetic"
    assert tags["leadprop.champion_how"] == "register"
    assert read_json(project / "reports/registry.json")["champion_version"] == "1"


def test_an_identical_model_registers_no_new_version(project, trained):
    _train(project, trained)
    stage.from_params(_params(project))
    again = stage.from_params(_params(project))
    assert again["decision"] == "identical" and again["registered"] is False
    assert again["version"] == "1" and "identical to version 1" in again["reason"]
    assert _versions() == ["1"]
    assert read_json(project / "reports/registry.json")["decision"] == "identical"
    # other data, or other params, is a new version
    _train(project, trained, data_hash="d2")
    assert stage.from_params(_params(project))["version"] == "2"
    assert stage.from_params(_params(project, seed=2))["version"] == "3"
    assert _versions() == ["1", "2", "3"]


def test_champion_that_cannot_be_evaluated_keeps_the_challenger_a_challenger(project, trained):
    _train(project, trained, "full")
    stage.from_params(_params(project))
    _train(project, trained, "reduced", data_hash="d2")  # this split has no job_title features
    record = stage.from_params(_params(project))

    assert record["version"] == "2" and record["promoted"] is False
    assert record["decision"] == "champion_unevaluable"
    assert _champion() == "1"
    assert str(_client().get_model_version_by_alias("lead-propensity", "challenger").version) \
        == "2"
    saved = read_json(project / "reports/registry.json")
    assert saved["promoted"] is False and saved["champion_version"] == "1"
    assert "cannot be evaluated" in saved["reason"] and "fit_seniority" in saved["reason"]
    assert "leadprop promote 2" in saved["reason"] and "leadprop promote 2" in \
        saved["how_to_promote"]


def test_champion_of_another_source_is_not_compared(project, trained):
    _train(project, trained)
    params = _params(project)
    stage.from_params(params)
    client = _client()
    client.set_model_version_tag("lead-propensity", "1", "leadprop.source", "crm-a")
    _train(project, trained, data_hash="d2")
    record = stage.from_params(params)
    assert record["promoted"] is False and _champion() == "1"
    assert "trained on source 'crm-a'" in read_json(project / "reports/registry.json")["reason"]


def test_failing_champion_is_loud_and_names_the_last_good_version(project, trained, caplog,
                                                                  monkeypatch):
    _train(project, trained)
    stage.from_params(_params(project))                       # v1 champion
    _train(project, trained, data_hash="d2")
    assert stage.from_params(_params(project))["promoted"]    # v2 champion, previous 1
    ml = tracking.mlflow()
    real = ml.pyfunc.load_model

    def broken(uri, *a, **k):  # noqa: ANN001, ANN202
        if uri == "models:/lead-propensity/2":
            raise OSError("artifact store unreachable")
        return real(uri, *a, **k)

    monkeypatch.setattr(ml.pyfunc, "load_model", broken)
    _train(project, trained, data_hash="d3")
    with caplog.at_level(logging.ERROR, logger="pipeline.stages.register"):
        record = stage.from_params(_params(project))
    assert record["decision"] == "champion_failed" and record["promoted"] is False
    assert record["last_good_version"] == "1" and _champion() == "2"
    assert "artifact store unreachable" in record["reason"]
    assert "last good version is 1" in record["reason"]
    loud = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert loud and "Last good version: 1" in loud[0].getMessage()


# --------------------------------------------------------------- promote and rollback


def test_promote_by_hand_then_rollback(project, trained):
    _train(project, trained, "full")
    params = _params(project)
    stage.from_params(params)
    _train(project, trained, "reduced", data_hash="d2")
    stage.from_params(params)
    assert _champion() == "1"

    with pytest.raises(ConfigError, match="--reason"):
        stage.promote(params, "2", " ")
    with pytest.raises(ConfigError, match="no version '7'.*1, 2"):
        stage.promote(params, "7", "typo")
    done = stage.promote(params, "2", "checked the new columns by hand")
    assert done["changed"] and _champion() == "2"
    tags = _client().get_model_version("lead-propensity", "2").tags
    assert tags["leadprop.champion_how"] == "manual"
    assert tags["leadprop.champion_why"] == "checked the new columns by hand"
    assert tags["leadprop.champion_previous"] == "1" and tags["leadprop.champion_by"]
    assert tags["leadprop.champion_since"].endswith("Z")
    assert "promoted to champion by hand" in \
        _client().get_model_version("lead-propensity", "2").description
    assert "leadprop.champion_until" in _client().get_model_version("lead-propensity", "1").tags

    back = stage.rollback(params, "scores look off")
    assert back["champion_version"] == "1" == _champion()
    v1 = _client().get_model_version("lead-propensity", "1").tags
    assert v1["leadprop.champion_how"] == "rollback" and v1["leadprop.champion_why"] == \
        "scores look off"
    assert "leadprop.rolled_back" in _client().get_model_version("lead-propensity", "2").tags
    # v1 was the first champion: nothing earlier to roll back to
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        stage.rollback(params)


# -------------------------------------------------------------------- per source


def test_two_sources_have_their_own_registered_model_and_champion(project, trained):
    alpha = _params(project, source="sources/alpha.yaml")
    beta = _params(project, source="sources/Beta CRM.yml")
    assert alpha.register.model_name == "lead-propensity-alpha"
    assert beta.register.model_name == "lead-propensity-beta-crm"
    assert beta.score.model == "models:/lead-propensity-beta-crm@champion"
    _train(project, trained, "full", data_hash="a1")
    first = stage.from_params(alpha)
    _train(project, trained, "reduced", data_hash="b1")   # the other source's columns
    second = stage.from_params(beta)
    # beta's champion is not alpha's: its model is promoted on its own ("no champion yet")
    assert first["promoted"] and second["promoted"]
    assert second["reason"] == "no champion yet"
    assert _champion("lead-propensity-alpha") == "1" == _champion("lead-propensity-beta-crm")
    assert _client().get_model_version("lead-propensity-beta-crm", "1").tags[
        "leadprop.source"] == "beta-crm"


def test_two_sources_keep_independent_score_histories(project, trained):
    """alpha, beta, alpha: alpha's second batch compares with alpha's first (files and the
    SQL table), never with beta's, even in one shared table."""
    from pipeline.stages import score

    raw_leads, raw_events = _export()
    leads_csv, events_csv = project / "leads.csv", project / "events.csv"
    raw_leads.to_csv(leads_csv, index=False)
    raw_events.to_csv(events_csv, index=False)
    alpha = _params(project, source="sources/alpha.yaml")
    beta = _params(project, source="sources/beta.yaml")
    _train(project, trained, data_hash="a1")
    stage.from_params(alpha)
    _train(project, trained, data_hash="b1")
    stage.from_params(beta)
    db = f"sqlite:///{project}/scores.db"

    def run(params, as_of, **kw):  # noqa: ANN001, ANN202
        return score.from_params(params, leads=leads_csv, events=events_csv, as_of=as_of,
                                 scored_at="2025-10-21 08:00:00", db=db, progress=False, **kw)

    a1 = run(alpha, "2025-09-01")
    b1 = run(beta, "2025-09-15")
    a2 = run(alpha, "2025-10-01")
    assert a1["model"]["name"] == "lead-propensity-alpha"
    assert b1["model"]["name"] == "lead-propensity-beta"
    assert a2["previous_batch"] == a1["batch_id"] and b1["previous_batch"] is None
    assert a2["movement"]["same"] + a2["movement"]["up"] + a2["movement"]["down"] > 0
    assert Path(a2["outputs"]["parquet"]) == project / "data/scored/alpha/scored_leads.parquet"
    assert Path(b1["outputs"]["parquet"]) == project / "data/scored/beta/scored_leads.parquet"
    assert a2["outputs"]["sql"].endswith("table scored_leads_alpha")
    assert b1["outputs"]["sql"].endswith("table scored_leads_beta")
    beta_file = pd.read_parquet(project / "data/scored/beta/scored_leads.parquet")
    assert set(beta_file["batch_id"]) == {b1["batch_id"]}

    # one shared table: the previous batch is still the same source's
    s1 = run(alpha, "2025-09-02", table="shared", out=project / "s/alpha")
    run(beta, "2025-09-20", table="shared", out=project / "s/beta")
    s2 = run(alpha, "2025-10-02", table="shared", out=project / "s/alpha")
    assert s2["previous_batch"] == s1["batch_id"]


def test_a_previous_batch_of_another_model_lineage_is_not_compared(project, trained):
    from pipeline.stages import score

    raw_leads, raw_events = _export()
    leads_csv, events_csv = project / "leads.csv", project / "events.csv"
    raw_leads.to_csv(leads_csv, index=False)
    raw_events.to_csv(events_csv, index=False)
    alpha = _params(project, source="sources/alpha.yaml")
    _train(project, trained, data_hash="a1")
    stage.from_params(alpha)
    stage.from_params(_params(project, source="sources/beta.yaml"))
    out = project / "out/batch"

    def run(model, as_of):  # noqa: ANN001, ANN202
        return score.from_params(alpha, leads=leads_csv, events=events_csv, as_of=as_of,
                                 model=model, out=out, scored_at="2025-10-21 08:00:00",
                                 progress=False)

    run("models:/lead-propensity-beta@champion", "2025-09-01")  # into alpha's files
    second = run(None, "2025-10-01")
    assert second["previous_batch"] is None
    assert second["movement"]["new"] == second["counts"]["scored"]
    third = run(None, "2025-10-10")
    assert third["previous_batch"] == second["batch_id"]


def test_an_unreadable_registry_is_not_taken_for_no_champion():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

    class Client:
        def __init__(self, err: Exception) -> None:
            self.err = err

        def get_model_version_by_alias(self, name, alias):  # noqa: ANN001, ANN201
            raise self.err

    x, y = pd.DataFrame({"a": [1.0]}), np.array([1])
    missing = MlflowException("Registered Model with name=m not found",
                              error_code=RESOURCE_DOES_NOT_EXIST)
    assert stage.check_champion(Client(missing), "m", "synthetic", x, y).status == "absent"
    no_alias = MlflowException("Registered model alias champion not found.",
                               error_code=INVALID_PARAMETER_VALUE)
    assert stage.check_champion(Client(no_alias), "m", "synthetic", x, y).status == "absent"
    with pytest.raises(ConfigError, match="cannot read the champion"):
        stage.check_champion(Client(ConnectionError("refused")), "m", "synthetic", x, y)


def test_promote_and_rollback_cli_errors_are_clean(project):
    from typer.testing import CliRunner

    from pipeline.cli import app

    shipped = Path(__file__).resolve().parents[3] / "params.yaml"
    (project / "params.yaml").write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["promote", "3", "--reason", "by hand"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'lead-propensity' has no version '3'" in result.output
    assert "run `leadprop register`" in result.output
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 2 and "has no champion to roll back" in result.output
