"""Leakage audit as the user sees it: outcome vocabulary (whole words, English and Russian,
user-extendable), one entry per source column, excluded/safe columns with reasons in the
JSON, CLI and HTML report, and the share of activity logged after the outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.audit import (
    VOCABULARY_FILE,
    OutcomeVocabulary,
    activity_after_outcome,
    leakage_audit,
    words,
)
from features.settings import FeatureSettings, SettingsError
from pipeline.report import ReportContext, _leakage_section

N = 1200


@pytest.fixture(scope="module")
def vocab() -> OutcomeVocabulary:
    return OutcomeVocabulary.load()


def test_words_split_on_non_letters_and_camel_case():
    assert words("filter_results") == ["filter", "results"]
    assert words("LeadStatus 2024") == ["lead", "status"]
    assert words("Сделка-закрыта") == ["сделка", "закрыта"]


@pytest.mark.parametrize("text, found", [
    ("Closed Won", ["closed", "won"]),
    ("Will revert after reading the email", ["will revert"]),
    ("churned", ["churned"]),
    ("Оплачено", ["оплачено"]),
    ("Оплата получена", ["оплата"]),
    ("Договор подписан", ["договор", "подписан"]),
    ("Отказ клиента", ["отказ", "клиента"]),
    ("Сделка выиграна", ["сделка", "выиграна"]),
    ("wonderful", []),            # whole words: no "won"
    ("filter_results", []),
    ("Paid Search", []),           # a channel, not a payment
    ("paid_social", []),
    ("Lost to competitor", ["lost"]),
])
def test_value_words_whole_words_and_stems(vocab, text, found):
    assert sorted(vocab.value_words(text)) == sorted(found)


def test_name_words(vocab):
    assert vocab.name_words("Lead Status") == ["status"]
    assert vocab.name_words("deal_stage") == ["deal", "stage"]
    assert vocab.name_words("Статус сделки") == ["статус", "сделки"]
    assert vocab.name_words("filter_results") == []
    assert vocab.name_words("Last Activity") == []


def test_vocabulary_file_ships_both_languages():
    text = VOCABULARY_FILE.read_text(encoding="utf-8")
    for w in ("won", "refund*", "invoice*", "оплачено", "договор", "проигран", "закрыт"):
        assert f"\n{w}\n" in text, w


def _frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(N) < 0.3).astype(int)
    return pd.DataFrame({
        "label": y,
        # a custom outcome word the shipped vocabulary does not know, tied to the label
        "crm_flag": np.where(y == 1, np.where(rng.random(N) < 0.5, "gewonnen", "open"),
                             "open"),
        "filter_results": rng.choice(["many results", "none"], N),
        "Этап": np.where(y == 1, "Оплачено", rng.choice(["Новый", "Отказ"], N)),
    })


def test_user_words_extend_the_vocabulary():
    frame = _frame()
    plain = {c["column"]: c for c in leakage_audit(frame)["columns"]}
    assert plain["crm_flag"]["outcome_values"] == []
    s = FeatureSettings.from_params({"audit_outcome_words": ["gewonnen"]})
    ext = {c["column"]: c for c in leakage_audit(frame, settings=s)["columns"]}
    assert ext["crm_flag"]["outcome_values"] == ["gewonnen"]
    assert ext["crm_flag"]["outcome_words"] == ["gewonnen"]
    assert any("values name an outcome: 'gewonnen'" in r for r in ext["crm_flag"]["reasons"])


def test_russian_values_and_name_flagged_filter_results_not():
    cols = {c["column"]: c for c in leakage_audit(_frame())["columns"]}
    ru = cols["Этап"]
    assert ru["suspect"] is True
    assert set(ru["outcome_words"]) == {"оплачено", "отказ"}
    assert ru["name_words"] == ["этап"]
    fr = cols["filter_results"]
    assert fr["suspect"] is False and fr["name_suggests_outcome"] is False
    assert fr["outcome_values"] == [] and fr["name_words"] == []


@pytest.mark.parametrize("bad", ["won", [""], [3], {"a": 1}])
def test_outcome_words_setting_validated(bad):
    with pytest.raises(SettingsError, match="audit_outcome_words"):
        FeatureSettings.from_params({"audit_outcome_words": bad})


def test_excluded_and_safe_listed_with_reasons():
    frame = _frame()
    s = FeatureSettings(exclude=("Этап",), safe=("crm_flag",))
    audit = leakage_audit(frame, settings=s)
    assert [x["column"] for x in audit["suspects"]] == []
    rev = {r["column"]: r for r in audit["reviewed"]}
    assert set(rev) == {"Этап", "crm_flag"}
    assert rev["Этап"]["status"] == "excluded"
    assert rev["Этап"]["reason"].startswith("listed in features.exclude")
    assert "evidence:" in rev["Этап"]["reason"] and "оплачено" in rev["Этап"]["reason"].lower()
    assert rev["crm_flag"]["status"] == "safe"
    cols = {c["column"]: c for c in audit["columns"]}
    assert cols["filter_results"]["status"] == "ok"


# ---- activity after the outcome -------------------------------------------------------

def _leads_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    leads = pd.DataFrame({
        "lead_id": ["a", "b", "c", "d", "e"],
        "converted": [1, 0, 0, 1, 0],
        "converted_at": pd.to_datetime(["2025-01-10", "2025-01-01", None, None, None]),
        "lost_at": pd.to_datetime([None, "2025-01-05", None, None, "2025-03-01"]),
    })
    events = pd.DataFrame({
        "lead_id": ["a", "a", "a", "b", "b", "c", "d", "zz"],
        "timestamp": pd.to_datetime(["2025-01-01", "2025-01-10", "2025-01-11", "2025-01-04",
                                     "2025-01-06", "2025-02-01", "2025-02-01", "2025-01-01"]),
        "event_type": ["x"] * 8,
    })
    return leads, events


def test_activity_after_outcome_counts():
    leads, events = _leads_events()
    before = leads.copy()
    act = activity_after_outcome(leads, events)
    pd.testing.assert_frame_equal(leads, before)
    # a: converted 01-10 -> events 01-10 (at) and 01-11 count, 01-01 not; b: lost 01-05
    # (its converted_at is ignored: converted == 0) -> 01-06 counts; e: lost, no events
    assert act["leads_with_outcome_date"] == 3
    assert act["leads_with_events"] == 2
    assert (act["events"], act["events_at_or_after"]) == (5, 3)
    assert act["share"] == 0.6
    assert act["by_outcome"]["converted"]["share"] == pytest.approx(0.6667)
    assert act["by_outcome"]["lost"]["events_at_or_after"] == 1
    assert act["by_outcome"]["lost"]["leads_with_outcome_date"] == 2


def test_activity_after_outcome_without_events_or_dates():
    leads, _ = _leads_events()
    assert activity_after_outcome(leads, None)["share"] is None
    act = activity_after_outcome(leads[["lead_id"]], _leads_events()[1])
    assert act["leads_with_outcome_date"] == 0 and act["events"] == 0


# ---- the features stage: one entry per source column, CLI table, report ---------------

@pytest.fixture(scope="module")
def stage_audit(tmp_path_factory):
    from pipeline.settings import parse_params
    from pipeline.stages import features as stage
    from pipeline.stages import generate as generate_stage
    from pipeline.stages import ingest as ingest_stage
    from pipeline.synth import SynthSettings

    root: Path = tmp_path_factory.mktemp("audit")
    synth = SynthSettings(n_leads=1500, seed=5, start=dt.date(2025, 1, 1), months=8)
    generate_stage.run(synth, root / "raw", workers=1)
    leads = pd.read_csv(root / "raw" / "leads.csv")
    rng = np.random.default_rng(1)
    conv = leads["converted"].astype(int).to_numpy()
    leads["Deal Stage"] = np.where(conv == 1, "Closed Won", rng.choice(["Open", "Nurture"],
                                                                      len(leads)))
    leads["Visits"] = rng.integers(0, 9, len(leads))
    leads.to_csv(root / "raw" / "leads.csv", index=False)
    ingest_stage.run(root / "raw" / "leads.csv", root / "raw" / "events.csv",
                     root / "interim", root / "reports",
                     now=pd.Timestamp(synth.end) + pd.Timedelta(days=1))
    raw = __import__("yaml").safe_load(Path("params.yaml").read_text())
    feats = dict(raw.get("features") or {})
    raw["features"] = {**feats, "exclude": [*(feats.get("exclude") or []), "Deal Stage"]}
    params = parse_params(raw)
    snap, fs = stage.feature_settings(params)
    lead_t, events = stage.read_interim(root / "interim")
    frame, meta, audit = stage.run(lead_t, events, snap, fs)
    return stage, meta, audit


def test_one_entry_per_source_column(stage_audit):
    _, meta, audit = stage_audit
    names = [c["column"] for c in audit["columns"]]
    assert len(names) == len(set(names))
    assert "Visits" in names and "extra_visits" not in names
    assert "extra_visits" in meta["features"]
    visits = {c["column"]: c for c in audit["columns"]}["Visits"]
    assert visits["features"] == ["extra_visits"]
    # a contract fit column is listed once, under its own name, with the features it feeds
    assert "source" in names and "fit_source" not in names and "fit_source" in meta["features"]
    assert {c["column"]: c for c in audit["columns"]}["source"]["features"] == ["fit_source"]


def test_stage_reports_excluded_and_activity(stage_audit):
    stage, meta, audit = stage_audit
    rev = {r["column"]: r for r in audit["reviewed"]}
    assert rev["Deal Stage"]["status"] == "excluded"
    assert any("'Closed Won'" in r for r in rev["Deal Stage"]["reasons"])
    act = audit["activity_after_outcome"]
    assert act["leads_with_outcome_date"] > 0 and act["events"] > 0
    assert 0 <= act["share"] <= 1
    summary = stage.summary(meta, audit)
    row = next(r for r in summary["leakage"] if r["column"] == "Deal Stage")
    assert row["status"] == "excluded" and "features.exclude" in row["why"]
    console = Console(record=True, width=160)
    console.print(stage.render(summary))
    text = console.export_text()
    assert "Deal Stage" in text and "excluded" in text and "features.exclude" in text
    assert "[]" not in text and "{'" not in text
    assert "Activity after the outcome:" in text and f"{act['share']:.0%}" in text


def test_report_shows_excluded_columns_and_activity(stage_audit):
    _, _, audit = stage_audit
    ctx = ReportContext(title="t", subtitle="", metrics={}, curves={}, leakage=audit)
    html = _leakage_section(ctx)
    assert "<h3>Excluded and reviewed-safe columns</h3>" in html
    assert "<td>Deal Stage</td><td>excluded</td>" in html
    assert "No suspects found" not in html
    assert "Activity after the outcome:" in html and "log keeps recording" in html
    n_ex = sum(r["status"] == "excluded" for r in audit["reviewed"])
    assert f"{n_ex} excluded from the model" in html
