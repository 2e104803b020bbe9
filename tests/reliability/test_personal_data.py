"""Personal data is recognised by content, not by name, and never leaves ingest as a feature.

The pipeline test plants emails, phones and person names under innocent column names
(`work_email`, `mobile_phone`, `contact`, `notes`) in a generated export, runs the real stages
in a temporary project (ingest -> features -> train -> evaluate -> register -> score, with
its own MLflow store) and scans every file written for any planted value: none may be found,
whether ingest refuses the columns (the default) or drops / hashes them as configured.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features import pii
from features.fit import extra_columns, fit_features
from features.settings import FeatureSettings
from pipeline.contract import validate_leads
from pipeline.errors import ConfigError, DataError
from pipeline.stages import ingest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path("/work/shared/data")

# Markers only planted values carry (a masked value keeps none of them).
EMAIL_MARK = "plantedx"
NAME_MARK = "quorpel"
PHONE_RE = re.compile(rb"99\D{0,3}871\D{0,3}\d{4}\D{0,3}55")
_SYLLABLES = ("ka", "ro", "vin", "mel", "dra", "sto", "lu", "ben", "tia", "gor", "nes", "pha")


def _first_name(i: int) -> str:
    a, b, c = i % 12, (i // 12) % 12, (i // 144) % 12
    return (_SYLLABLES[a] + _SYLLABLES[b] + _SYLLABLES[c]).capitalize()


def planted(n: int) -> pd.DataFrame:
    """Personal data under innocent names: emails, phones, full names, notes with emails."""
    i = np.arange(n)
    return pd.DataFrame({
        "work_email": [f"qq{k}{EMAIL_MARK}@corpmail.example" for k in i],
        "mobile_phone": [f"+99 871 {k % 10000:04d} 55" for k in i],
        "contact": [f"{_first_name(k)} Quorpel{_SYLLABLES[k % 12]}" for k in i],
        "notes": [f"met at fair, write to zz{k}{EMAIL_MARK}@mailbox.example" if k % 3 == 0
                  else "asked for pricing" for k in i],
    })


def leaks(root: Path, skip: Path | None = None) -> list[str]:
    """Files under `root` (except `skip`) holding a planted value: every file's bytes
    (pickles, sqlite, json, csv, html, yaml...), Parquet files read back as text."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or (skip is not None and path.is_relative_to(skip)):
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            text = " ".join(map(str, frame.columns)) + " " + " ".join(
                frame.astype("string").fillna("").to_numpy().ravel().tolist())
            data = data + text.encode("utf-8")
        lower = data.lower()
        if EMAIL_MARK.encode() in lower or NAME_MARK.encode() in lower or PHONE_RE.search(data):
            found.append(str(path.relative_to(root)))
    return found


# ------------------------------------------------------------------ the detector


def _series(values: list[str], repeat: int = 1) -> pd.Series:
    return pd.Series(values * repeat, dtype="str")


@pytest.mark.parametrize(("values", "kind"), [
    (["ann.lee@acme.com", "bo@x.org", "c.d@mail.ru", "dan@example.co.uk"], "email"),
    (["+1 162 555 0199", "(030) 1234567", "8 (913) 123-45-67", "4915112345678"], "phone"),
    (["see ann.lee@acme.com", "call me", "no", "later", "ok"] * 4, "email"),
])
def test_emails_and_phones_are_found_by_content(values: list[str], kind: str) -> None:
    hit = pii.personal_kind(_series(values), "innocent")
    assert hit is not None and hit.kind == kind and hit.by == "content"
    assert "ann.lee" not in hit.example and "0199" not in hit.example


def test_person_names_are_found_by_content_and_by_header() -> None:
    full = _series([f"{_first_name(k)} {s}" for k in range(60)
                    for s in ("Garcia", "Petrov")][:80])
    hit = pii.personal_kind(full, "owner")
    assert hit is not None and (hit.kind, hit.by) == ("name", "content")
    cyrillic = _series([f"{n} {s}" for n in ("Иван", "Олег", "Анна", "Пётр", "Юлия", "Глеб")
                        for s in ("Петров", "Смирнов", "Кузнецов", "Попов", "Соколов")])
    assert pii.personal_kind(cyrillic, "x").kind == "name"
    first = _series([_first_name(k) for k in range(40)], repeat=5)  # single words, repeated
    assert pii.personal_kind(first, "x") is None
    assert pii.personal_kind(first, "Contact First Name").kind == "name"
    assert pii.personal_kind(first, "Фамилия").kind == "name"


