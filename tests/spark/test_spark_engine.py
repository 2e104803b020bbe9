"""The Spark engine (`pipeline.spark`) equals the embedded engine on the same inputs: the
training frame (exactly for counts and flags, to 1e-9 for floats), the scored table, the
not-open leads and drift counts, and the CLI's files - on a generated sample split into
several lead-hash buckets, with leads that have no events."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.audit import activity_after_outcome
from features.build import build_features, feature_columns, feature_groups
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models.drift import drift_reference, top_features
from models.scoring import score_open_leads
from models.training import train_all
from pipeline import pyfunc_model
from pipeline.contract import CONTRACT_VERSION
from pipeline.settings import parse_params
from pipeline.spark.buckets import read_events, restore_dtypes, run_buckets
from pipeline.spark.features import SparkMoments, build_features_spark
from pipeline.spark.score import score_spark
from pipeline.stages import generate, ingest
from pipeline.streaming import bucket_of
from pipeline.synth import SynthSettings
from tests.helpers import register_champion, tiny_training

BUCKETS = 5
RAW_PARAMS = {
    "snapshots": {"ages_days": [1, 7, 30]},
    "label": {"horizon_days": 30},
    **tiny_training(),
    "score": {"model": "models:/lead-propensity@champion", "formats": ["parquet"],
              "holdout_share": 0.1},
    "spark": {"master": "local[2]", "partitions": BUCKETS, "arrow_batch_rows": 500},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A generated sample through `ingest` (interim Parquet), the events of 30 leads
    removed, and a small model registered as champion in a temporary MLflow store."""
    root = tmp_path_factory.mktemp("spark")
    generate.run(SynthSettings(n_leads=400, months=8, seed=5), root / "raw")
    interim = root / "data" / "interim"
    ingest.run(root / "raw" / "leads.csv", root / "raw" / "events.csv", interim,
               root / "reports")
    leads = pd.read_parquet(interim / "leads.parquet")
    events = pd.read_parquet(interim / "events.parquet")
    quiet = set(leads["lead_id"].iloc[::13])  # leads with no events at all
    events = events.loc[~events["lead_id"].isin(quiet)].reset_index(drop=True)
    events.to_parquet(interim / "events.parquet")
    (interim / "manifest.json").unlink(missing_ok=True)  # the rewritten pair is unrecorded
    params = parse_params({**RAW_PARAMS, "paths": {
        "interim": str(interim), "features": str(root / "data" / "features"),
        "scored": str(root / "data" / "scored"), "reports": str(root / "reports")}})
    fs = FeatureSettings.from_params(params.features)
    snap = SnapshotSettings.from_params(params.snapshots, params.label)
    spine = training_spine(leads, snap, data_end(leads, events))
    frame = build_features(spine, leads, events, fs)
    cols = feature_columns(frame)
    result = train_all(frame, cols, params.split, params.train, params.calibration,
                       params.bands, horizon_days=30, groups=feature_groups(cols, fs))
    bundle = result.bundle
    train_rows = frame.loc[(result.predictions["split"] == "train").to_numpy()]
    top = top_features(bundle.features, bundle.model.booster_.feature_importance("gain"), 10)
    bundle.metadata["reference"] = drift_reference(
        bundle.matrix(train_rows), bundle.propensity(train_rows), top)
    bundle.metadata["input_contract"] = pyfunc_model.input_contract(
        leads, events, source="synthetic", source_hash="none", features={}, ingest={},
        contract_version=CONTRACT_VERSION)
    return {"root": root, "interim": interim, "params": params, "leads": leads,
            "events": events, "quiet": quiet, "fs": fs, "spine": spine, "frame": frame,
            "bundle": bundle, "events_path": interim / "events.parquet"}


