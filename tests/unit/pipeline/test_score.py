"""The score stage: every input lead scored, not open or rejected; Excel-safe CSV; SQL
batches with change columns; atomic outputs; clear errors.

A tiny LightGBM bundle is trained once per module on seeded random leads/events and logged
to a temporary MLflow store (sqlite in tmp) as `lead-propensity@champion`.
"""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features, feature_columns, feature_groups
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models import scoring
from models.drift import drift_reference, top_features
from models.training import train_all
from pipeline import pyfunc_model, scoring_io, tracking
from pipeline.contract import CONTRACT_VERSION, validate_leads
from pipeline.errors import ConfigError, DataError
from pipeline.readers import read_table
from pipeline.settings import parse_params
from pipeline.stages import score as stage
from tests.helpers import register_champion, tiny_training

T0 = pd.Timestamp("2025-01-01")
AS_OF_1 = pd.Timestamp("2025-10-01")
AS_OF_2 = pd.Timestamp("2025-10-20")
SCORED_AT = "2025-10-21 08:00:00"
MODEL = "models:/lead-propensity@champion"
FORMULA = '=HYPERLINK("http://evil.example","click")'
RAW_PARAMS = {
    "snapshots": {"ages_days": [1, 7, 30]},
    "label": {"horizon_days": 30},
    "features": {"windows_days": [7, 30], "event_groups": {
        "research": ["site_visit"], "pricing": ["pricing_view"],
        "ready_to_buy": ["demo_request"], "email": ["email_sent", "email_open", "email_click"]}},
    **tiny_training(60),
    "bands": {
        "temperature": tiny_training()["bands"]["temperature"],
        "lifecycle": {"policy": "share", "min_band_size": 5, "bands": [
            {"name": "lead"}, {"name": "MQL", "top_share": 0.4},
            {"name": "SQL", "top_share": 0.15}]},
    },
    "score": {"model": MODEL},
}
LEAD_COLUMNS = ["lead_id", "created_at", "source", "company", "company_size", "job_title",
                "budget", "utm_campaign", "converted", "converted_at", "lost_at"]


# ----------------------------------------------------------------------------- data


