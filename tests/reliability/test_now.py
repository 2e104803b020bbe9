"""`ingest.now` (the export moment after which dates are typos) defaults to the data's own
end for historical data, and `data_quality.json` says where it came from (`now_source`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from pipeline.contract import utc_now
from pipeline.readers import ReadOptions
from pipeline.stages import ingest


def write_export(folder: Path, created: list[str], events: list[str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    leads = folder / "leads.csv"
    leads.write_text("lead_id,created_at,converted\n" + "".join(
        f"L{i:04d},{c},0\n" for i, c in enumerate(created)), encoding="utf-8")
    ev = folder / "events.csv"
    ev.write_text("lead_id,timestamp,event_type\n" + "".join(
        f"L{i:04d},{t},site_visit\n" for i, t in enumerate(events)), encoding="utf-8")
    return leads, ev


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "data_quality.json").read_text())


def test_a_historical_export_is_judged_by_its_own_end(tmp_path: Path, caplog) -> None:
    leads, events = write_export(tmp_path / "raw", ["2024-03-01", "2024-03-05", "2024-03-09"],
                                 ["2024-03-02 10:00:00", "2024-03-06 11:00:00",
                                  "2024-03-20 09:30:00"])
    with caplog.at_level(logging.INFO):
        ingest.run(leads, events, tmp_path / "interim", tmp_path / "reports")
    rep = report(tmp_path)
    assert (rep["now"], rep["now_source"]) == ("2024-03-20T09:30:00", "data end")
    assert "now_source: data end" in caplog.text


def test_configured_now_wins(tmp_path: Path) -> None:
    leads, events = write_export(tmp_path / "raw", ["2024-03-01"], ["2024-03-02 10:00:00"])
    ingest.run(leads, events, tmp_path / "interim", tmp_path / "reports", now="2024-06-30")
    rep = report(tmp_path)
    assert (rep["now"], rep["now_source"]) == ("2024-06-30T00:00:00", "config")


def test_a_mistyped_year_is_still_rejected(tmp_path: Path) -> None:
    """The data end is robust: one lead typed a year late (2025-11-30, still before the
    clock) among 1,500 from 2024 does not move it, so that lead is rejected as after the
    export moment; judged by the wall clock it would have been kept and moved the data end."""
    days = pd.date_range("2024-01-01", periods=300, freq="D").strftime("%Y-%m-%d").tolist()
    created = (days * 5)[:1499] + ["2025-11-30"]      # a typo still before the clock
    leads, events = write_export(tmp_path / "raw", created, ["2024-05-01 10:00:00"])
    ingest.run(leads, events, tmp_path / "interim", tmp_path / "reports")
    rep = report(tmp_path)
    assert rep["now_source"] == "data end" and rep["now"] == "2024-10-26T00:00:00"
    assert rep["leads"]["rows_rejected"] == 1
    rejects = pd.read_csv(tmp_path / "interim" / "rejects_leads.csv")
    assert rejects["created_at"].tolist() == ["2025-11-30"]
    assert "after the export moment" in rejects["reason"].iloc[0]


def test_the_sources_of_the_moment() -> None:
    raw = pd.DataFrame({"lead_id": ["L1"], "created_at": ["2024-01-01"]})
    opts = ReadOptions()
    assert ingest.export_moment(None, pd.Timestamp("2024-02-01"), raw, None, opts) == (
        pd.Timestamp("2024-02-01"), "exported_at")
    assert ingest.export_moment("2024-03-01", pd.Timestamp("2024-02-01"), raw, None, opts) \
        == (pd.Timestamp("2024-03-01"), "config")
    assert ingest.export_moment(None, None, raw, None, opts) == (pd.Timestamp("2024-01-01"),
                                                                 "data end")
    future = pd.DataFrame({"lead_id": ["L1"], "created_at": ["2099-01-01"]})
    moment, source = ingest.export_moment(None, None, future, None, opts)
    assert source == "clock" and abs(moment - utc_now()) < pd.Timedelta(minutes=5)
    undated = pd.DataFrame({"lead_id": ["L1"], "created_at": ["not a date"]})
    assert ingest.export_moment(None, None, undated, None, opts)[1] == "clock"
    assert set(ingest.NOW_SOURCES) == {"config", "exported_at", "data end", "clock"}


@pytest.mark.parametrize("typed", ["1899-12-31", "0001-01-01"])
def test_dates_before_min_date_do_not_count(typed: str) -> None:
    raw = pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": ["2024-01-01", typed]})
    assert ingest.raw_data_end(raw, None, ReadOptions(), ReadOptions()) == pd.Timestamp(
        "2024-01-01")


def test_a_source_configuration_records_where_its_moment_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from pipeline import sources

    monkeypatch.chdir(Path(__file__).parents[2])  # the fixture config's paths are relative
    config = sources.load_source("sources/amocrm_fixture.yaml")
    assert config.exported_at is None
    ingest.run_source(config, tmp_path / "interim", tmp_path / "reports")
    rep = report(tmp_path)
    assert rep["now_source"] == "data end"
    assert pd.Timestamp(rep["now"]) < utc_now() - pd.Timedelta(days=1)
    ingest.run_source(replace(config, exported_at=pd.Timestamp(rep["now"]) + pd.Timedelta(days=1)),
                      tmp_path / "interim", tmp_path / "reports")
    assert report(tmp_path)["now_source"] == "exported_at"