def test_features_equal_the_embedded_frame(spark, world):
    spine, leads, events = world["spine"], world["leads"], world["events"]
    assert spine["lead_id"].isin(world["quiet"]).any()  # some snapshots have no events
    assert len(np.unique(bucket_of(spine["lead_id"], BUCKETS))) == BUCKETS
    frame, activity = build_features_spark(spark, spine, leads, world["events_path"],
                                           world["fs"], BUCKETS)
    pd.testing.assert_frame_equal(frame, world["frame"], check_exact=False, rtol=0, atol=1e-9)
    counts = [c for c in frame.columns if c.startswith(("evt_", "events_", "grp_"))]
    assert counts and frame[counts].equals(world["frame"][counts])  # exactly
    assert activity == activity_after_outcome(leads, events)
    moments = SparkMoments(spark, world["events_path"])
    assert data_end(leads, event_moments=moments) == data_end(leads, events)
    us = np.sort(events["timestamp"].dropna().to_numpy(dtype="datetime64[us]").view(np.int64))
    assert (moments.n, moments.lo, moments.hi) == (len(us), us[0], us[-1])
    assert 1 <= moments.distinct_lb <= len(np.unique(us))
    np.testing.assert_array_equal(moments.top(25), us[-25:])
    np.testing.assert_array_equal(moments.distinct(), np.unique(us))


def test_scores_equal_the_embedded_core(spark, world):
    leads, bundle, fs = world["leads"], world["bundle"], world["fs"]
    as_of = data_end(leads, world["events"])
    ref = bundle.metadata["reference"]
    whole = score_open_leads(leads, world["events"], bundle, fs, as_of, reference=ref)
    out = score_spark(spark, leads, world["events_path"], bundle, fs, as_of,
                      n_buckets=BUCKETS, reference=ref, chunk_size=37)
    assert len(whole.table) > 50 and len(whole.not_open) > 50
    pd.testing.assert_frame_equal(out.table, whole.table, check_exact=False, rtol=0,
                                  atol=1e-9)
    assert out.table["score"].equals(whole.table["score"])
    pd.testing.assert_frame_equal(out.not_open, whole.not_open)
    assert len(out.table) + len(out.not_open) == len(leads)  # every lead exactly once
    assert set(out.drift_counts) == set(whole.drift_counts)
    for name, c in whole.drift_counts.items():
        np.testing.assert_array_equal(out.drift_counts[name], c)


def test_one_leads_events_are_never_split_over_two_groups(spark, world):
    def seen(part: pd.DataFrame, events: pd.DataFrame, _: object) -> pd.DataFrame:
        return events.groupby("lead_id").size().rename("n").reset_index().assign(
            leads=len(part), known=events["lead_id"].isin(set(part["lead_id"])).all())

    parts = list(run_buckets(spark, world["leads"], world["events_path"], BUCKETS, seen))
    assert len(parts) == BUCKETS and all(p["known"].all() for p in parts)
    got = pd.concat(parts, ignore_index=True)
    assert got["lead_id"].is_unique  # a lead split over two groups would appear twice
    expected = world["events"].groupby("lead_id").size()
    assert got.set_index("lead_id")["n"].sort_index().equals(expected.sort_index().rename("n"))
    assert sum(int(p["leads"].iloc[0]) for p in parts if len(p)) <= len(world["leads"])


def test_arrow_boundary_restores_our_dtypes(spark, tmp_path):
    frame = pd.DataFrame({
        "lead_id": pd.array(["a", None, "c"], dtype="str"),
        "naive": pd.to_datetime(["2025-01-01 10:00:00.123456", None,
                                 "2025-03-01 00:00:00.000001"]).astype("datetime64[us]"),
        "aware": pd.to_datetime(["2025-01-01 10:00:00", "2025-06-01 23:59:59", None],
                                utc=True).tz_convert("Europe/Berlin"),
        "count": pd.array([1, None, 3], dtype="Int64"),
        "kind": pd.Categorical(["x", "y", None]),
        "value": [0.1, np.nan, 1e-12],
    })
    frame.to_parquet(tmp_path / "t.parquet")
    sdf, template = read_events(spark, tmp_path / "t.parquet")
    back = restore_dtypes(sdf.toPandas(), template)
    pd.testing.assert_frame_equal(back, pd.read_parquet(tmp_path / "t.parquet"))