def make_export(n: int = 700, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw text leads and events in the canonical contract (as a CRM would export them)."""
    rng = np.random.default_rng(seed)
    created = (T0 + pd.to_timedelta(rng.uniform(0, 300, n), unit="D")).floor("s")
    title = rng.choice(["CEO", "VP Sales", "Marketing Manager", "Intern", "Engineer"], n)
    budget = rng.choice(["<10k", "10k-50k", "50k-250k", ">250k", ""], n)
    intent = rng.normal(size=n) + np.isin(title, ["CEO", "VP Sales"]) + (budget == ">250k")
    conv = rng.random(n) < 1 / (1 + np.exp(1.5 - 1.5 * intent))
    conv_at = pd.Series(created + pd.to_timedelta(1 + rng.exponential(20, n), unit="D"))
    lost = ~conv & (rng.random(n) < 0.15)
    lost_at = pd.Series(created + pd.to_timedelta(1 + rng.exponential(40, n), unit="D"))

    def fmt(values: pd.Series, mask: np.ndarray) -> list[str]:
        return [v.strftime("%Y-%m-%d %H:%M:%S") if m else "" for v, m in zip(values, mask,
                                                                               strict=True)]

    ids = [f"L{i:04d}" for i in range(n)]
    leads = pd.DataFrame({
        "lead_id": ids,
        "created_at": fmt(pd.Series(created), np.ones(n, bool)),
        "source": rng.choice(["organic_search", "paid_search", "referral", "event"], n),
        "company": rng.choice(["Acme", "Globex", FORMULA, "-minus corp", "@at"], n),
        "company_size": rng.choice(["5", "40", "300", "2000", ""], n),
        "job_title": title, "budget": budget,
        "utm_campaign": rng.choice(["spring", "summer", "autumn", ""], n),
        "converted": conv.astype(int).astype(str),
        "converted_at": fmt(conv_at, conv), "lost_at": fmt(lost_at, lost),
    })
    rows = []
    for i in range(n):
        k = rng.poisson(3 + 4 / (1 + np.exp(-intent[i])))
        ts = created[i] + pd.to_timedelta(rng.exponential(15, k), unit="D")
        pi = 1 / (1 + np.exp(-intent[i]))
        types = rng.choice(["site_visit", "pricing_view", "demo_request", "email_open"], k,
                           p=[0.5 - 0.3 * pi, 0.2 + 0.15 * pi, 0.05 + 0.15 * pi, 0.25])
        rows += [(ids[i], t.floor("s").strftime("%Y-%m-%d %H:%M:%S"), e)
                 for t, e in zip(ts, types, strict=True)]
    events = pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])
    return leads, events


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Train and register the tiny model in a temporary MLflow store; yield paths + params."""
    root = tmp_path_factory.mktemp("score")
    leads_raw, events_raw = make_export()
    leads_csv = write_csv(leads_raw, root / "leads.csv")
    events_csv = write_csv(events_raw, root / "events.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.chdir(root)
        params = parse_params(RAW_PARAMS)
        leads, _ = validate_leads(read_table(leads_csv), str(leads_csv))
        events = read_table(events_csv).assign(
            timestamp=lambda f: pd.to_datetime(f["timestamp"]).astype("datetime64[us]"))
        events = events.sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)
        fs = FeatureSettings.from_params(params.features)
        snap = SnapshotSettings.from_params(params.snapshots, params.label)
        frame = build_features(training_spine(leads, snap, data_end(leads, events)), leads,
                               events, fs)
        cols = feature_columns(frame)
        result = train_all(frame, cols, params.split, params.train, params.calibration,
                           params.bands, horizon_days=30, groups=feature_groups(cols, fs))
        bundle = result.bundle
        train_rows = frame.loc[(result.predictions["split"] == "train").to_numpy()]
        top = top_features(bundle.features,
                           bundle.model.booster_.feature_importance("gain"), 10)
        bundle.metadata["reference"] = drift_reference(
            bundle.matrix(train_rows), bundle.propensity(train_rows), top)
        bundle.metadata["input_contract"] = pyfunc_model.input_contract(
            leads, events, source="synthetic", source_hash="none",
            features=RAW_PARAMS["features"], ingest={}, contract_version=CONTRACT_VERSION)
        joblib.dump(bundle, root / "bundle.joblib")
        version = register_champion(root / "bundle.joblib")
        yield {"root": root, "params": params, "leads_raw": leads_raw, "events_raw": events_raw,
               "leads_csv": leads_csv, "events_csv": events_csv, "bundle": bundle, "fs": fs,
               "version": version, "leads": leads, "events": events}


@pytest.fixture
def env(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{world['root']}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return world


def run(world, tmp_path: Path, **kw):
    kw.setdefault("leads", world["leads_csv"])
    kw.setdefault("events", world["events_csv"])
    kw.setdefault("as_of", AS_OF_1)
    kw.setdefault("out", tmp_path / "out" / "batch")
    kw.setdefault("scored_at", SCORED_AT)
    return stage.from_params(world["params"], **kw)


# ------------------------------------------------------------------ counts and table


def test_every_lead_is_scored_not_open_or_rejected(env, tmp_path):
    raw = env["leads_raw"].copy()
    raw.loc[3, "created_at"] = "yesterday"           # unparseable date
    raw.loc[4, "lead_id"] = ""                       # no id
    raw.loc[5, "company_size"] = "lots"              # not a count
    raw.loc[6, ["company", "created_at"]] = [FORMULA, "31/02/2025"]
    leads = write_csv(raw, tmp_path / "leads.csv")
    summary = run(env, tmp_path, leads=leads)

    c = summary["counts"]
    assert c["input"] == len(raw) == c["scored"] + c["not_open"] + c["rejected"]
    assert c["rejected"] == 4
    assert c["not_open"] == sum(c["not_open_by_reason"].values())
    assert c["not_open_by_reason"]["converted"] > 0 and c["not_open_by_reason"]["lost"] > 0
    assert c["not_open_by_reason"]["not yet created"] > 0

    scored = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    assert list(scored.columns) == [
        "lead_id", "as_of", "propensity", "score", "temperature", "lifecycle_stage",
        "previous_temperature", "previous_lifecycle_stage", "movement", "score_change",
        "change_reasons", "holdout", "reasons", "model_version", "scored_at", "batch_id"]
    assert len(scored) == c["scored"] and scored["lead_id"].is_unique
    order = scored.sort_values(["propensity", "lead_id"], ascending=[False, True])
    assert scored["lead_id"].tolist() == order["lead_id"].tolist()
    assert scored["score"].between(1, 99).all()
    assert set(scored["temperature"]) <= {"cold", "warm", "hot"}
    assert set(scored["lifecycle_stage"]) <= {"lead", "MQL", "SQL"}
    assert (scored["movement"] == "new").all() and scored["previous_temperature"].isna().all()
    assert (scored["as_of"] == AS_OF_1).all()
    assert (scored["scored_at"] == pd.Timestamp(SCORED_AT)).all()
    assert (scored["model_version"] == env["version"]).all()
    assert scored["batch_id"].nunique() == 1 and summary["batch_id"].startswith("20251001T000000-")
    assert scored["reasons"].str.len().gt(0).any()
    assert not scored["reasons"].str.match(r"^[=+\-@−]").any()
    # open means: created by as_of, neither converted nor lost by then
    typed = raw.set_index("lead_id")
    created = pd.to_datetime(typed.loc[scored["lead_id"], "created_at"])
    assert (created <= AS_OF_1).all()

    rejects = pd.read_csv(tmp_path / "out" / "batch.rejects.csv", dtype=str,
                          encoding="utf-8-sig")
    assert list(rejects.columns[:2]) == ["source_row", "reason"]
    by_row = dict(zip(rejects["source_row"].astype(int), rejects["reason"], strict=True))
    assert by_row[5] == "created_at is not a date"      # row 3 of the frame = file row 5
    assert by_row[6] == "lead_id is empty"
    assert by_row[7] == "company_size is not a whole number >= 0"
    assert "created_at is not a date" in by_row[8]
    assert summary["drift"]["propensity"]["psi"] >= 0
    assert summary["mlflow_run_id"]


def test_converted_column_is_optional(env, tmp_path):
    raw = env["leads_raw"].drop(columns="converted")
    summary = run(env, tmp_path, leads=write_csv(raw, tmp_path / "leads.csv"))
    full = run(env, tmp_path, out=tmp_path / "full")
    assert summary["counts"]["not_open_by_reason"] == full["counts"]["not_open_by_reason"]
    assert summary["counts"]["scored"] == full["counts"]["scored"]
    rejects = pd.read_csv(tmp_path / "out" / "batch.rejects.csv", encoding="utf-8-sig")
    assert "converted" not in rejects.columns


def test_mlflow_run_records_the_batch(env, tmp_path):
    summary = run(env, tmp_path)
    ml = tracking.mlflow()
    r = ml.get_run(summary["mlflow_run_id"])
    exp = ml.get_experiment(r.info.experiment_id)
    assert exp.name == tracking.SCORING_EXPERIMENT
    assert r.data.params["model_version"] == env["version"]
    assert r.data.params["as_of"] == "2025-10-01T00:00:00"
    assert r.data.params["leads_hash"] == tracking.file_hash([env["leads_csv"]])
    m = r.data.metrics
    assert m["rows.input"] == m["rows.scored"] + m["rows.not_open"] + m["rows.rejected"]
    assert m["rows.not_open"] == sum(v for k, v in m.items() if k.startswith("rows.not_open."))
    assert abs(sum(v for k, v in m.items()
                   if k.startswith("band.temperature.") and k.endswith(".share")) - 1) < 1e-9
    assert "psi.propensity" in m and "propensity.q50" in m
    assert r.data.tags["output.parquet"].endswith("batch.parquet")


# ------------------------------------------------------------------ determinism


def test_events_after_as_of_change_no_score(env):
    bundle, fs, leads, events = env["bundle"], env["fs"], env["leads"], env["events"]
    base = scoring.score_open_leads(leads, events, bundle, fs, AS_OF_1)
    open_ids = base.table["lead_id"].tolist()
    rng = np.random.default_rng(3)
    later = pd.DataFrame({
        "lead_id": pd.Series(rng.choice(open_ids, 400), dtype="str"),
        "timestamp": pd.Series(AS_OF_1 + pd.to_timedelta(
            np.r_[np.zeros(100), rng.uniform(0, 30, 300)], unit="D"), dtype="datetime64[us]"),
        "event_type": pd.Series(rng.choice(["demo_request", "pricing_view", "webinar_new"], 400),
                                dtype="str"),
    })
    more = pd.concat([events, later], ignore_index=True)
    after = scoring.score_open_leads(leads, more, bundle, fs, AS_OF_1)
    pd.testing.assert_frame_equal(base.table, after.table)


def test_chunk_size_changes_nothing(env):
    bundle, fs, leads, events = env["bundle"], env["fs"], env["leads"], env["events"]
    whole = scoring.score_open_leads(leads, events, bundle, fs, AS_OF_1, chunk_size=10**6)
    small = scoring.score_open_leads(leads, events, bundle, fs, AS_OF_1, chunk_size=45)
    pd.testing.assert_frame_equal(whole.table, small.table)


def test_rerun_gives_the_same_table(env, tmp_path):
    first = run(env, tmp_path)
    a = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    second = run(env, tmp_path)
    b = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    assert first["batch_id"] == second["batch_id"]
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------ batches and changes


def test_second_sql_batch_has_change_columns(env, tmp_path):
    db = f"sqlite:///{tmp_path}/scores.db"
    one = run(env, tmp_path, db=db, as_of=AS_OF_1)
    two = run(env, tmp_path, db=db, as_of=AS_OF_2)
    engine = scoring_io.open_engine(scoring_io.SqlTarget(db))
    try:
        table = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    assert table.groupby("batch_id").size().to_dict() == {
        one["batch_id"]: one["counts"]["scored"], two["batch_id"]: two["counts"]["scored"]}
    assert two["previous_batch"] == one["batch_id"]
    second = table[table["batch_id"] == two["batch_id"]].set_index("lead_id")
    first = table[table["batch_id"] == one["batch_id"]].set_index("lead_id")
    both = second.index.intersection(first.index)
    assert len(both) > 0 and (second.loc[both, "movement"] != "new").all()
    assert (second.loc[both, "previous_temperature"] == first.loc[both, "temperature"]).all()
    assert (second.loc[both, "previous_lifecycle_stage"]
            == first.loc[both, "lifecycle_stage"]).all()
    fresh = second.index.difference(first.index)
    assert len(fresh) > 0 and (second.loc[fresh, "movement"] == "new").all()
    assert set(second["movement"]) <= {"new", "up", "down", "same"}
    assert sum(two["movement"].values()) == two["counts"]["scored"]
    # re-running batch two replaces its rows instead of adding a third batch
    run(env, tmp_path, db=db, as_of=AS_OF_2)
    engine = scoring_io.open_engine(scoring_io.SqlTarget(db))
    try:
        again = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    assert len(again) == len(table) and again["batch_id"].nunique() == 2


def test_holdout_is_the_keyed_hash_stable_across_batches(env, tmp_path):
    from models.holdout import assign_holdout

    db = f"sqlite:///{tmp_path}/scores.db"
    one = run(env, tmp_path, db=db, as_of=AS_OF_1)
    two = run(env, tmp_path, db=db, as_of=AS_OF_2)
    engine = scoring_io.open_engine(scoring_io.SqlTarget(db))
    try:
        table = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    first = table[table["batch_id"] == one["batch_id"]].set_index("lead_id")["holdout"]
    second = table[table["batch_id"] == two["batch_id"]].set_index("lead_id")["holdout"]
    both = first.index.intersection(second.index)
    assert len(both) and (first[both].astype(bool) == second[both].astype(bool)).all()
    settings = env["params"].score
    expected = assign_holdout(first.index, settings.holdout_share, key=settings.holdout_key,
                              source=env["params"].source_key)
    assert (first.astype(bool).to_numpy() == expected).all()
    assert 0 < first.astype(bool).sum() < len(first)


def test_an_older_sql_table_gets_the_new_columns(env, tmp_path):
    import sqlalchemy as sa

    db = f"sqlite:///{tmp_path}/scores.db"
    one = run(env, tmp_path, db=db, as_of=AS_OF_1)
    engine = sa.create_engine(db)
    with engine.begin() as conn:               # the layout before the holdout flag existed
        conn.execute(sa.text("ALTER TABLE scored_leads DROP COLUMN holdout"))
    engine.dispose()
    two = run(env, tmp_path, db=db, as_of=AS_OF_2)
    engine = scoring_io.open_engine(scoring_io.SqlTarget(db))
    try:
        table = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    assert table.loc[table["batch_id"] == one["batch_id"], "holdout"].isna().all()
    assert table.loc[table["batch_id"] == two["batch_id"], "holdout"].notna().all()


def test_previous_output_file_gives_change_columns(env, tmp_path):
    run(env, tmp_path, as_of=AS_OF_1)
    run(env, tmp_path, as_of=AS_OF_2)
    scored = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    assert (scored["movement"] != "new").any()
    assert scored.loc[scored["movement"] != "new", "previous_temperature"].notna().all()


def test_movement_follows_lifecycle_then_temperature():
    orders = {"lifecycle_stage": ("lead", "MQL", "SQL"), "temperature": ("cold", "warm", "hot")}
    now = pd.DataFrame({"lead_id": ["a", "b", "c", "d", "e"],
                        "lifecycle_stage": ["MQL", "SQL", "MQL", "lead", "lead"],
                        "temperature": ["warm", "hot", "hot", "cold", "warm"]})
    prev = pd.DataFrame({"lead_id": ["a", "b", "c", "d"],
                         "lifecycle_stage": ["SQL", "SQL", "MQL", "lead"],
                         "temperature": ["hot", "warm", "warm", "cold"]})
    out = stage.add_changes(now, prev, orders)
    assert out["movement"].tolist() == ["down", "up", "up", "same", "new"]
    assert out["previous_lifecycle_stage"].tolist()[:4] == ["SQL", "SQL", "MQL", "lead"]
    assert pd.isna(out["previous_temperature"].iloc[4])


# ------------------------------------------------------------------ CSV for Excel


def test_csv_opens_safely_in_excel(env, tmp_path):
    raw = env["leads_raw"].copy()
    raw.loc[0, ["lead_id", "created_at", "converted", "lost_at"]] = [
        FORMULA, "2025-03-01 10:00:00", "0", ""]
    raw.loc[1, ["lead_id", "company", "created_at"]] = ["-42", FORMULA, "not a date"]
    leads = write_csv(raw, tmp_path / "leads.csv")
    run(env, tmp_path, leads=leads, events=None)
    data = (tmp_path / "out" / "batch.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    csv = pd.read_csv(tmp_path / "out" / "batch.csv", dtype=str, encoding="utf-8-sig")
    iso = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
    assert csv["as_of"].str.match(iso).all() and csv["scored_at"].str.match(iso).all()
    assert (csv["as_of"] == "2025-10-01 00:00:00").all()
    assert "'" + FORMULA in set(csv["lead_id"])
    text = csv.drop(columns=["propensity", "score"]).fillna("")
    for col in text.columns:
        assert not text[col].str.match(r"^[=+\-@\t\r]").any(), col
    rejects = pd.read_csv(tmp_path / "out" / "batch.rejects.csv", dtype=str,
                          encoding="utf-8-sig")
    row = rejects[rejects["source_row"] == "3"].iloc[0]
    assert row["lead_id"] == "'-42" and row["company"] == "'" + FORMULA
    parquet = pd.read_parquet(tmp_path / "out" / "batch.parquet")
    assert FORMULA in set(parquet["lead_id"])   # only the CSV is neutralised


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_neutralise_prefixes_formula_cells(cell):
    frame = pd.DataFrame({"t": [cell, "ok"], "n": [-1.5, 2.0]})
    out = scoring_io.neutralise(frame)
    assert out["t"].tolist() == ["'" + cell, "ok"] and out["n"].tolist() == [-1.5, 2.0]
    assert scoring_io.unneutralise(out["t"]).tolist() == [cell, "ok"]


# ------------------------------------------------------------------ atomic writes


def test_crash_mid_write_keeps_previous_files(env, tmp_path, monkeypatch):
    run(env, tmp_path, as_of=AS_OF_1)
    out = tmp_path / "out"
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def half_then_die(frame, path):
        Path(path).write_text("lead_id,propensity\nL0001,0.5\nL00", encoding="utf-8")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(scoring_io, "write_excel_csv", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(env, tmp_path, as_of=AS_OF_2)
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before    # same files (history too), same bytes, no temp files left


def test_crash_mid_sql_append_rolls_back(env, tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path}/scores.db"
    run(env, tmp_path, db=db, as_of=AS_OF_1)
    calls = {"n": 0}
    real = scoring_io._insert_chunk

    def second_chunk_dies(conn, table, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        real(conn, table, rows)

    monkeypatch.setattr(scoring_io, "_INSERT_ROWS", 10)
    monkeypatch.setattr(scoring_io, "_insert_chunk", second_chunk_dies)
    with pytest.raises(KeyboardInterrupt):
        run(env, tmp_path, db=db, as_of=AS_OF_2)
    engine = scoring_io.open_engine(scoring_io.SqlTarget(db))
    try:
        table = scoring_io.read_batches(engine, "scored_leads")
    finally:
        engine.dispose()
    assert table["batch_id"].nunique() == 1 and (pd.to_datetime(table["as_of"]) == AS_OF_1).all()
    assert pd.read_parquet(tmp_path / "out" / "batch.parquet")["as_of"].eq(AS_OF_1).all()


# ------------------------------------------------------------------ errors


def test_missing_feature_column_is_named(env, tmp_path):
    leads = write_csv(env["leads_raw"].drop(columns="utm_campaign"), tmp_path / "leads.csv")
    with pytest.raises(DataError, match="extra_utm_campaign") as info:
        run(env, tmp_path, leads=leads)
    assert info.value.column == "extra_utm_campaign"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("uri", "message"), [
    ("models:/lead-propensity@nobody", "cannot be loaded"),
    ("models:/no-such-model/1", "cannot be loaded"),
    ("does/not/exist", "not in the configured MLflow store"),   # a foreign path: not trusted
])
def test_nonexistent_model_uri(env, tmp_path, uri, message):
    with pytest.raises(ConfigError, match=message):
        run(env, tmp_path, model=uri)


@pytest.mark.parametrize("content", ["", ",".join(LEAD_COLUMNS) + "\n"])
def test_empty_leads_file(env, tmp_path, content):
    path = tmp_path / "leads.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="empty|no data rows"):
        run(env, tmp_path, leads=path)


@pytest.mark.parametrize("name", ["scores; DROP TABLE x", "1scores", "a.b", 'x"', "", "a" * 49])
def test_bad_sql_table_name(env, tmp_path, name):
    with pytest.raises(ConfigError, match="plain SQL table name"):
        run(env, tmp_path, db=f"sqlite:///{tmp_path}/s.db", table=name)
    assert not (tmp_path / "s.db").exists()


def test_cli_error_is_one_paragraph_exit_2(env, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(RAW_PARAMS), encoding="utf-8")
    result = CliRunner().invoke(app, ["score", "--params", str(params), "--leads",
                                      str(env["leads_csv"]), "--model", "models:/nope@x",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "cannot be loaded" in result.output


def test_cli_scores_and_prints_counts(env, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(RAW_PARAMS), encoding="utf-8")
    result = CliRunner().invoke(app, ["score", "--params", str(params), "--leads",
                                      str(env["leads_csv"]), "--events", str(env["events_csv"]),
                                      "--as-of", "2025-10-01", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert re.search(r"input\s*│\s*700", result.output)
    assert (tmp_path / "o.parquet").exists() and (tmp_path / "o.csv").exists()


def test_params_mode_scores_the_interim_tables_at_the_data_end(env, tmp_path):
    interim = tmp_path / "data" / "interim"
    interim.mkdir(parents=True)
    env["leads"].to_parquet(interim / "leads.parquet")
    env["events"].to_parquet(interim / "events.parquet")
    params = parse_params({**RAW_PARAMS, "paths": {"interim": str(interim),
                                                   "scored": str(tmp_path / "data" / "scored")}})
    summary = stage.from_params(params, scored_at=SCORED_AT)
    end = data_end(env["leads"], env["events"])
    assert summary["as_of"] == end.isoformat()
    scored = pd.read_parquet(tmp_path / "data" / "scored" / "scored_leads.parquet")
    assert (scored["as_of"] == end).all() and len(scored) == summary["counts"]["scored"]
    assert (tmp_path / "data" / "scored" / "scored_leads.csv").exists()
    c = summary["counts"]
    assert c["input"] == len(env["leads"]) == c["scored"] + c["not_open"] and c["rejected"] == 0


def test_csv_only_output_is_its_own_previous_batch(env, tmp_path):
    out = tmp_path / "export" / "leads_scored.csv"
    one = run(env, tmp_path, as_of=AS_OF_1, out=out)
    two = run(env, tmp_path, as_of=AS_OF_2, out=out)
    assert not (tmp_path / "export" / "leads_scored.parquet").exists()
    assert (tmp_path / "export" / "leads_scored.rejects.csv").exists()
    csv = pd.read_csv(out, dtype=str, encoding="utf-8-sig")
    assert two["previous_batch"] == one["batch_id"] and (csv["movement"] != "new").any()


def test_mixed_extra_column_is_typed_as_a_whole_table_would_be():
    fs = FeatureSettings()
    leads = pd.DataFrame({
        "lead_id": pd.Series(["a", "b", "c", "d"], dtype="str"),
        "created_at": pd.Series([T0] * 4, dtype="datetime64[us]"),
        "tier": pd.Series(["1", "2", "gold", None], dtype="str"),
        "seats": pd.Series([" 5", "10", None, "7"], dtype="str"),
    })
    pinned, witness = scoring.pin_extra_types(leads, fs)
    assert witness.tolist() == [2]
    assert pinned["seats"].tolist()[:2] == [5.0, 10.0] and leads["seats"].iloc[0] == " 5"
    spine = pd.DataFrame({"lead_id": pd.Series(["a"], dtype="str"),
                          "as_of": pd.Series([AS_OF_1], dtype="datetime64[us]")})
    alone = build_features(spine, pinned.take([0]), None, fs)
    with_witness = build_features(spine, pinned.take([0, 2]), None, fs)
    whole = build_features(spine, pinned, None, fs)
    assert isinstance(whole["extra_tier"].dtype, pd.CategoricalDtype)
    assert not isinstance(alone["extra_tier"].dtype, pd.CategoricalDtype)  # the trap
    assert isinstance(with_witness["extra_tier"].dtype, pd.CategoricalDtype)
    assert with_witness["extra_seats"].tolist() == whole["extra_seats"].tolist() == [5.0]


def test_failed_write_is_a_failed_mlflow_run(env, tmp_path, monkeypatch):
    def die(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(scoring_io, "write_excel_csv", die)
    with pytest.raises(OSError):
        run(env, tmp_path, as_of=AS_OF_2)
    ml = tracking.mlflow()
    runs = ml.search_runs(experiment_names=[tracking.SCORING_EXPERIMENT],
                          order_by=["start_time DESC"], max_results=1)
    assert runs.iloc[0]["status"] == "FAILED"


def test_missing_fit_columns_stop_the_batch_unless_allowed(env, tmp_path):
    # the model's fit features came from job_title and budget: without them every lead would
    # be 'unknown' there, so the batch stops ...
    leads = write_csv(env["leads_raw"].drop(columns=["job_title", "budget"]),
                      tmp_path / "leads.csv")
    with pytest.raises(DataError, match="job_title, budget missing") as info:
        run(env, tmp_path, leads=leads)
    assert info.value.column == "job_title" and info.value.n_rows == len(env["leads_raw"])
    assert "--allow-missing" in str(info.value)
    assert not (tmp_path / "out").exists()
    # ... unless allowed: then the summary and the MLflow run say so
    summary = run(env, tmp_path, leads=leads, allow_missing=True)
    assert summary["missing_fit_columns"] == ["job_title", "budget"]
    tags = tracking.mlflow().get_run(summary["mlflow_run_id"]).data.tags
    assert tags["missing_fit_columns"] == "job_title, budget"
    full = run(env, tmp_path, out=tmp_path / "full")
    assert full["missing_fit_columns"] == []
    assert tracking.mlflow().get_run(full["mlflow_run_id"]).data.tags[
        "missing_fit_columns"] == "none"


def test_cli_allow_missing_flag(env, tmp_path):
    from pipeline.cli import app

    params = tmp_path / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(RAW_PARAMS), encoding="utf-8")
    leads = write_csv(env["leads_raw"].drop(columns=["budget"]), tmp_path / "leads.csv")
    args = ["score", "--params", str(params), "--leads", str(leads), "--as-of", "2025-10-01",
            "--out", str(tmp_path / "o")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "budget" in refused.output and "--allow-missing" in refused.output
    allowed = CliRunner().invoke(app, [*args, "--allow-missing"])
    assert allowed.exit_code == 0, allowed.output
    assert "missing fit column: budget" in allowed.output


def test_core_does_not_mutate_its_inputs(env):
    leads, events = env["leads"].copy(), env["events"].copy()
    scoring.score_open_leads(env["leads"], env["events"], env["bundle"], env["fs"], AS_OF_1,
                             chunk_size=100)
    pd.testing.assert_frame_equal(env["leads"], leads)
    pd.testing.assert_frame_equal(env["events"], events)
