"""The analyst notebook `notebooks/learned_vs_manual.ipynb` runs top to bottom on real pipeline
outputs: a tiny generated sample goes through the ingest, features, train and rules stages
in-process (their `run` functions, no MLflow) into a temporary project root, and the notebook
is executed with nbclient against it (`LEADPROP_ROOT`, or the folder above the notebook)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import joblib
import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient

from models.rules import score_rules
from pipeline.io import write_json, write_parquet
from pipeline.rules_config import load_ruleset
from pipeline.rules_report import most_wrong
from pipeline.settings import parse_params
from pipeline.stages import features as features_stage
from pipeline.stages import generate as generate_stage
from pipeline.stages import ingest as ingest_stage
from pipeline.stages import rules as rules_stage
from pipeline.stages import train as train_stage
from pipeline.synth import SynthSettings

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "learned_vs_manual.ipynb"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root holding what `make run` leaves for the notebook, from 2,500 leads."""
    root = tmp_path_factory.mktemp("nb") / "project"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy2(ROOT / "rules.yaml", root / "rules.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["lightgbm"]["n_estimators"] = 150
    raw["rules"] = {**(raw.get("rules") or {}), "n_bootstrap": 20}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    paths = {k: root / getattr(params.paths, k)
             for k in ("raw", "interim", "features", "reports", "models")}

    synth = SynthSettings(n_leads=2_500, seed=7, start=dt.date(2025, 1, 1), months=18)
    generate_stage.run(synth, paths["raw"], workers=1)
    ingest_stage.run(paths["raw"] / "leads.csv", paths["raw"] / "events.csv", paths["interim"],
                     paths["reports"], now=pd.Timestamp(synth.end) + pd.Timedelta(days=1))
    leads, events = features_stage.read_interim(paths["interim"])
    snap, fs = features_stage.feature_settings(params)
    frame, meta, _ = features_stage.run(leads, events, snap, fs)
    write_parquet(paths["features"] / "train.parquet", frame)
    write_json(paths["features"] / "meta.json", meta)

    ruleset = load_ruleset(root / "rules.yaml", leads=leads, events=events, features=frame,
                           event_groups=fs.event_groups)
    points = score_rules(frame[["lead_id", "as_of"]], leads, events, frame, ruleset)["total"]
    trained = train_stage.run(frame, meta, params, points.set_axis(frame.index))
    write_parquet(paths["models"] / "predictions.parquet", trained.predictions)
    joblib.dump(trained.bundle, paths["models"] / "bundle.joblib")

    result = rules_stage.run(frame, trained.predictions, leads, events, ruleset, trained.bundle,
                             rules_stage.learn_settings(params), params.bands, params.calibration,
                             groups=meta["groups"], feature_settings=fs)
    rules_stage.write_outputs(result, paths["reports"])
    return root


def execute(cwd: Path, monkeypatch: pytest.MonkeyPatch, root: Path | None) -> nbformat.NotebookNode:
    if root is None:
        monkeypatch.delenv("LEADPROP_ROOT", raising=False)
    else:
        monkeypatch.setenv("LEADPROP_ROOT", str(root))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and mime == "text/plain":
                out.append(o["text"])
            elif mime in o.get("data", {}):
                out.append(o["data"][mime])
    return out


def test_notebook_runs_on_pipeline_outputs(project: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute(tmp_path, monkeypatch, project)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    text = "\n".join(outputs(nb, "text/plain"))
    assert f"project root: {project.resolve()}" in text
    markdown = "\n".join(outputs(nb, "text/markdown"))
    worst = most_wrong(pd.read_csv(project / "reports" / "rules_comparison.csv"))
    assert (f"Most wrong: `{worst['rule'].iloc[0]}`" if len(worst)
            else "No rule is clearly wrong") in markdown
    comparison = pd.read_csv(project / "reports" / "rules_comparison.csv")
    assert comparison["why"].notna().all() and (comparison["why"].str.len() > 0).all()
    for r in comparison.itertuples(index=False):  # every verdict shown with its why
        assert f"**{r.rule}** ({r.verdict}; manual {r.manual_points:+g}" in markdown
        assert r.why in markdown
    assert len(outputs(nb, "image/png")) >= 4  # points, two band sets, weights
    # the what-if cell rescored the test leads with the overrides
    assert "newsletter signup" in text and "edited" in text and "roc_auc" in text


def test_notebook_defaults_to_the_folder_above_it(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute(project / "notebooks", monkeypatch, None)
    assert f"project root: {project.resolve()}" in "\n".join(outputs(nb, "text/plain"))
