"""End to end: the real DVC pipeline (`dvc repro`) on a tiny generated sample, in a
temporary copy of the project, with its own MLflow store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COPY = ("pipeline", "features", "models", "sources", "dvc.yaml", "params.yaml", "rules.yaml")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("e2e") / "project"
    work.mkdir()
    for name in COPY:
        src = ROOT / name
        if not src.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"]["leads"] = 3000
    params["train"]["lightgbm"]["n_estimators"] = 300
    params["rules"] = {**params.get("rules", {}), "n_bootstrap": 20}
    # learned decay as features: `auto` by default (kept only when validation says so, which a
    # sample this small may not); forced on here, so every stage after `train` (evaluate,
    # register, rules, score) runs with the bundle's `<group>_decayed_hl` columns
    params["decay"] = {"features": True, "n_boot": 10}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    init = _run([f"{bindir}/dvc", "init", "--no-scm", "-q"], work, env)
    assert init.returncode == 0, init.stderr
    _run([f"{bindir}/dvc", "config", "core.analytics", "false"], work, env)
    repro = _run([f"{bindir}/dvc", "repro"], work, env)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    return work, env


def test_repro_writes_metrics_with_the_stable_keys(project: tuple[Path, dict]) -> None:
    work, env = project
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    for scorer in ("lightgbm", "lightgbm_basic", "logreg", "rules", "truth"):
        for key in (
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "ece",
            "lift_at_10",
            "capture_at_10",
            "lift_at_20",
            "capture_at_20",
        ):
            assert key in metrics["test"][scorer], (scorer, key)
    assert 0.5 < metrics["test"]["lightgbm"]["roc_auc"] <= 1.0
    assert (work / "dvc.lock").exists()
    shown = _run([str(Path(sys.executable).parent / "dvc"), "metrics", "show", "--json"], work, env)
    assert shown.returncode == 0, shown.stderr
    assert "roc_auc" in shown.stdout


def test_dvc_metrics_show_reads_the_compact_headlines(project: tuple[Path, dict]) -> None:
    work, env = project
    shown = _run([str(Path(sys.executable).parent / "dvc"), "metrics", "show", "--json"], work, env)
    files = {f for rev in json.loads(shown.stdout).values() for f in rev["data"]}
    assert files == {"reports/headline.json", "reports/rules_headline.json"}
    headline = json.loads((work / "reports" / "headline.json").read_text())["test"]
    metrics = json.loads((work / "reports" / "metrics.json").read_text())["test"]
    assert headline["roc_auc"] == round(metrics["served"]["roc_auc"], 4)
    assert headline["auc_share_of_truth"] == round(
        metrics["served"]["roc_auc"] / metrics["truth"]["roc_auc"], 4)
    rules = json.loads((work / "reports" / "rules_headline.json").read_text())["rules"]
    assert set(rules) == {"manual_auc", "learned_auc"}
    # compact: one readable line per file (it was ~450 characters with every metric)
    table = _run([str(Path(sys.executable).parent / "dvc"), "metrics", "show"], work, env)
    assert max(len(line) for line in table.stdout.splitlines()) <= 200, table.stdout


def test_dvc_plots_draw_one_line_per_scorer_offline(project: tuple[Path, dict]) -> None:
    work, env = project
    shutil.copytree(ROOT / ".dvc" / "plots", work / ".dvc" / "plots", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("offline.html"))
    roc = pd.read_csv(work / "reports" / "plots" / "roc.csv")
    assert roc.groupby("scorer").size().max() <= 201  # thinned: small enough for git
    assert {"served", "logreg", "truth"} <= set(roc["scorer"])
    shown = _run([str(Path(sys.executable).parent / "dvc"), "plots", "show", "--json"], work, env)
    assert shown.returncode == 0, shown.stderr
    specs = {name: items[0]["content"] for name, items in json.loads(shown.stdout)["data"].items()}
    assert specs["reports/plots/roc.csv"]["encoding"]["color"]["field"] == "scorer"
    bands = specs["reports/plots/bands.csv"]["layer"][0]["encoding"]
    assert (bands["x"]["field"], bands["y"]["field"]) == ("rate", "label")
    from pipeline.plots_page import write_page

    page = write_page(work)
    _run([str(Path(sys.executable).parent / "dvc"), "config", "plots.html_template",
          "plots/offline.html"], work, env)
    html = _run([str(Path(sys.executable).parent / "dvc"), "plots", "show", "-o", "out"], work, env)
    assert html.returncode == 0, html.stderr
    text = (work / "out" / "index.html").read_text(encoding="utf-8")
    assert page.exists() and "window.vegaEmbed" in text and "cdn.jsdelivr" not in text


def test_learned_decay_features_reach_every_stage(project: tuple[Path, dict]) -> None:
    work, _ = project
    summary = json.loads((work / "data" / "models" / "summary.json").read_text())
    params = yaml.safe_load((work / "params.yaml").read_text())
    groups = set(params["features"]["event_groups"])
    assert {g["group"] for g in summary["decay"]["groups"]} == groups  # one fit per group
    chosen = summary["decay"]["chosen"]
    assert chosen, "no group's learned half-life won on the calibration split"
    bundle = joblib.load(work / "data" / "models" / "bundle.joblib")
    assert bundle.metadata["decayed_half_lives"] == chosen
    assert {f"{g}_decayed_hl" for g in chosen} <= set(bundle.features)
    scored = pd.read_parquet(work / "data" / "scored" / "scored_leads.parquet")
    assert len(scored) > 0  # `score` rebuilt the same columns (it refuses missing ones)


def test_second_repro_has_nothing_to_do(project: tuple[Path, dict]) -> None:
    work, env = project
    again = _run([str(Path(sys.executable).parent / "dvc"), "repro"], work, env)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout.lower()
    assert "Running stage" not in again.stdout


def test_scored_table_covers_every_open_lead(project: tuple[Path, dict]) -> None:
    work, _ = project
    scored = pd.read_parquet(work / "data" / "scored" / "scored_leads.parquet")
    leads = pd.read_parquet(work / "data" / "interim" / "leads.parquet")
    for col in (
        "lead_id",
        "as_of",
        "propensity",
        "score",
        "temperature",
        "lifecycle_stage",
        "reasons",
        "model_version",
        "scored_at",
    ):
        assert col in scored.columns
    assert scored["lead_id"].is_unique
    assert set(scored["lead_id"]) <= set(leads["lead_id"])
    assert scored["score"].between(1, 99).all()
    assert scored["propensity"].is_monotonic_decreasing
    assert (scored["reasons"].str.len() > 0).mean() > 0.9
    # every raw row of the export is accounted for, from leads.csv to the scored table
    raw_rows = len(pd.read_csv(work / "data" / "raw" / "leads.csv"))
    accounting = json.loads((work / "reports" / "accounting.json").read_text())
    assert accounting["raw_rows"] == raw_rows
    assert accounting["scored"] == len(scored)
    assert raw_rows == (accounting["duplicates_dropped"] + accounting["rejected_at_ingest"]
                        + accounting["scored"] + accounting["not_open"]
                        + accounting["rejected_at_scoring"])


def test_mlflow_has_the_training_run_and_the_champion(project: tuple[Path, dict]) -> None:
    work, env = project
    code = (
        "import mlflow, json;"
        "c = mlflow.MlflowClient();"
        "v = c.get_model_version_by_alias('lead-propensity', 'champion');"
        "r = c.get_run(v.run_id);"
        "print(json.dumps({'version': v.version, 'metrics': sorted(r.data.metrics),"
        " 'params': len(r.data.params), 'tags': r.data.tags}))"
    )
    out = _run([sys.executable, "-c", code], work, env)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert "test.lightgbm.roc_auc" in info["metrics"]
    assert info["params"] > 30
    assert info["tags"]["data_hash"]
    assert "git_commit" in info["tags"]


def test_report_and_bands_exist(project: tuple[Path, dict]) -> None:
    work, _ = project
    html = (work / "reports" / "model_report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    bands = json.loads((work / "reports" / "bands.json").read_text())
    assert set(bands["band_sets"]) == {"temperature", "lifecycle"}
    for band_set in bands["band_sets"].values():
        cutoffs = [b["min_propensity"] for b in band_set["bands"]]
        assert cutoffs == sorted(cutoffs) and cutoffs[0] == 0.0


def test_truth_gap_study_lines_up_the_hidden_state(project: tuple[Path, dict]) -> None:
    """studies.auc_ceiling on the pipeline's own outputs: every positive example was in a
    live phase at its as_of, and the truth and the served model are scored on the same
    test snapshots."""
    from pipeline.settings import load_params
    from pipeline.stages.generate import settings_from_params
    from pipeline.synth import N_TRANSIENT, PHASES
    from studies.auc_ceiling import by_phase, hidden_state, measure

    work, _ = project
    params = load_params(work / "params.yaml")
    pred = pd.read_parquet(work / "data" / "models" / "predictions.parquet")
    hidden = hidden_state(pred, settings_from_params(params))
    live = set(PHASES[:N_TRANSIENT])
    assert hidden.loc[pred["label"] == 1, "hidden_phase"].isin(live).all()
    assert hidden["hidden_phase"].notna().all()
    truth = pd.read_csv(work / "data" / "raw" / "truth.csv")
    parts = measure(pred, truth)
    assert parts["test"]["snapshots"] == int((pred["split"] == "test").sum())
    # the ratio is rounded (4 places) from the unrounded AUCs; each AUC is off by <= 5e-5
    # after its own rounding, which moves their ratio by <= 5e-5 * (1 + ratio) / truth
    served, truth_auc = parts["test"]["served_roc_auc"], parts["test"]["truth_roc_auc"]
    bound = 5e-5 * (1 + served / truth_auc) / (truth_auc - 5e-5) + 5e-5
    assert abs(parts["test"]["auc_ratio"] - served / truth_auc) <= bound + 1e-12
    table = by_phase(pred, truth, hidden)
    assert table["snapshots"].sum() == parts["test"]["snapshots"]


def test_truth_gap_study_fits_its_learning_curve_on_the_run(
        project: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m studies.auc_ceiling --learning-curve` on the pipeline's own outputs (with
    the learned-decay columns the bundle holds): a row per fraction and inputs, every fit
    on training leads, scored on the test snapshots the truth covers."""
    from studies.auc_ceiling import FRACTIONS, main

    work, _ = project
    monkeypatch.chdir(work)
    assert main(["--out", "reports/truth_gap_curve.json", "--learning-curve",
                 "--repeats", "1"]) == 0
    out = json.loads((work / "reports" / "truth_gap_curve.json").read_text())
    pred = pd.read_parquet(work / "data" / "models" / "predictions.parquet")
    train_leads = pred.loc[pred["split"] == "train", "lead_id"].nunique()
    rows = out["learning_curve"]["rows"]
    assert [r["fraction"] for r in rows] == list(FRACTIONS)
    assert rows[-1]["leads"] == train_leads
    assert rows[-1]["snapshots"] == int((pred["split"] == "train").sum())
    assert [r["inputs"] for r in out["hidden_state_gain"]][0] == "observable features"
    for r in [*rows, *out["hidden_state_gain"]]:
        assert 0.5 < r["test_roc_auc"] < 1 and 0 < r["auc_share_of_truth"] < 1.2
