"""The training sample at scale (`features.snapshots.sample_spine`, `snapshots.sample_leads`):
whole leads, stratified by outcome with proportional allocation, deterministic, recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.settings import SettingsError, SnapshotSettings
from features.snapshots import sample_spine


def spine_of(n_leads: int, seed: int = 0) -> pd.DataFrame:
    """A spine-shaped frame: 1-4 snapshots per lead, about 12 % of leads converting (their
    last snapshot positive)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_leads):
        k = int(rng.integers(1, 5))
        converts = rng.random() < 0.12
        for j in range(k):
            rows.append({"lead_id": f"L{i:05d}", "as_of": pd.Timestamp("2025-01-01")
                         + pd.Timedelta(days=7 * j), "label": int(converts and j == k - 1)})
    return pd.DataFrame(rows).astype({"label": "int8"})


def lead_outcome(spine: pd.DataFrame) -> pd.Series:
    return spine.groupby("lead_id")["label"].max()


def test_small_spines_are_returned_whole():
    spine = spine_of(50)
    out, report = sample_spine(spine, 50)
    assert out is spine and not report["sampled"] and report["drawn_leads"] == 50


def test_whole_leads_proportional_per_outcome_and_weights_recorded():
    spine = spine_of(3_000, seed=1)
    out, report = sample_spine(spine, 1_000, seed=4)
    full, drawn = lead_outcome(spine), lead_outcome(out)
    assert report["sampled"] and report["drawn_leads"] == len(drawn)
    assert abs(len(drawn) - 1_000) <= 1  # rounding per stratum
    for name, flag in (("converted", 1), ("not_converted", 0)):
        stratum = report["strata"][name]
        assert stratum["leads"] == int((full == flag).sum())
        assert stratum["drawn_leads"] == int((drawn == flag).sum())
        assert stratum["drawn_leads"] == round(stratum["leads"] / 3)
        assert stratum["weight"] == pytest.approx(stratum["leads"] / stratum["drawn_leads"])
    # every snapshot of a drawn lead, none of the others
    counts = spine.groupby("lead_id").size()
    assert out.groupby("lead_id").size().equals(counts.loc[drawn.index])
    assert report["drawn_snapshots"] == len(out)
    assert drawn.mean() == pytest.approx(full.mean(), abs=0.002)  # base rate kept
    pd.testing.assert_frame_equal(  # the spine's order and rows, unchanged
        out, spine.loc[spine["lead_id"].isin(drawn.index)].reset_index(drop=True))


def test_the_same_leads_whatever_the_order_and_a_larger_sample_holds_a_smaller():
    spine = spine_of(2_000, seed=2)
    a, _ = sample_spine(spine, 500, seed=9)
    b, _ = sample_spine(spine.sample(frac=1, random_state=3), 500, seed=9)
    assert set(a["lead_id"]) == set(b["lead_id"])
    big, _ = sample_spine(spine, 1_200, seed=9)
    assert set(a["lead_id"]) <= set(big["lead_id"])
    other, _ = sample_spine(spine, 500, seed=10)
    assert set(other["lead_id"]) != set(a["lead_id"])


@pytest.mark.parametrize("raw", [{"sample_leads": 0}, {"sample_leads": 2.5},
                                 {"sample_seed": "x"}, {"sample_size": 10}])
def test_sample_settings_are_validated(raw):
    with pytest.raises(SettingsError):
        SnapshotSettings.from_params(raw, None)


def test_the_features_stage_trains_on_the_sample_and_its_rows_equal_the_whole_build(tmp_path):
    from pipeline.settings import parse_params
    from pipeline.stages import features as stage
    from pipeline.stages import generate, ingest
    from pipeline.synth import SynthSettings

    synth = SynthSettings(n_leads=600, seed=3, start=dt.date(2025, 1, 1), months=6)
    generate.run(synth, tmp_path / "raw", workers=1)
    ingest.run(tmp_path / "raw" / "leads.csv", tmp_path / "raw" / "events.csv",
               tmp_path / "interim", tmp_path / "reports")
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    raw.update(snapshots={"ages_days": [1, 7, 30]}, label={"horizon_days": 30})
    snap, fs = stage.feature_settings(parse_params(raw))
    leads, events = stage.read_interim(tmp_path / "interim")
    whole, _, _ = stage.run(leads, events, snap, fs)
    part, meta, _ = stage.run(leads, events, replace(snap, sample_leads=200, sample_seed=1),
                              fs)
    sampling = meta["sampling"]
    assert sampling["sampled"] and sampling["drawn_snapshots"] == len(part) == meta["n_rows"]
    assert part["lead_id"].nunique() == sampling["drawn_leads"] < whole["lead_id"].nunique()
    # point-in-time features do not depend on which other leads were drawn
    expected = whole.loc[whole["lead_id"].isin(set(part["lead_id"]))]
    pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                  expected.reset_index(drop=True), check_dtype=False,
                                  check_categorical=False)
    assert stage.summary(meta, {"suspects": [], "reviewed": []})["sampling"] == sampling