@pytest.mark.parametrize(("column", "values"), [
    ("industry", ["software", "manufacturing", "professional_services", "retail"]),
    ("city", ["New York", "San Francisco", "Berlin", "London", "Mumbai", "Los Angeles"]),
    ("country", ["United States", "Germany", "India", "United Kingdom", "France"]),
    ("job_title", ["Marketing Manager", "Head of Sales", "Chief Executive Officer",
                   "Data Analyst", "Software Engineer", "Sales Director", "Founder"]),
    ("company_size", ["1-10", "11-50", "201-1000", "1001-5000"]),
    ("last_contact", ["2025-01-02", "2025-03-04 10:00:00", "02/03/2025", "12.11.2024"]),
    ("revenue", ["1234567.89", "1,234,567", "99000.5", "12000000.25"]),
    ("lead_number", ["660737", "660728", "660727", "660719"]),
    ("Do Not Email", ["Yes", "No", "No", "No"]),
    ("contact", ["Email", "Phone", "SMS", "None"]),
])
def test_ordinary_categories_are_not_personal(column: str, values: list[str]) -> None:
    assert pii.personal_kind(_series(values, repeat=30), column) is None


def test_unique_job_titles_are_not_names() -> None:
    roles = ("Manager", "Director", "Engineer", "Analyst", "Consultant")
    areas = ("Marketing", "Sales", "Finance", "Data", "Product", "Operations", "Research")
    titles = _series([f"{lvl} {a} {r}" for lvl in ("Senior", "Junior", "Lead")
                      for a in areas for r in roles])
    assert titles.is_unique and pii.personal_kind(titles, "title") is None


