"""Score-change attribution in `leadprop score`: two consecutive batches of one generated
export, where one lead's pricing visits age out of the 30-day window between them.

A tiny model is trained on the export and registered as `lead-propensity@champion` in a
temporary MLflow store (as in test_score.py); a second, retrained version is registered
only by the test that needs it, which restores the champion alias afterwards.
"""

from __future__ import annotations

import shutil

import joblib
import numpy as np
import pandas as pd
import pytest

from features.build import build_features, feature_columns, feature_groups
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models import attribution, scoring
from models.training import train_all
from pipeline import pyfunc_model, tracking
from pipeline.contract import CONTRACT_VERSION, validate_leads
from pipeline.readers import read_table
from pipeline.settings import parse_params
from pipeline.stages import score as stage
from tests.helpers import register_champion, tiny_training
from tests.unit.pipeline.test_score import RAW_PARAMS, SCORED_AT, make_export, write_csv

AS_OF_1 = pd.Timestamp("2025-10-01")
AS_OF_2 = pd.Timestamp("2025-10-29")         # 28 days later
PRICED = "P-PRICING"                          # pricing visits 5 days before batch one
EDGE = "P-EDGE"                               # a demo request exactly at batch one's as_of
PARAMS = {**RAW_PARAMS, "score": {**RAW_PARAMS["score"],
                                  "attribution": {"enabled": True, "movers": 5000}}}


def export() -> tuple[pd.DataFrame, pd.DataFrame]:
    """`make_export` plus two hand-made open leads (see the module doc)."""
    leads, events = make_export()
    extra = pd.DataFrame({
        "lead_id": [PRICED, EDGE], "created_at": ["2025-03-01 09:00:00"] * 2,
        "source": ["referral"] * 2, "company": ["Acme"] * 2, "company_size": ["300"] * 2,
        "job_title": ["VP Sales"] * 2, "budget": [">250k"] * 2, "utm_campaign": ["spring"] * 2,
        "converted": ["0"] * 2, "converted_at": [""] * 2, "lost_at": [""] * 2})
    seen = (AS_OF_1 - pd.Timedelta(days=5)).strftime("%Y-%m-%d")
    mine = pd.DataFrame(
        [(PRICED, f"{seen} 1{h}:00:00", "pricing_view") for h in range(3)]
        + [(EDGE, "2025-09-10 10:00:00", "pricing_view"),
           (EDGE, AS_OF_1.strftime("%Y-%m-%d %H:%M:%S"), "demo_request")],
        columns=["lead_id", "timestamp", "event_type"])
    return (pd.concat([leads, extra], ignore_index=True),
            pd.concat([events, mine], ignore_index=True))


