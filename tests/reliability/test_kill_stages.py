"""Kill tests for `features`, `train`, `evaluate` and `register`: the real CLI in a
subprocess on a tiny generated project, killed (SIGKILL, the `LEADPROP_KILL_AT` hook of
`pipeline.io.kill_point`) while it writes its outputs. The next stage must refuse the torn
outputs with a message naming them and the stage to rerun; the rerun must repair them,
leave no temp file, and close the killed MLflow run. No DVC.

One module-level project runs the whole pipeline once; every test works on a copy of it
(the copies share the first project's MLflow artifact folder, which is harmless here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import io, tracking

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow
STAGES = ("generate", "ingest", "features", "train", "evaluate", "register")


def _env(root: Path, kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    for name in (io.KILL_AT_VARIABLE, io.KILL_SIGNAL_VARIABLE, "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    if kill_at:
        env[io.KILL_AT_VARIABLE] = kill_at
    return env


def _cli(root: Path, stage: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", stage, "--params",
                           "params.yaml"], cwd=root, env=_env(root, kill_at),
                          capture_output=True, text=True, timeout=600)


def _ok(root: Path, stage: str) -> None:
    done = _cli(root, stage)
    assert done.returncode == 0, (stage, done.stdout[-2000:], done.stderr[-3000:])


def _edit_params(root: Path, edit) -> None:  # noqa: ANN001 - a callable on the dict
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False),
                                      encoding="utf-8")


def _fewer_trees(params: dict) -> None:
    params["train"]["lightgbm"]["n_estimators"] = 40  # another model than the baseline's


def _temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{io.TEMP_SUFFIX}") if "mlruns" not in p.parts)


def _refused(done: subprocess.CompletedProcess, torn: str, stage: str) -> None:
    """The next stage stopped cleanly, naming the torn file and the stage to rerun."""
    text = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    assert f"{torn} does not match" in text, text[-2000:]
    assert f"Run `leadprop {stage}` again" in text, text[-2000:]
    assert "Traceback" not in done.stderr


def _client(root: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    tracking.configure()
    return tracking.mlflow().MlflowClient()


def _running_training_runs(client) -> list[str]:  # noqa: ANN001
    exp = client.get_experiment_by_name(tracking.TRAINING_EXPERIMENT)
    return [r.info.run_id for r in client.search_runs([exp.experiment_id])
            if r.info.status == "RUNNING"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kill") / "project"
    root.mkdir()
    shutil.copy2(ROOT / "rules.yaml", root / "rules.yaml")
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")

    def tiny(params: dict) -> None:
        params["generate"]["leads"] = 1200
        params["train"]["tune"]["enabled"] = False
        params["train"]["lightgbm"]["n_estimators"] = 60
        params.setdefault("decay", {})["features"] = False
        params["rules"] = {**params.get("rules", {}), "n_bootstrap": 10}

    _edit_params(root, tiny)
    for stage in STAGES:
        _ok(root, stage)
    return root


@pytest.fixture()
def project(baseline: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(baseline, root)
    return root


def test_features_killed_between_renames_is_refused_by_train(project: Path) -> None:
    feat = project / "data" / "features"
    old_meta = (feat / "meta.json").read_bytes()
    old_rows = len(pd.read_parquet(feat / "train.parquet"))
    _edit_params(project, lambda p: p["snapshots"].update(ages_days=[1, 30]))  # fewer rows

    killed = _cli(project, "features", "features.rename")  # train.parquet renamed, not meta
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(pd.read_parquet(feat / "train.parquet")) < old_rows    # new frame...
    assert (feat / "meta.json").read_bytes() == old_meta              # ...old meta
    assert _temps(project), "SIGKILL leaves the unrenamed temp files"
    _refused(_cli(project, "train"), "train.parquet", "features")
    _refused(_cli(project, "evaluate"), "train.parquet", "features")

    _ok(project, "features")
    assert _temps(project) == []
    io.check_manifest(feat)  # every file of the unit matches
    meta = json.loads((feat / "meta.json").read_text())
    assert meta["n_rows"] == len(pd.read_parquet(feat / "train.parquet")) < old_rows


def test_train_killed_between_renames_is_refused_and_its_run_closed(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = project / "data" / "models"
    old = {n: (models / n).read_bytes() for n in ("bundle.joblib", "summary.json", "run.json")}
    _edit_params(project, _fewer_trees)

    killed = _cli(project, "train", "train.rename")  # bundle.joblib renamed, the rest not
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (models / "bundle.joblib").read_bytes() != old["bundle.joblib"]
    assert (models / "summary.json").read_bytes() == old["summary.json"]
    assert (models / "run.json").read_bytes() == old["run.json"]
    client = _client(project, monkeypatch)
    (killed_run,) = _running_training_runs(client)  # what SIGKILL leaves
    _refused(_cli(project, "evaluate"), "bundle.joblib", "train")
    _refused(_cli(project, "register"), "bundle.joblib", "train")

    _ok(project, "train")
    assert _temps(project) == []
    io.check_manifest(models)
    assert client.get_run(killed_run).info.status == "FAILED"
    new_run = json.loads((models / "run.json").read_text())["run_id"]
    assert new_run != killed_run
    assert client.get_run(new_run).info.status == "FINISHED"
    assert _running_training_runs(client) == []


def test_train_killed_inside_its_run_keeps_the_old_model(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = project / "data" / "models"
    old = {p.name: p.read_bytes() for p in models.iterdir()}
    _edit_params(project, _fewer_trees)
    killed = _cli(project, "train", "train.run")  # metrics logged, no file written yet
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in models.iterdir()} == old
    client = _client(project, monkeypatch)
    (killed_run,) = _running_training_runs(client)
    _ok(project, "evaluate")  # the old model folder is whole: evaluate runs on it
    _ok(project, "train")
    assert client.get_run(killed_run).info.status == "FAILED"


def test_evaluate_killed_between_renames_is_refused_by_register(project: Path) -> None:
    reports = project / "reports"
    _edit_params(project, _fewer_trees)
    _ok(project, "train")  # a new model, so evaluate writes other reports
    old_headline = (reports / "headline.json").read_bytes()
    old_metrics = (reports / "metrics.json").read_bytes()
    old_registry = (reports / "registry.json").read_bytes()

    killed = _cli(project, "evaluate", "evaluate.rename")  # metrics.json renamed, the rest not
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (reports / "metrics.json").read_bytes() != old_metrics
    assert (reports / "headline.json").read_bytes() == old_headline
    _refused(_cli(project, "register"), "metrics.json", "evaluate")
    assert (reports / "registry.json").read_bytes() == old_registry  # nothing registered

    _ok(project, "evaluate")
    assert _temps(project) == []
    io.check_manifest(reports, manifest="evaluate_manifest.json")
    _ok(project, "register")


def test_register_killed_before_its_gate_is_finished_next_run(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports = project / "reports"
    old_registry = json.loads((reports / "registry.json").read_text())
    name = old_registry["model_name"]
    _edit_params(project, _fewer_trees)
    _ok(project, "train")
    run_id = json.loads((project / "data" / "models" / "run.json").read_text())["run_id"]

    killed = _cli(project, "register", "register.tagged")  # registered, no alias or gate yet
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((reports / "registry.json").read_text()) == old_registry
    client = _client(project, monkeypatch)
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    assert len(versions) == 2
    new = max(versions, key=int)
    assert "leadprop.gate" not in versions[new].tags
    assert client.get_run(run_id).info.status == "RUNNING"  # what SIGKILL leaves

    _ok(project, "register")
    record = json.loads((reports / "registry.json").read_text())
    assert (record["version"], record["registered"]) == (new, True)
    assert record["decision"] in ("promoted", "challenger")  # decided, not "identical"
    assert len(client.search_model_versions(f"name='{name}'")) == 2  # not registered twice
    assert str(client.get_model_version_by_alias(name, "challenger").version) == new
    assert client.get_model_version(name, new).tags["leadprop.gate"] == record["decision"]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert _temps(project) == []
