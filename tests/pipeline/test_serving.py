"""The registered MLflow model takes raw leads: a tiny project trained and registered by the
real stage functions (generate -> ingest -> features -> train -> register) in a temporary
folder with its own MLflow store, then

- in process: `mlflow.pyfunc.load_model(...).predict(raw leads + events, params={"as_of"})`
  gives the same propensity, score, bands and reasons as the `score` stage for those leads;
- over HTTP: `mlflow models serve --env-manager local` on 127.0.0.1, five raw leads of the
  synthetic sample with their events POSTed to `/invocations` give the same again;
- the model refuses input that breaks the contract it was trained on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.subscores import SCORED_COLUMNS
from pipeline import pyfunc_model, tracking
from pipeline.errors import DataError
from pipeline.settings import load_params
from pipeline.stages import features, generate, ingest, register, score, train

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
BANDS = ["temperature", "lifecycle_stage"]
OVERRIDES = {
    "generate": {"leads": 3000, "months": 10},
    "snapshots": {"ages_days": [1, 7, 30]},
    "label": {"horizon_days": 30},
    "train": {"tune": {"enabled": False}, "min_positives": 20,
              "lightgbm": {"n_estimators": 150, "min_child_samples": 50}},
    "bands": {
        "temperature": {"policy": "share", "min_band_size": 5, "bands": [
            {"name": "cold"}, {"name": "warm", "top_share": 0.3},
            {"name": "hot", "top_share": 0.1}]},
        "lifecycle": {"policy": "share", "min_band_size": 5, "bands": [
            {"name": "lead"}, {"name": "MQL", "top_share": 0.4},
            {"name": "SQL", "top_share": 0.15}]},
    },
}


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """Train and register the tiny project; yield its folder, store, model URI, as_of and
    the stage's scored table (export mode on the raw files at that as_of)."""
    root = tmp_path_factory.mktemp("serving")
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(base, OVERRIDES), sort_keys=False),
                                      encoding="utf-8")
    shutil.copy2(ROOT / "rules.yaml", root / "rules.yaml")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv("MLFLOW_REGISTRY_URI", store)
        params = load_params("params.yaml")
        generate.main(params, workers=1)
        for stage in (ingest, features, train, register):
            stage.from_params(load_params("params.yaml"))
        record = json.loads((root / "reports" / "registry.json").read_text(encoding="utf-8"))
        uri = f"models:/{record['model_name']}/{record['version']}"
        as_of = pd.Timestamp(json.loads((root / "data" / "features" / "meta.json")
                                        .read_text(encoding="utf-8"))["data_end"]).floor("D")
        summary = score.from_params(load_params("params.yaml"), leads=root / "data/raw/leads.csv",
                                    events=root / "data/raw/events.csv", as_of=as_of, model=uri,
                                    out=root / "scored" / "batch", progress=False)
        table = pd.read_parquet(root / "scored" / "batch.parquet")
        yield {"root": root, "store": store, "uri": uri, "as_of": as_of, "table": table,
               "summary": summary}


def five_raw_leads(project) -> pd.DataFrame:
    """Five scored leads (top, bottom, in between) as raw rows of the synthetic export, with
    their events as a JSON list per lead; the outcome columns left out (open leads)."""
    table = project["table"]
    picks = table["lead_id"].iloc[np.linspace(0, len(table) - 1, 5).astype(int)].tolist()
    raw = pd.read_csv(project["root"] / "data/raw/leads.csv", dtype=str, keep_default_na=False)
    rows = raw.set_index("lead_id").loc[picks].reset_index()
    rows = rows.drop(columns=[c for c in ("converted", "converted_at", "lost_at")
                              if c in rows.columns])
    events = pd.read_csv(project["root"] / "data/raw/events.csv", dtype=str,
                         keep_default_na=False)
    mine = events[events["lead_id"].isin(picks)]
    rows["events"] = [json.dumps(mine[mine["lead_id"] == i].drop(columns="lead_id")
                                 .to_dict(orient="records")) for i in rows["lead_id"]]
    rows = rows.replace({"": None})
    return rows.assign(company_size=pd.to_numeric(rows["company_size"]))  # a JSON number