def _write_params(path: Path, world: dict, **paths: str) -> Path:
    raw = {**RAW_PARAMS, "paths": {"interim": str(world["interim"]), **paths}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cli_engine_spark_writes_the_embedded_files(spark, world, tmp_path, monkeypatch):
    from pipeline.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = {}
    for engine in ("embedded", "spark"):
        p = _write_params(tmp_path / f"{engine}.yaml", world,
                          features=str(tmp_path / engine / "features"),
                          reports=str(tmp_path / engine / "reports"),
                          scored=str(tmp_path / engine / "scored"))
        res = runner.invoke(app, ["features", "--params", str(p), "--engine", engine])
        assert res.exit_code == 0, res.output
        out[engine] = p
    for name in ("features/train.parquet",):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "spark" / name),
                                      pd.read_parquet(tmp_path / "embedded" / name),
                                      check_exact=False, rtol=0, atol=1e-9)
    for name in ("features/meta.json", "reports/leakage_audit.json"):
        assert json.loads((tmp_path / "spark" / name).read_text()) == \
            json.loads((tmp_path / "embedded" / name).read_text())

    # score: the same registered model, the same batch, both engines
    joblib.dump(world["bundle"], tmp_path / "bundle.joblib")
    register_champion(tmp_path / "bundle.joblib")
    tables = {}
    for engine, p in out.items():
        res = runner.invoke(app, ["score", "--params", str(p), "--engine", engine,
                                  "--scored-at", "2026-01-02 08:00:00",
                                  "--out", str(tmp_path / engine / "batch")])
        assert res.exit_code == 0, res.output
        tables[engine] = pd.read_parquet(tmp_path / engine / "batch.parquet")
    assert len(tables["spark"]) > 50 and tables["spark"]["holdout"].any()
    pd.testing.assert_frame_equal(tables["spark"], tables["embedded"], check_exact=False,
                                  rtol=0, atol=1e-9)


def test_the_spark_submit_entry_runs_the_cli_in_the_session_it_finds(spark, world, tmp_path):
    """`spark-submit pipeline/spark/job.py features ...` (README, "On a cluster"): the CLI
    in the session spark-submit made, with the CLI's exit status."""
    from pipeline.spark import job

    p = _write_params(tmp_path / "p.yaml", world, features=str(tmp_path / "features"),
                      reports=str(tmp_path / "reports"), scored=str(tmp_path / "scored"))
    assert job.main(["features", "--params", str(p), "--engine", "spark"]) == 0
    assert spark.getActiveSession() is not None  # the session is still the caller's
    built = pd.read_parquet(tmp_path / "features" / "train.parquet")
    assert len(built) == len(world["frame"])
    assert job.main(["features", "--params", str(tmp_path / "missing.yaml")]) == 2


def test_spark_score_refuses_a_raw_events_export(spark, world, tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.spark.score import score_stage_spark
    from pipeline.streaming import EventsToStream

    class Inputs:
        leads = world["leads"]

    stream = EventsToStream(tmp_path / "events.csv", True, pd.Timestamp("2026-01-01"))
    with pytest.raises(ConfigError, match="leadprop ingest"):
        score_stage_spark(world["params"], Inputs(), stream, world["bundle"], world["fs"],
                          pd.Timestamp("2025-06-01"))


def test_buckets_travel_as_files_of_the_exchange_folder_which_is_removed(spark, world,
                                                                         tmp_path):
    from pipeline.spark.buckets import EXCHANGE_CONF

    seen: list[str] = []

    def where(part: pd.DataFrame, events: pd.DataFrame, _: object) -> int:
        return len(part)

    spark.conf.set(EXCHANGE_CONF, str(tmp_path / "shared"))
    try:
        parts = run_buckets(spark, world["leads"], world["events_path"], BUCKETS, where)
        first = next(parts)  # all buckets ran; their files are in one folder under shared/
        seen = [str(p) for p in (tmp_path / "shared").rglob("*.pkl")]
        rest = list(parts)
    finally:
        spark.conf.unset(EXCHANGE_CONF)
    assert sum([first, *rest]) == len(world["leads"])
    assert len([s for s in seen if "/leads-" in s]) == BUCKETS
    assert len([s for s in seen if "/result-" in s]) == BUCKETS
    assert list((tmp_path / "shared").iterdir()) == []  # the job's folder is gone


def test_a_cluster_without_an_exchange_folder_is_a_config_error():
    from pipeline.errors import ConfigError
    from pipeline.spark.buckets import Exchange

    class Conf:
        def get(self, key: str, default: object = None) -> object:
            return default

    class Cluster:
        conf = Conf()

        class sparkContext:  # noqa: N801 - the attribute name of a SparkSession
            master = "yarn"

    with pytest.raises(ConfigError, match="spark.exchange_dir"):
        Exchange(Cluster())