def test_real_exports_have_no_false_positives() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared data folder missing")
    for path in (SHARED / "xeducation" / "Leads.csv", SHARED / "directmail" / "DirectMail.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        assert pii.detect_personal(frame) == [], path


def test_masking_and_hashing() -> None:
    assert pii.mask_text("ann.lee@acme.com", "email") == "a***@acme.com"
    assert pii.mask_text("+1 162 555 0199", "phone") == "***99"
    assert pii.mask_text("Ann Lee", "name") == "A***"
    values = pd.Series(["ann@x.org", None, "ann@x.org"], dtype="str")
    hashed = pii.hash_values(values, "salt")
    assert hashed[0] == hashed[2] and len(hashed[0]) == 16 and pd.isna(hashed[1])
    assert pii.hash_values(values, "other")[0] != hashed[0]
    assert values[0] == "ann@x.org"  # input untouched


def test_fit_features_never_pass_personal_columns_through() -> None:
    leads = pd.concat([pd.DataFrame({"lead_id": [f"L{k}" for k in range(60)],
                                     "plan": ["a", "b", "c"] * 20}), planted(60)], axis=1)
    fs = FeatureSettings()
    assert extra_columns(leads, fs) == ["plan"]
    assert [c for c in fit_features(leads, fs).columns if c.startswith("extra_")] == ["extra_plan"]


# ------------------------------------------------------------- ingest and rejects


def _export(n: int = 80) -> pd.DataFrame:
    frame = pd.DataFrame({
        "lead_id": [f"L{k}" for k in range(n)],
        "created_at": ["2025-01-01"] * n,
        "converted": ["0", "1"] * (n // 2),
        "email": [f"person{k}@acme.com" for k in range(n)],
        "company": ["=HYPERLINK(\"http://evil\")", "+cmd|' /C calc'!A0"] + ["Acme"] * (n - 2),
    })
    frame["created_at"] = frame["created_at"].where(np.arange(n) >= 3, "not a date")
    frame = pd.concat([frame, planted(n)], axis=1)
    frame.index = pd.RangeIndex(2, 2 + n)
    return frame


def test_rejects_mask_personal_columns_and_keep_the_rest() -> None:
    _, rejects = validate_leads(_export(), "leads.csv")
    assert rejects["source_row"].tolist() == [2, 3, 4]
    assert rejects["email"].tolist() == ["p***@acme.com"] * 3
    assert rejects["work_email"].tolist() == ["q***@corpmail.example"] * 3
    assert rejects["mobile_phone"].tolist() == ["***55"] * 3
    assert rejects["contact"].str.endswith("***").all()
    assert rejects["lead_id"].tolist() == ["L0", "L1", "L2"]  # not personal: kept


def test_ingest_refuses_personal_columns_by_default(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    _export().to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        ingest.run(path, None, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    message = str(err.value)
    for column in ("work_email", "mobile_phone", "contact", "notes"):
        assert f"'{column}'" in message
    assert "ingest.personal_data: drop" in message and "`email`" in message
    assert err.value.column == "work_email" and err.value.n_rows == 80
    assert EMAIL_MARK not in message and NAME_MARK not in message.lower()
    assert not PHONE_RE.search(message.encode())
    assert not (tmp_path / "interim").exists()


def test_ingest_drops_them_and_neutralises_rejects(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    _export().to_csv(path, index=False)
    ingest.run(path, None, tmp_path / "interim", tmp_path / "reports", now="2026-01-01",
               personal=ingest.PersonalData("drop"))
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert "work_email" not in leads and "notes" not in leads and "email" in leads
    text = (tmp_path / "interim" / "rejects_leads.csv").read_text(encoding="utf-8")
    rejects = pd.read_csv(tmp_path / "interim" / "rejects_leads.csv", dtype=str)
    assert rejects["company"].tolist()[:2] == ["'=HYPERLINK(\"http://evil\")",
                                               "'+cmd|' /C calc'!A0"]
    assert "person0@acme.com" not in text and "p***@acme.com" in text
    assert leaks(tmp_path, skip=path) == []


def test_ingest_hashes_them_into_id_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    path = tmp_path / "leads.csv"
    _export().to_csv(path, index=False)
    monkeypatch.delenv(ingest.SALT_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match=ingest.SALT_VARIABLE):
        ingest.PersonalData.from_params({"personal_data": "hash"})
    monkeypatch.setenv(ingest.SALT_VARIABLE, "s3cret")
    personal = ingest.PersonalData.from_params({"personal_data": "hash"})
    ingest.run(path, None, tmp_path / "interim", tmp_path / "reports", now="2026-01-01",
               personal=personal)
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert "_work_email_hash" in leads and "work_email" not in leads
    assert leads["_work_email_hash"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert leads["_work_email_hash"].is_unique
    assert extra_columns(leads, FeatureSettings()) == []  # company is free text
    assert leaks(tmp_path, skip=path) == []


def test_a_wrong_guess_can_be_overridden() -> None:
    raw = pd.DataFrame({"account_ref": [f"+99 871 {k:04d} 55" for k in range(10)]})
    personal = ingest.PersonalData("error", not_personal=("account_ref",))
    out, done = ingest.screen_personal(raw, "x.csv", personal)
    assert done == {} and out is raw


# ------------------------------------------------------------------ whole pipeline


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project copy with a generated export holding planted personal data."""
    from pipeline.stages.generate import run, settings_from_params

    work = tmp_path_factory.mktemp("pii") / "project"
    work.mkdir()
    for name in ("params.yaml", "rules.yaml"):
        shutil.copy2(ROOT / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["generate"]["leads"] = 3000
    params["train"]["tune"]["enabled"] = False
    params["train"]["lightgbm"]["n_estimators"] = 200
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(settings_from_params(leads=3000, seed=7), work / "data" / "raw")
    leads = pd.read_csv(work / "data" / "raw" / "leads.csv", dtype=str)
    pd.concat([leads, planted(len(leads))], axis=1).to_csv(
        work / "data" / "raw" / "leads.csv", index=False)
    yield work


def _run_pipeline(work: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    from pipeline.settings import load_params
    from pipeline.stages import evaluate, features, register, score, train

    run_dir = work.parent / mode
    shutil.copytree(work, run_dir)
    monkeypatch.chdir(run_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{run_dir / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv(ingest.SALT_VARIABLE, "a-long-secret-salt")
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["ingest"] = {**(raw.get("ingest") or {}), "personal_data": mode}
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params("params.yaml")
    if mode == "error":
        with pytest.raises(DataError, match="work_email"):
            ingest.from_params(params)
        return run_dir
    ingest.from_params(params)
    features.from_params(params)
    train.from_params(params)
    evaluate.from_params(params)
    register.from_params(params)
    score.from_params(params, progress=False)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["error", "drop", "hash"])
def test_no_planted_value_reaches_any_output(project: Path, mode: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run_pipeline(project, mode, monkeypatch)
    raw_dir = run_dir / "data" / "raw"
    written = [p for p in run_dir.rglob("*") if p.is_file() and not p.is_relative_to(raw_dir)]
    if mode == "error":
        assert not (run_dir / "data" / "interim").exists()
    else:
        names = {p.relative_to(run_dir).as_posix() for p in written}
        assert {"data/interim/leads.parquet", "reports/data_quality.json",
                "reports/leakage_audit.json", "reports/model_report.html",
                "data/scored/scored_leads.csv", "mlflow.db"} <= names
        assert any(n.endswith("input_example.json") for n in names), sorted(names)[:50]
        assert any(n.endswith("bundle.joblib") for n in names)
        meta = pd.read_json(run_dir / "data" / "features" / "meta.json", typ="series")
        assert not [f for f in meta["features"] if any(
            key in f for key in ("work_email", "mobile_phone", "contact", "notes"))]
    assert leaks(run_dir, skip=raw_dir) == []
    assert PHONE_RE.search((raw_dir / "leads.csv").read_bytes())  # the scan can see them
    if mode == "hash":
        leads = pd.read_parquet(run_dir / "data" / "interim" / "leads.parquet")
        assert leads["_work_email_hash"].str.fullmatch(r"[0-9a-f]{16}").all()
        audit = pd.read_json(run_dir / "reports" / "leakage_audit.json", typ="series")
        assert not [c for c in audit["columns"] if c["column"].startswith("_")]
    if mode != "error":
        # The contract's own personal columns stay in the interim leads table only.
        assert contract_values_outside_interim(run_dir, written) == {}


def contract_values_outside_interim(run_dir: Path, written: list[Path]) -> dict[str, int]:
    leads = pd.read_csv(run_dir / "data" / "raw" / "leads.csv", dtype=str)
    full = (leads["first_name"] + " " + leads["last_name"]).dropna()
    values = {v.encode() for c in (leads["email"], leads["phone"], full)
              for v in c.dropna().sample(200, random_state=1)}
    hits = {}
    for path in written:
        if path == run_dir / "data" / "interim" / "leads.parquet":
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            data += " ".join(frame.astype("string").fillna("").to_numpy().ravel()).encode()
        n = sum(v in data for v in values)
        if n:
            hits[str(path.relative_to(run_dir))] = n
    return hits


def test_the_scan_finds_a_planted_value(tmp_path: Path) -> None:
    """The scanner itself: a leak in a pickle, a parquet or a json is found."""
    import joblib

    joblib.dump({"levels": ["qq1plantedx@corpmail.example"]}, tmp_path / "m.joblib")
    pd.DataFrame({"x": ["+99 871 0001 55"]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "e.json").write_text('{"v": "Kavin quorpelka"}')
    (tmp_path / "ok.json").write_text('{"v": "q***@corpmail.example"}')
    assert leaks(tmp_path) == ["a.parquet", "e.json", "m.joblib"]


def test_register_refuses_a_model_whose_vocabulary_holds_personal_data() -> None:
    from types import SimpleNamespace

    from pipeline.stages.register import refuse_personal

    emails = [f"qq{k}{EMAIL_MARK}@corpmail.example" for k in range(20)]
    bundle = SimpleNamespace(categories={"fit_industry": ["software", "retail", "unknown"],
                                         "extra_work_email": [*emails, "other", "unknown"]})
    example = pd.DataFrame({"fit_industry": ["software"], "extra_work_email": ["other"]})
    with pytest.raises(DataError, match=r"extra_work_email \(email\)") as err:
        refuse_personal(bundle, example, "models/bundle.joblib")
    assert EMAIL_MARK not in str(err.value)
    bundle.categories.pop("extra_work_email")
    refuse_personal(bundle, example.drop(columns="extra_work_email"), "models/bundle.joblib")
    phones = pd.DataFrame({"extra_x": [1.0], "extra_phone_like": ["+99 871 0001 55"] * 1})
    with pytest.raises(DataError, match="extra_phone_like"):
        refuse_personal(SimpleNamespace(categories={}), phones, "b.joblib")


def test_the_cli_refuses_with_a_clean_message(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = tmp_path / "leads.csv"
    _export().to_csv(path, index=False)
    monkeypatch.chdir(tmp_path)
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["ingest", "--leads", str(path)])
    assert result.exit_code == 2, result.output
    assert "work_email" in result.output and "Traceback" not in result.output
    assert EMAIL_MARK not in result.output


def test_a_source_config_refuses_personal_columns_by_content() -> None:
    """Plain-digit phones (which would read as numbers) and person names under an
    unmapped column with role fit, or exclude (kept in the interim table)."""
    from pipeline.sources import Export, map_export, parse_source, type_columns

    n = 40
    frame = pd.DataFrame({
        "ID": [str(k) for k in range(n)],
        "Created": ["2024-02-01"] * n,
        "Status": ["won", "lost"] * (n // 2),
        "Handy": [f"7913{k:07d}" for k in range(n)],
        "Verantwortlich": [f"{_first_name(k)} Quorpelsen" for k in range(n)],
    })
    frame.index = pd.RangeIndex(2, 2 + n)
    for column, role, kind in (("Handy", "fit", "phone"), ("Verantwortlich", "exclude", "name")):
        cfg = {
            "leads": {"path": "leads.csv", "map": {"lead_id": "ID"},  # lead-level
                      "roles": {c: {"role": "ignore"} for c in ("Created", "Handy",
                                                                "Verantwortlich")
                                if c != column} | {column: {"role": role,
                                                            "reason": "as exported"}}},
            "outcome": {"column": "Status", "positive": ["won"], "negative": ["lost"]},
        }
        parsed = parse_source(cfg)
        mapped = map_export(parsed, Export(frame))
        with pytest.raises(DataError, match=rf"'{column}' \(role {role}\) holds") as err:
            type_columns(parsed, mapped.leads, mapped.columns)
        assert err.value.column == column and NAME_MARK not in str(err.value).lower()
        assert "7913000" not in str(err.value)
        assert kind.replace("name", "first_name") in str(err.value)


def test_email_ids_are_hashed_in_place_in_leads_and_events(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"qq{k}{EMAIL_MARK}@corpmail.example" for k in range(30)]
    pd.DataFrame({"lead_id": ids, "created_at": ["2025-01-01"] * 30,
                  "converted": ["0", "1", "0"] * 10}).to_csv(tmp_path / "leads.csv", index=False)
    pd.DataFrame({"lead_id": ids[:10], "timestamp": ["2025-01-02"] * 10,
                  "event_type": ["site_visit"] * 10}).to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(DataError, match="'lead_id' \\(email addresses"):
        ingest.run(tmp_path / "leads.csv", tmp_path / "events.csv", tmp_path / "i",
                   tmp_path / "r", now="2026-01-01")
    monkeypatch.setenv(ingest.SALT_VARIABLE, "s3cret")
    counts = ingest.run(tmp_path / "leads.csv", tmp_path / "events.csv", tmp_path / "i",
                        tmp_path / "r", now="2026-01-01",
                        personal=ingest.PersonalData.from_params({"personal_data": "hash"}))
    assert counts["events"]["rows_clean"] == 10  # the events still find their leads
    leads = pd.read_parquet(tmp_path / "i" / "leads.parquet")
    events = pd.read_parquet(tmp_path / "i" / "events.parquet")
    assert leads["lead_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert set(events["lead_id"]) <= set(leads["lead_id"])
    assert leaks(tmp_path / "i") == [] and leaks(tmp_path / "r") == []
