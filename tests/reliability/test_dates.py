"""Poisoned dates: one mistyped future date in a generated export moves neither the training
labels nor the scoring moment. Two guards, each tested on its own: ingest rejects the row
(`pipeline.contract.validate_leads`), and `features.snapshots.data_end` ignores an
isolated top tail when such a row gets through anyway."""

from __future__ import annotations

import pandas as pd
import pytest

from features.settings import SnapshotSettings
from features.snapshots import data_end, training_spine
from pipeline.contract import validate_leads
from pipeline.readers import read_table
from pipeline.stages import generate
from pipeline.synth import SynthSettings

SETTINGS = SynthSettings(n_leads=20_000, seed=7)
END = pd.Timestamp(SETTINGS.end)
SNAP = SnapshotSettings(ages_days=SETTINGS.snapshot_ages_days, horizon_days=SETTINGS.horizon_days)
POISON = "2062-03-14 10:00:00"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("gen")
    generate.run(SETTINGS, out)
    return read_table(out / "leads.csv", what="leads")


def _poisoned(raw: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """`raw` with the first lost lead's lost_at typed as 2062, and that lead's id."""
    row = raw.index[raw["lost_at"].notna()][0]
    poisoned = raw.copy()
    poisoned.loc[row, "lost_at"] = POISON
    return poisoned, str(raw.loc[row, "lead_id"])


def _labels(leads: pd.DataFrame) -> pd.DataFrame:
    spine = training_spine(leads, SNAP, data_end(leads))
    return spine[["lead_id", "as_of", "label"]].reset_index(drop=True)


def test_ingest_rejects_the_future_date_and_nothing_changes(raw: pd.DataFrame) -> None:
    clean, _ = validate_leads(raw, "leads.csv", now=END)
    poisoned, lead = _poisoned(raw)
    leads, rejects = validate_leads(poisoned, "leads.csv", now=END)

    assert rejects["reason"].tolist() == ["lost_at is after the export moment 2026-07-01"]
    assert rejects["lost_at"].tolist() == [POISON]
    assert lead not in set(leads["lead_id"])
    assert data_end(leads) == data_end(clean) <= END
    expected = _labels(clean)
    expected = expected[expected["lead_id"] != lead].reset_index(drop=True)
    pd.testing.assert_frame_equal(_labels(leads), expected)


def test_data_end_ignores_a_poisoned_date_that_got_through(raw: pd.DataFrame) -> None:
    # ingest told the export moment is 2100: the 2062 row is kept, data_end must not follow.
    clean, _ = validate_leads(raw, "leads.csv", now=END)
    poisoned, lead = _poisoned(raw)
    leads, rejects = validate_leads(poisoned, "leads.csv", now=pd.Timestamp("2100-01-01"))
    assert rejects.empty
    assert leads["lost_at"].max() == pd.Timestamp(POISON)

    assert data_end(leads) == data_end(clean)
    assert data_end(leads) < END + pd.Timedelta(days=1)
    # The poisoned lead's own snapshots may change (its loss moved); no other label does.
    got = _labels(leads)
    want = _labels(clean)
    pd.testing.assert_frame_equal(
        got[got["lead_id"] != lead].reset_index(drop=True),
        want[want["lead_id"] != lead].reset_index(drop=True),
    )


def test_a_real_busy_last_month_still_moves_the_data_end(raw: pd.DataFrame) -> None:
    clean, _ = validate_leads(raw, "leads.csv", now=pd.Timestamp("2100-01-01"))
    later = clean.copy()
    late = later.index[-300:]  # the last 300 leads arrive a month later: real, not a typo
    later.loc[late, "created_at"] = later.loc[late, "created_at"] + pd.Timedelta(days=30)
    assert data_end(later) > data_end(clean) + pd.Timedelta(days=20)

