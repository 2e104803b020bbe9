"""Capacity bands keep their promise in weekly use.

"SQL = 25 calls per week" means 25 leads *newly* qualifying per weekly scoring batch. The
bands are fitted on one synthetic sample (the train stage's weekly simulation of the
calibration leads); a later sample from another seed and period is then scored week by
week with the fitted model and bands, and the SQL band's new entries per week are counted
over its second half, when the open leads span every age as in real use. The capacity is
promised at the inflow projected to the training data's end (`bands.<set>.inflow: trend`), so
the later sample's entries are read at that inflow. Its batches whose outcome is known also
check every feasible min_conversion promise by its Wilson lower bound.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.weekly import simulate_batches, weekly_bands

ROOT = Path(__file__).resolve().parents[2]
CAPACITY = 25


def _sample(root: Path, seed: int, start: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipeline.stages import features as feature_stage
    from pipeline.stages import generate as generate_stage
    from pipeline.stages import ingest as ingest_stage
    from pipeline.synth import SynthSettings

    synth = SynthSettings(n_leads=4000, seed=seed, start=start, months=12)
    generate_stage.run(synth, root / "raw", workers=1)
    ingest_stage.run(root / "raw" / "leads.csv", root / "raw" / "events.csv", root / "interim",
                     root / "reports", now=pd.Timestamp(synth.end) + pd.Timedelta(days=1))
    return feature_stage.read_interim(root / "interim")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from pipeline.settings import parse_params
    from pipeline.stages import features as feature_stage
    from pipeline.stages import train as train_stage

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["tune"] = {"enabled": False}
    raw["bands"]["lifecycle"]["bands"][-1] = {"name": "SQL", "capacity_per_week": CAPACITY}
    params = parse_params(raw)
    snap, fs = feature_stage.feature_settings(params)
    leads, events = _sample(tmp_path_factory.mktemp("train"), 7, dt.date(2025, 1, 1))
    frame, meta, _ = feature_stage.run(leads, events, snap, fs)
    result = train_stage.run(frame, meta, params, None)
    pooled = result.bundle.bands["lifecycle"]
    weekly_bands(result, leads, events, fs, params.bands,
                             pd.Timestamp(meta["data_end"]))
    return result, fs, pooled


def _weekly_entries(bundle, fs, leads, events, weeks: int) -> pd.DataFrame:
    """Score the last `weeks` weekly batches (and the one before) of a sample; per week the
    open leads, SQL leads and new SQL entries."""
    from models.bands import apply_bands

    end = pd.Timestamp(leads["created_at"].max()).normalize()
    start = end - pd.Timedelta(days=7 * weeks)
    batches = simulate_batches(bundle, leads, events, fs, leads["lead_id"], end, 7,
                               start=start)
    batches["sql"] = apply_bands(batches["p"], bundle.bands["lifecycle"]) == "SQL"
    sql = batches.pivot_table(index="lead_id", columns="as_of", values="sql",
                              fill_value=False, aggfunc="any").astype(bool)
    new = sql.iloc[:, 1:].to_numpy() & ~sql.iloc[:, :-1].to_numpy()
    return pd.DataFrame({"open": batches.groupby("as_of").size().iloc[1:].to_numpy(),
                         "sql": sql.iloc[:, 1:].sum().to_numpy(),
                         "entries": new.sum(axis=0)}, index=sql.columns[1:])


def test_sql_new_entries_per_week_match_the_capacity_on_a_later_sample(fitted, tmp_path):
    result, fs, _ = fitted
    later_leads, later_events = _sample(tmp_path, 11, dt.date(2026, 1, 1))
    weeks = _weekly_entries(result.bundle, fs, later_leads, later_events, weeks=26)
    mean = float(weeks["entries"].mean())
    # the capacity is promised at the expected inflow; the later sample has its own
    created = pd.to_datetime(later_leads["created_at"])
    inflow = float((created > weeks.index.min() - pd.Timedelta(days=7)).sum() / len(weeks))
    expected = result.bundle.bands["lifecycle"].weekly["expected_leads_per_week"]
    at_expected = mean * expected / inflow
    print(f"later sample: {mean:.1f} new SQL entries/week at {inflow:.0f} leads/week, "
          f"{at_expected:.1f} at the expected {expected:.0f}; {weeks['sql'].mean():.1f} in SQL")
    assert abs(at_expected - CAPACITY) <= 0.2 * CAPACITY, weeks.to_string()
    # the stock of SQL leads is what the pooled-row reading matched, and it is larger
    assert weeks["sql"].mean() > 1.2 * mean


def test_every_feasible_promise_clears_its_lower_bound_in_batch_scoring_of_a_later_sample(
        fitted, tmp_path):
    """Weekly batches of a later sample whose 90-day outcome is known, labelled as in
    training: every min_conversion band the fit could make feasible converts with a Wilson
    95 % lower bound at or above its promise."""
    from features.snapshots import outcome_labels
    from models.bands import band_table

    result, fs, _ = fitted
    leads, events = _sample(tmp_path, 13, dt.date(2026, 1, 1))
    end = pd.Timestamp(leads["created_at"].max()).normalize() - pd.Timedelta(days=90)
    rows = simulate_batches(result.bundle, leads, events, fs, leads["lead_id"], end, 7,
                            start=end - pd.Timedelta(days=7 * 12))
    y = outcome_labels(rows, leads, 90)
    checked = 0
    for name, fitted_bands in result.bundle.bands.items():
        feasible = {b.name: b.feasible for b in fitted_bands.bands}
        for band in fitted_bands.bands:
            if band.target_kind == "min_conversion" and not band.feasible:  # too few leads
                assert "lower bound plus the margin of a later batch" in band.message
        for row in band_table(rows["p"].to_numpy(), y, fitted_bands):
            if row["promised_conversion"] is None or not feasible[row["name"]]:
                continue
            checked += 1
            print(f"{name} {row['name']}: {row['rate']:.3f} (n={row['n']}), "
                  f"Wilson low {row['ci_low']:.3f}, promise {row['promised_conversion']}")
            assert row["n"] >= 100, (name, row)
            assert row["ci_low"] >= row["promised_conversion"], (name, row)
    # at 4,000 leads the later-batch margin leaves only MQL feasible (warm and hot say why)
    assert checked >= 1


def test_the_fit_records_simulated_weekly_entries(fitted):
    result, _, pooled = fitted
    sql = result.bundle.bands["lifecycle"].bands[-1]
    stats = sql.weekly_entries
    weekly = result.bundle.bands["lifecycle"].weekly
    # the generator's inflow grows: the capacity is sized for the inflow projected to the
    # data's end (trend of the training + calibration leads), above the calibration window's
    assert weekly["inflow"] == "trend"
    assert weekly["expected_leads_per_week"] > weekly["inflow_per_week"]
    assert stats["target"] == pytest.approx(
        CAPACITY * weekly["inflow_per_week"] / weekly["expected_leads_per_week"])
    assert stats["target"] < CAPACITY
    assert stats["p10"] <= stats["mean"] <= stats["p90"]
    assert abs(stats["mean"] - stats["target"]) <= 0.2 * stats["target"]
    assert result.summary["bands"]["lifecycle"]["bands"][-1]["weekly_entries"] == stats
    assert weekly["statistic"] == "mean" and weekly["simulated_weeks"] >= 5
    # the calibration leads only: never the test split
    n_cal = result.predictions.query("split == 'calibration'")["lead_id"].nunique()
    assert weekly["leads"] == n_cal
    # counting new entries, not pooled rows, raises the cutoff
    assert sql.min_propensity > pooled.bands[-1].min_propensity
    assert np.isclose(sql.min_propensity * 100, round(sql.min_propensity * 100))


def test_bands_json_and_the_report_show_the_weekly_entries(fitted):
    from pipeline.report import weekly_entry_notes
    from pipeline.settings import parse_params
    from pipeline.stages.evaluate import bands_report

    result, _, _ = fitted
    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    report = bands_report(result.bundle, result.predictions, params.bands)["band_sets"]
    lifecycle = report["lifecycle"]
    stats = lifecycle["bands"][-1]["weekly_entries"]
    assert stats == result.bundle.bands["lifecycle"].bands[-1].weekly_entries
    assert lifecycle["weekly_simulation"]["statistic"] == "mean"
    assert report["temperature"]["weekly_simulation"] is None  # no capacity band: not simulated
    notes = weekly_entry_notes(lifecycle)
    sim = lifecycle["weekly_simulation"]
    assert notes[-2] == (f"SQL: {stats['mean']:.1f} leads newly enter per week in simulated "
                         f"weekly scoring of the calibration leads (p10 {stats['p10']:.1f}, "
                         f"p90 {stats['p90']:.1f}; capacity {CAPACITY}, "
                         f"{stats['target']:.1f} at the simulated inflow of "
                         f"{sim['inflow_per_week']:.0f} leads per week against "
                         f"{sim['expected_leads_per_week']:.0f} expected (trend)).")
    assert weekly_entry_notes(report["temperature"]) == []
