"""Time-ordered and stratified splits by lead, and the validation slice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.settings import SettingsError
from models.split import (
    STRATIFIED_WARNING,
    split_leads,
    stratified_split,
    time_split,
    validation_slice,
)


def snapshots(n_leads: int = 10, per_lead: int = 2, seed: int = 0) -> pd.DataFrame:
    """Rows shuffled; each lead has `per_lead` snapshots and its own creation day."""
    rng = np.random.default_rng(seed)
    leads = [f"L{i:03d}" for i in range(n_leads)]
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.permutation(n_leads), unit="D")
    frame = pd.DataFrame(
        {
            "lead_id": np.repeat(leads, per_lead),
            "created_at": np.repeat(created, per_lead),
            "age_days": np.tile([1, 7, 30, 90][:per_lead], n_leads),
            "label": np.repeat(rng.binomial(1, 0.3, n_leads), per_lead),
        }
    )
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def test_time_split_keeps_leads_whole_and_test_later_than_train():
    frame = snapshots()
    before = frame.copy()
    parts = time_split(frame)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert parts.index.equals(frame.index)
    assert frame.groupby("lead_id")["lead_id"].size().eq(2).all()
    assert parts.groupby(frame["lead_id"]).nunique().eq(1).all()
    leads_per_part = frame.groupby(parts)["lead_id"].nunique()
    assert leads_per_part.to_dict() == {"calibration": 2, "test": 2, "train": 6}
    created = frame.groupby(parts)["created_at"]
    assert created.max()["train"] < created.min()["calibration"]
    assert created.max()["calibration"] < created.min()["test"]


def test_time_split_never_cuts_through_a_creation_time_tie():
    frame = pd.DataFrame(
        {
            "lead_id": list("abcdefghij"),
            "created_at": pd.to_datetime(
                ["2025-01-01"] * 5 + ["2025-01-02"] * 3 + ["2025-01-03"] * 2
            ),
        }
    )
    parts = time_split(frame, fractions=(0.4, 0.3, 0.3))
    # The cut after 4 leads moves past the 5-lead tie on day 1.
    assert parts.tolist() == ["train"] * 5 + ["calibration"] * 3 + ["test"] * 2


def test_split_fraction_errors():
    with pytest.raises(SettingsError, match=r"`split.test` must be in \(0, 1\); got 0"):
        time_split(snapshots(), fractions=(0.8, 0.2, 0))


def test_stratified_split_is_group_aware_stratified_and_warns():
    frame = snapshots(n_leads=200, per_lead=3)
    result = stratified_split(frame, "label", (0.6, 0.2, 0.2), seed=7)
    assert result.method == "stratified"
    assert result.warning == STRATIFIED_WARNING
    assert "metrics are optimistic about drift" in result.warning
    assert result.parts.groupby(frame["lead_id"]).nunique().eq(1).all()
    lead_label = frame.groupby("lead_id")["label"].max()
    lead_part = result.parts.groupby(frame["lead_id"]).first()
    rates = lead_label.groupby(lead_part).mean()
    assert rates.max() - rates.min() < 0.03
    leads_per_part = frame.groupby(result.parts)["lead_id"].nunique()
    assert abs(leads_per_part["train"] - 120) <= 1 and abs(leads_per_part["test"] - 40) <= 1
    assert sum(result.counts().values()) == len(frame)
    again = stratified_split(frame, "label", (0.6, 0.2, 0.2), seed=7)
    assert again.parts.equals(result.parts)
    other = stratified_split(frame, "label", (0.6, 0.2, 0.2), seed=8)
    assert not other.parts.equals(result.parts)


def test_split_leads_uses_time_when_available():
    frame = snapshots()
    assert split_leads(frame, "label").method == "time"
    assert split_leads(frame, "label").warning is None
    no_time = frame.drop(columns="created_at")
    assert split_leads(no_time, "label", seed=1).warning == STRATIFIED_WARNING


def test_validation_slice_takes_the_most_recent_training_leads():
    frame = snapshots(n_leads=20)
    mask = validation_slice(frame, 0.25)
    assert mask.groupby(frame["lead_id"]).nunique().eq(1).all()
    assert frame.loc[mask, "lead_id"].nunique() == 5
    assert frame.loc[mask, "created_at"].min() > frame.loc[~mask, "created_at"].max()
    no_time = frame.drop(columns="created_at")
    with pytest.raises(SettingsError, match="pass `seed`"):
        validation_slice(no_time, 0.25)
    assert validation_slice(no_time, 0.25, seed=3).equals(validation_slice(no_time, 0.25, seed=3))