def train(leads_csv, events_csv, params, n_estimators: int, seed: int):
    """A tiny bundle trained on the export (as test_score.py's `world`)."""
    leads, _ = validate_leads(read_table(leads_csv), str(leads_csv))
    events = read_table(events_csv).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"]).astype("datetime64[us]"))
    events = events.sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)
    fs = FeatureSettings.from_params(params.features)
    snap = SnapshotSettings.from_params(params.snapshots, params.label)
    frame = build_features(training_spine(leads, snap, data_end(leads, events)), leads,
                           events, fs)
    cols = feature_columns(frame)
    raw = {**tiny_training(n_estimators), "bands": RAW_PARAMS["bands"]}
    raw["train"] = {**raw["train"], "seed": seed}
    p = parse_params({**PARAMS, **raw})
    bundle = train_all(frame, cols, p.split, p.train, p.calibration, p.bands,
                       horizon_days=30, groups=feature_groups(cols, fs)).bundle
    bundle.metadata["input_contract"] = pyfunc_model.input_contract(
        leads, events, source="synthetic", source_hash="none",
        features=RAW_PARAMS["features"], ingest={}, contract_version=CONTRACT_VERSION)
    return bundle, leads, events, fs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("changes")
    leads_raw, events_raw = export()
    leads_csv = write_csv(leads_raw, root / "leads.csv")
    events_csv = write_csv(events_raw, root / "events.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.chdir(root)
        params = parse_params(PARAMS)
        bundle, leads, events, fs = train(leads_csv, events_csv, params, 60, 1)
        joblib.dump(bundle, root / "bundle.joblib")
        version = register_champion(root / "bundle.joblib")
        yield {"root": root, "params": params, "leads_csv": leads_csv,
               "events_csv": events_csv, "bundle": bundle, "leads": leads, "events": events,
               "fs": fs, "version": version}


@pytest.fixture
def env(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{world['root']}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return world


def run(world, folder, params=None, **kw):
    kw.setdefault("leads", world["leads_csv"])
    kw.setdefault("events", world["events_csv"])
    kw.setdefault("out", folder / "out" / "batch")
    kw.setdefault("scored_at", SCORED_AT)
    return stage.from_params(params or world["params"], **kw)


@pytest.fixture(scope="module")
def batches(world):
    """Batch one and two of the export into files + SQLite (shared, read only); a copy of
    the files as batch one left them, for tests that score a different batch two."""
    folder = world["root"] / "shared"
    db = f"sqlite:///{folder}/scores.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{world['root']}/mlflow.db")
        mp.chdir(world["root"])
        folder.mkdir()
        one = run(world, folder, as_of=AS_OF_1, db=db)
        first = pd.read_parquet(folder / "out" / "batch.parquet")
        shutil.copytree(folder / "out", folder / "after_one")
        two = run(world, folder, as_of=AS_OF_2, db=db)
    return {"one": one, "two": two, "first": first.set_index("lead_id"), "db": db,
            "folder": folder, "second": pd.read_parquet(folder / "out" / "batch.parquet")
            .set_index("lead_id")}


def from_batch_one(batches, tmp_path):
    """A private copy of the files batch one wrote."""
    shutil.copytree(batches["folder"] / "after_one", tmp_path / "out")


def explained(world, first: pd.DataFrame, old_as_of: pd.Timestamp = AS_OF_1,
              as_of: pd.Timestamp = AS_OF_2) -> pd.DataFrame:
    """`explain_changes` on the whole export (the pure core, every lead, all parts)."""
    bundle = world["bundle"]
    new = scoring.score_open_leads(world["leads"], world["events"], bundle, world["fs"], as_of)
    previous = attribution.PreviousBatch(first["score"].astype(float), old_as_of,
                                         world["version"], world["version"], movers=10**6)
    return attribution.explain_changes(new.table, world["leads"], world["events"], bundle,
                                       world["fs"], as_of, previous).set_index("lead_id")


@pytest.fixture(scope="module")
def parts(world, batches):
    return explained(world, batches["first"])


# --------------------------------------------------------------------------- tests


def test_an_event_ageing_out_is_a_negative_change_named_by_its_family(batches, parts):
    one, two, first, second = (batches[k] for k in ("one", "two", "first", "second"))
    assert two["previous_batch"] == one["batch_id"]
    lead = second.loc[PRICED]
    assert lead["score_change"] == lead["score"] - first.loc[PRICED, "score"] < 0
    assert parts.loc[PRICED, attribution.FAMILY_PARTS]["behaviour:pricing"] <= -1
    assert "pricing action" in lead["change_reasons"]
    assert lead["change_reasons"].startswith("▼ −")
    both = second.index.intersection(first.index)
    assert np.allclose(second.loc[both, "score_change"],
                       second.loc[both, "score"] - first.loc[both, "score"])
    moved = second.loc[both]
    assert (moved.loc[moved["score_change"].abs() >= 1, "change_reasons"].str.len() > 0).all()
    summary = two["score_changes"]
    assert summary["leads_compared"] == len(both) and summary["share_model"] == 0
    assert summary["share_revised"] == pytest.approx(0, abs=1e-12)
    assert one["score_changes"]["leads_compared"] == 0


def test_parts_add_up_to_the_change_for_every_lead(batches, parts):
    first, second = batches["first"], batches["second"]
    both = parts["score_change"].notna()
    assert both.sum() == len(second.index.intersection(first.index)) > 300
    total = parts[attribution.MODEL_PART] + parts[attribution.DATA_PART] \
        + parts[attribution.REVISED_PART]
    assert np.allclose(total[both], parts.loc[both, "score_change"], atol=1e-6, rtol=0)
    families = parts.loc[both, attribution.FAMILY_PARTS].map(lambda d: sum(d.values()))
    assert np.allclose(families, parts.loc[both, attribution.DATA_PART], atol=1e-6, rtol=0)
    # the published table's change is the same number
    ids = parts.index[both]
    assert np.allclose(parts.loc[ids, "score_change"], second.loc[ids, "score_change"])
    # the movers file (every mover here) adds up too, family by family
    movers = pd.read_csv(batches["folder"] / "out" / "batch.movers.csv", encoding="utf-8-sig")
    summed = movers["model_part"] + movers.filter(like="data_part[").sum(axis=1)
    assert len(movers) == (second["score_change"].fillna(0) != 0).sum()
    assert np.allclose(summed, movers["score_change"], atol=1e-4)
    assert "data_part[behaviour:pricing]" in movers.columns
    assert movers["score_change"].abs().is_monotonic_decreasing


def test_old_features_see_only_events_before_the_old_as_of(world, batches, parts):
    """Leakage guard: the rebuilt old features are what batch one saw, so its published
    scores are reproduced exactly (no `revised` part) although the export holds the later
    events and a demo request exactly at batch one's as_of; counting events at the as_of
    (the old moment one second later) breaks that for the lead with the edge event."""
    assert parts[attribution.REVISED_PART].abs().max() < 1e-9
    spine = pd.DataFrame({"lead_id": [EDGE, EDGE], "as_of": pd.Series(
        [AS_OF_1, AS_OF_2], dtype="datetime64[us]")})
    at = scoring.features_at(spine, world["leads"], world["events"], world["fs"],
                             [world["bundle"]])
    demo = [c for c in at.columns if c.startswith("grp_ready_to_buy_")]
    assert demo and (at.iloc[0][demo] == 0).all() and (at.iloc[1][demo] >= 1).any()
    leaky = explained(world, batches["first"], old_as_of=AS_OF_1 + pd.Timedelta(seconds=1))
    assert abs(leaky.loc[EDGE, attribution.REVISED_PART]) >= 1


def test_new_leads_have_no_change_and_the_run_has_the_movers(batches, tmp_path):
    two, first, second = batches["two"], batches["first"], batches["second"]
    fresh = second.index.difference(first.index)
    assert len(fresh) and second.loc[fresh, "score_change"].isna().all()
    assert (second.loc[fresh, "change_reasons"].fillna("") == "").all()
    assert (second.loc[fresh, "movement"] == "new").all()
    client = tracking.mlflow().MlflowClient()
    run_id = two["mlflow_run_id"]
    names = [a.path for a in client.list_artifacts(run_id, "score_changes")]
    assert names == ["score_changes/movers.csv"]
    local = client.download_artifacts(run_id, "score_changes/movers.csv", str(tmp_path))
    movers = pd.read_csv(local)
    assert list(movers.columns[:5]) == ["lead_id", "score", "previous_score", "score_change",
                                        "model_part"]
    assert movers.columns[-1] == "change_reasons"
    assert not set(movers.columns) & {"company", "email", "job_title", "budget"}
    metrics = client.get_run(run_id).data.metrics
    assert metrics["score_changes.leads_compared"] == len(second.index.intersection(first.index))
    assert metrics["score_changes.mean_abs_change"] > 0
    assert two["outputs"]["movers"].endswith("batch.movers.csv")
    c = two["counts"]     # every raw row still scored, not open or rejected
    assert c["input"] == c["scored"] + c["not_open"] + c["rejected"]


def test_csv_and_sql_carry_the_columns(batches):
    csv = pd.read_csv(batches["folder"] / "out" / "batch.csv", encoding="utf-8-sig",
                      dtype={"lead_id": str}).set_index("lead_id")
    row = csv.loc[PRICED]
    assert row["score_change"] < 0 and row["change_reasons"].startswith("▼ −")
    from pipeline import scoring_io

    engine = scoring_io.open_engine(scoring_io.SqlTarget(batches["db"]))
    try:
        table = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    sql = table[table["batch_id"] == batches["two"]["batch_id"]].set_index("lead_id")
    assert sql.loc[PRICED, "score_change"] == row["score_change"]
    assert sql.loc[PRICED, "change_reasons"] == row["change_reasons"]
    assert sql["score_change"].isna().sum() == csv["score_change"].isna().sum() > 0


def test_a_retrained_model_is_the_model_part(env, batches, tmp_path):
    from_batch_one(batches, tmp_path)
    retrained, *_ = train(env["leads_csv"], env["events_csv"], env["params"], 25, 7)
    joblib.dump(retrained, tmp_path / "retrained.joblib")
    new_version = register_champion(tmp_path / "retrained.joblib")
    try:
        two = run(env, tmp_path, as_of=AS_OF_2)
    finally:
        tracking.mlflow().MlflowClient().set_registered_model_alias(
            "lead-propensity", "champion", env["version"])
    second = pd.read_parquet(tmp_path / "out" / "batch.parquet").set_index("lead_id")
    assert (second["model_version"] == new_version).all()
    summary = two["score_changes"]
    assert summary["previous_model_version"] == env["version"]
    assert summary["leads_attributed"] == summary["leads_compared"] > 0
    assert 0 < summary["share_model"] < 1
    words = f"model retrained (v{env['version']} → v{new_version})"
    assert second["change_reasons"].str.contains(words, regex=False).any()
    movers = pd.read_csv(tmp_path / "out" / "batch.movers.csv", encoding="utf-8-sig")
    assert (movers["model_part"].abs() >= 1).any()
    summed = movers["model_part"] + movers.filter(like="data_part[").sum(axis=1)
    assert np.allclose(summed, movers["score_change"], atol=1e-4)
    first = batches["first"]
    both = second.index.intersection(first.index)
    assert np.allclose(second.loc[both, "score_change"],
                       second.loc[both, "score"] - first.loc[both, "score"])


def test_an_old_model_that_cannot_be_loaded_is_said_not_raised(env, batches, tmp_path):
    from_batch_one(batches, tmp_path)
    path = tmp_path / "out" / "batch.parquet"
    pd.read_parquet(path).assign(model_version="999").to_parquet(path, index=False)
    two = run(env, tmp_path, as_of=AS_OF_2)   # version 999 does not exist
    second = pd.read_parquet(path).set_index("lead_id")
    both = second.index.intersection(batches["first"].index)
    assert (second.loc[both, "change_reasons"]
            == "not attributed: model v999 of the previous batch cannot be loaded").all()
    assert second.loc[both, "score_change"].notna().all()
    assert two["score_changes"]["leads_attributed"] == 0
    c = two["counts"]
    assert c["input"] == c["scored"] + c["not_open"] + c["rejected"]


def test_a_rerun_keeps_its_change_columns(env, batches, tmp_path):
    shutil.copytree(batches["folder"] / "out", tmp_path / "out")
    again = run(env, tmp_path, as_of=AS_OF_2)
    assert again["batch_id"] == batches["two"]["batch_id"]
    table = pd.read_parquet(tmp_path / "out" / "batch.parquet").set_index("lead_id")
    pd.testing.assert_series_equal(table["score_change"], batches["second"]["score_change"])
    pd.testing.assert_series_equal(table["change_reasons"],
                                   batches["second"]["change_reasons"])


def test_disabled_leaves_the_columns_out(env, tmp_path):
    off = parse_params({**PARAMS, "score": {**PARAMS["score"],
                                            "attribution": {"enabled": False}}})
    run(env, tmp_path, params=off, as_of=AS_OF_1)
    two = run(env, tmp_path, params=off, as_of=AS_OF_2)
    second = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    assert not {"score_change", "change_reasons"} & set(second.columns)
    assert (second["movement"] != "new").any()
    assert "score_changes" not in two and two["outputs"]["movers"] is None
    assert not (tmp_path / "out" / "batch.movers.csv").exists()