def expected(project, ids: list[str]) -> pd.DataFrame:
    cols = ["lead_id", "propensity", "score", *BANDS, "reasons"]
    return project["table"].set_index("lead_id").loc[ids].reset_index()[cols]


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["lead_id"].tolist() == want["lead_id"].tolist()
    assert (got["status"] == "scored").all(), got["status"].tolist()
    np.testing.assert_allclose(got["propensity"].to_numpy(float),
                               want["propensity"].to_numpy(float), rtol=0, atol=1e-12)
    assert got["score"].astype(int).tolist() == want["score"].astype(int).tolist()
    for col in [*BANDS, "reasons", *[c for c in SCORED_COLUMNS if c in want]]:
        assert got[col].tolist() == want[col].tolist(), col


def test_pyfunc_predict_on_raw_leads_equals_the_stage(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project["store"])
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", project["store"])
    model = tracking.mlflow().pyfunc.load_model(project["uri"])
    raw = five_raw_leads(project)
    got = model.predict(raw, params={"as_of": project["as_of"].isoformat()})
    assert list(got.columns) == ["lead_id", "status", "propensity", "score", *BANDS, "reasons",
                                 *SCORED_COLUMNS]     # and the fit / engagement sub-scores
    assert_same(got, expected(project, raw["lead_id"].tolist()))
    # every input row comes out: a lead created after as_of is "not open", not dropped
    later = raw.head(2).assign(lead_id=["NEW-1", "NEW-2"], events="[]",
                               created_at=(project["as_of"] + pd.Timedelta(days=3)).isoformat())
    both = model.predict(pd.concat([raw, later], ignore_index=True),
                         params={"as_of": project["as_of"].isoformat()})
    assert both["status"].tolist()[-2:] == ["not open: not yet created"] * 2
    assert both["propensity"].iloc[-2:].isna().all()
    # the signature is the contract's lead columns (+ events) and the as_of param
    schema = model.metadata.get_input_schema()
    assert {"lead_id", "created_at", "events"} <= set(schema.input_names())
    types = {c.name: c.type.name for c in schema.inputs}
    assert types["created_at"] == "string" and types["company_size"] == "double"
    params = {p.name: p.default for p in model.metadata.get_params_schema().params}
    assert params == {"as_of": "now", "allow_missing": False, "source": "",
                      "contract_version": ""}
    # a request declaring another contract version is refused through the pyfunc too
    with pytest.raises(DataError, match="contract_version '2'"):
        model.predict(raw, params={"as_of": project["as_of"].isoformat(),
                                   "contract_version": "2"})


