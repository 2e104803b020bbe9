"""benchmarks/peers/harness.py, the project side of `make bench-peers`, without AutoGluon: the
split files the peer reads, the scoring of a (fake) peer's predictions file, the targets and
the report, on hand-built frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.peers.harness import (
    check_targets,
    collect,
    fit_default_lightgbm,
    render_markdown,
    score_export,
    split_frames,
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6"],
        "visits": [1, 2, 3, 4, 5, 6],
        "industry": pd.Categorical(["it", None, "retail", "it", "retail", None]),
        "label": [0, 1, 0, 1, 0, 1],
    }, index=[10, 11, 12, 13, 14, 15])


def test_split_frames_writes_each_part_with_row_positions_and_plain_values() -> None:
    frame = _frame()
    parts = pd.Series(["train", "train", "calibration", "test", "test", "train"],
                      index=frame.index)
    out = split_frames(frame, ["visits", "industry"], parts)
    assert list(out["train"]["row"]) == [0, 1, 5]
    assert list(out["calibration"]["row"]) == [2]
    assert list(out["test"]["row"]) == [3, 4]
    assert out["train"]["visits"].dtype == "float64"
    assert list(out["train"]["visits"]) == [1.0, 2.0, 6.0]
    assert out["train"]["industry"].iloc[0] == "it"
    assert out["train"]["industry"].iloc[1:].isna().all()
    assert out["train"]["industry"].dtype == object
    assert list(out["test"]["label"]) == [1, 0]
    assert list(out["train"].columns) == ["visits", "industry", "label", "row"]
    assert list(frame.columns) == ["lead_id", "visits", "industry", "label"]  # not mutated


def _project() -> pd.DataFrame:
    return pd.DataFrame({"row": [3, 4, 7, 9], "label": [0, 1, 0, 1],
                         "p_served": [0.1, 0.9, 0.2, 0.8], "p_logreg": [0.3, 0.7, 0.4, 0.6],
                         "p_lightgbm_default": [0.5, 0.5, 0.5, 0.5]})


def _logloss(y: list[int], p: list[float]) -> float:
    yy, pp = np.array(y), np.array(p)
    return float(-np.mean(yy * np.log(pp) + (1 - yy) * np.log(1 - pp)))


def test_score_export_joins_the_peer_by_row_and_scores_every_scorer() -> None:
    # the peer's file in another order: row 3 -> 0.6, 4 -> 0.4, 7 -> 0.2, 9 -> 0.8
    peer = pd.DataFrame({"row": [9, 7, 4, 3], "p": [0.8, 0.2, 0.4, 0.6]})
    metrics = score_export(_project(), peer)
    assert metrics["p_served"]["roc_auc"] == 1.0
    assert metrics["p_lightgbm_default"]["roc_auc"] == 0.5
    # positives 0.4, 0.8 against negatives 0.6, 0.2: 3 of 4 pairs ordered
    assert metrics["p_peer"]["roc_auc"] == 0.75
    assert metrics["p_peer"]["log_loss"] == round(_logloss([0, 1, 0, 1], [0.6, 0.4, 0.2, 0.8]), 4)
    assert metrics["p_served"]["log_loss"] == round(_logloss([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]),
                                                    4)


@pytest.mark.parametrize("peer, message", [
    (pd.DataFrame({"row": [3, 4, 7], "p": [0.1, 0.2, 0.3]}), "cover 3 rows"),
    (pd.DataFrame({"row": [3, 4, 7, 7], "p": [0.1, 0.2, 0.3, 0.3]}), "repeat 1 rows"),
    (pd.DataFrame({"row": [3, 4, 7, 9], "p": [0.1, 0.2, 1.3, 0.3]}), "probabilities"),
])
def test_score_export_rejects_a_peer_file_that_does_not_match_the_test_split(
        peer: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_export(_project(), peer)


def test_check_targets_compares_with_the_tolerances() -> None:
    metrics = {"p_served": {"roc_auc": 0.796, "log_loss": 0.230},
               "p_peer": {"roc_auc": 0.800, "log_loss": 0.224}}
    t = check_targets(metrics, served_seconds=50.0, peer_seconds=240.0)
    assert t["roc_auc"] == {"served": 0.796, "bound": 0.795, "met": True}
    assert t["log_loss"] == {"served": 0.230, "bound": 0.229, "met": False}
    assert t["training_time"] == {"served": 50.0, "bound": 240.0, "met": True}


def test_default_lightgbm_learns_a_separable_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    rows = pd.DataFrame({"x": x, "c": np.where(x > 0, "a", "b"),
                         "label": (x + 0.3 * rng.normal(size=400) > 0).astype(int)})
    p, seconds = fit_default_lightgbm(rows.iloc[:300], rows.iloc[300:], ["x", "c"], seed=0)
    y = rows["label"].to_numpy()[300:]
    assert p.shape == (100,) and seconds >= 0
    assert p[y == 1].mean() > 0.7 > 0.3 > p[y == 0].mean()


def test_collect_and_render_from_the_files_both_sides_write(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    _project().to_parquet(folder / "project_predictions.parquet", index=False)
    pd.DataFrame({"row": [3, 4, 7, 9], "p": [0.6, 0.4, 0.2, 0.8]}).to_parquet(
        folder / "peer_predictions.parquet", index=False)
    (folder / "project.json").write_text(json.dumps({
        "split": {"method": "time", "rows": {"train": 10, "calibration": 3, "test": 4}},
        "served": "lightgbm", "tuning": {"trials": 2},
        "seconds": {"p_served": 12.0, "p_lightgbm_default": 0.5}}))
    (folder / "peer.json").write_text(json.dumps({
        "peer": "autogluon.tabular", "version": "1.6.3", "presets": "medium_quality",
        "time_limit": 240, "eval_metric": "log_loss", "fit_seconds": 30.0,
        "best_model": "WeightedEnsemble_L2"}))
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "skipped.json").write_text(json.dumps({"skipped": "x.csv not found"}))
    out = collect(tmp_path, exports=("tiny", "gone", "never"))
    tiny = out["exports"]["tiny"]
    assert tiny["test_rows"] == 4
    assert tiny["metrics"]["p_peer"]["roc_auc"] == 0.75
    assert tiny["seconds"] == {"p_served": 12.0, "p_lightgbm_default": 0.5, "p_peer": 30.0}
    assert tiny["targets"]["roc_auc"]["met"] and tiny["targets"]["training_time"]["met"]
    assert out["exports"]["gone"] == {"skipped": "x.csv not found"}
    assert "not run yet" in out["exports"]["never"]["skipped"]
    text = render_markdown({"date": "2026-12-03", "machine": {"cpu_model": "CPU X", "cpus": 2,
                                                             "memory_gb": 23.5},
                            **out})
    assert "| tiny | 4 | AutoML peer | 0.7500 |" in text
    assert "| gone | — | skipped: x.csv not found |" in text
    assert "CPU X, 2 cores, 23.5 GB RAM" in text
    assert "paired" not in text  # no lead ids written: no paired interval


def test_the_report_gives_served_minus_peer_with_a_paired_lead_interval(tmp_path: Path) -> None:
    """With the training stage's predictions in the export's folder, each test row's lead
    is known and the report adds served - peer with its paired lead-bootstrap interval."""
    rng = np.random.default_rng(0)
    n = 600
    folder = tmp_path / "tiny"
    (folder / "data" / "models").mkdir(parents=True)
    z = rng.normal(size=n)
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    test = np.arange(0, n, 2)  # every other snapshot is a test row
    pd.DataFrame({"lead_id": [f"L{i // 2}" for i in range(n)]}).to_parquet(
        folder / "data" / "models" / "predictions.parquet")
    pd.DataFrame({"row": test, "label": label[test], "p_served": 1 / (1 + np.exp(-z[test])),
                  "p_logreg": 0.5, "p_lightgbm_default": 0.5}).to_parquet(
        folder / "project_predictions.parquet", index=False)
    noisy = 1 / (1 + np.exp(-(z[test] + rng.normal(size=test.size))))
    pd.DataFrame({"row": test, "p": noisy}).to_parquet(folder / "peer_predictions.parquet",
                                                       index=False)
    (folder / "project.json").write_text(json.dumps({
        "split": {"method": "time", "rows": {"train": 1, "calibration": 1, "test": test.size}},
        "served": "lightgbm", "tuning": {}, "seconds": {"p_served": 1.0}}))
    (folder / "peer.json").write_text(json.dumps({
        "peer": "p", "version": "1", "presets": "q", "time_limit": 1, "eval_metric": "e",
        "fit_seconds": 2.0}))
    out = collect(tmp_path, exports=("tiny",))
    d = out["exports"]["tiny"]["served_minus_peer"]["roc_auc"]
    m = out["exports"]["tiny"]["metrics"]
    assert d["difference"] == pytest.approx(m["p_served"]["roc_auc"] - m["p_peer"]["roc_auc"],
                                            abs=2e-4)
    assert 0 < d["ci_low"] < d["difference"] < d["ci_high"]  # the peer's noise costs it AUC
    text = render_markdown({"date": "d", "machine": {}, **out})
    assert f"| tiny | {d['difference']:+.4f} ({d['ci_low']:+.4f} to {d['ci_high']:+.4f}) |" in text


def test_an_export_whose_data_is_missing_is_skipped_with_the_file_named(tmp_path: Path) -> None:
    from benchmarks.peers.harness import _missing_data

    config = (Path(__file__).resolve().parents[3] / "sources" / "directmail.yaml").read_text()
    missing = tmp_path / "nowhere" / "DirectMail.csv"
    source = tmp_path / "directmail.yaml"
    source.write_text(config.replace("../shared/data/directmail/DirectMail.csv", str(missing)))
    assert _missing_data(str(source)) == (
        f"{missing} not found (the data lives in ../shared/data beside the repo)")
    missing.parent.mkdir()
    missing.write_text("AGE,resp\n1,0\n")
    assert _missing_data(str(source)) is None
    assert _missing_data("synthetic") is None