def test_model_refuses_input_that_breaks_its_contract(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project["store"])
    model = tracking.mlflow().pyfunc.load_model(project["uri"])
    bundle = model.unwrap_python_model().bundle
    contract = bundle.metadata["input_contract"]
    assert contract["source"] == "synthetic" and contract["contract_version"] == "1"
    raw = five_raw_leads(project)
    fit = [c for c in contract["fit_columns"] if c in raw.columns]
    assert {"job_title", "industry"} <= set(fit)
    as_of = project["as_of"].isoformat()
    with pytest.raises(DataError, match="job_title, industry|industry, job_title") as info:
        pyfunc_model.score_raw(bundle, raw.drop(columns=["job_title", "industry"]),
                               {"as_of": as_of})
    assert info.value.column in {"job_title", "industry"}
    # with allow_missing the same leads score (job title and industry then 'unknown')
    loose = pyfunc_model.score_raw(bundle, raw.drop(columns=["job_title", "industry"]),
                                   {"as_of": as_of, "allow_missing": True})
    assert (loose["status"] == "scored").all()
    with pytest.raises(DataError, match="contract_version '2'"):
        pyfunc_model.score_raw(bundle, raw, {"as_of": as_of, "contract_version": "2"})
    with pytest.raises(DataError, match="`events` is not JSON"):
        pyfunc_model.score_raw(bundle, raw.assign(events="[{oops"), {"as_of": as_of})
    # only the code it runs ships with the model (no generator, stages or tracking)
    local = Path(tracking.mlflow().artifacts.download_artifacts(project["uri"]))
    shipped = sorted(p.name for p in (local / "code" / "pipeline").glob("*.py"))
    assert shipped == sorted(pyfunc_model.SERVED_PIPELINE_MODULES)
    assert (local / "code" / "models" / "scoring.py").is_file()
    # the logged input example is screened: no e-mail address in the clear
    example = contract["example"]
    if "email" in example.columns:
        assert example["email"].dropna().str.match(r"^.?\*\*\*@").all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_scores_raw_leads(project, tmp_path):
    port = _free_port()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": project["store"],
           "MLFLOW_REGISTRY_URI": project["store"],
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(bindir / "mlflow"), "models", "serve", "-m", project["uri"], "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "the model server did not start in 180 s"
            time.sleep(1)
        raw = five_raw_leads(project)
        later = raw.head(1).assign(lead_id="NEW-1", events="[]", created_at=(
            project["as_of"] + pd.Timedelta(days=3)).isoformat())
        sent = pd.concat([raw, later], ignore_index=True)
        body = {"dataframe_split": json.loads(sent.to_json(orient="split", index=False)),
                "params": {"as_of": project["as_of"].isoformat()}}
        request = urllib.request.Request(f"{base}/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as r:
            text = r.read().decode()
        answer = json.loads(text)["predictions"]
        assert_same(pd.DataFrame(answer[:5]), expected(project, raw["lead_id"].tolist()))
        # a lead that is not open comes back with its status and nulls (strict JSON)
        assert answer[5]["status"] == "not open: not yet created"
        assert answer[5]["propensity"] is None and answer[5]["score"] is None
        assert "NaN" not in text
        # a broken input is a 4xx/5xx with the contract's message, not a silent score
        bad = {"dataframe_split": json.loads(raw.drop(columns=["job_title"])
                                             .to_json(orient="split", index=False))}
        request = urllib.request.Request(f"{base}/invocations", json.dumps(bad).encode(),
                                         {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=120)
        assert "job_title" in info.value.read().decode()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_as_of_param_defaults_to_now_and_takes_a_date():
    from pipeline.contract import utc_now

    before = utc_now().floor("s")
    now = pyfunc_model.parse_as_of("now")
    assert before <= now <= utc_now() and pyfunc_model.parse_as_of(None) >= before
    assert pyfunc_model.parse_as_of("2025-10-01") == pd.Timestamp("2025-10-01")


def test_events_column_becomes_one_raw_events_table():
    frame = pd.DataFrame({
        "lead_id": ["a", "b", "c"],
        "events": ['[{"timestamp": "2025-09-30 10:00:00", "event_type": "site_visit", '
                   '"page": "/pricing"}, {"timestamp": "2025-09-30 11:00:00", '
                   '"event_type": "demo_request"}]', "[]", None],
    })
    events = pyfunc_model.events_from_column(frame)
    assert events.columns.tolist() == ["lead_id", "timestamp", "event_type", "page"]
    assert events["lead_id"].tolist() == ["a", "a"]
    assert events["event_type"].tolist() == ["site_visit", "demo_request"]
    assert events["page"].tolist()[0] == "/pricing" and events["page"].isna().tolist()[1]
    assert pyfunc_model.events_from_column(frame.drop(columns="events")) is None
    with pytest.raises(DataError, match="row 1 .*must be a JSON list of objects"):
        pyfunc_model.events_from_column(frame.assign(events=["[]", '{"a": 1}', None]))
