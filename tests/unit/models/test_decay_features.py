"""Learned decay used as features: `<group>_decayed_hl` by definition, chosen on the
calibration split only (test-split labels change nothing), added without mutating input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.behaviour import decayed_hl_features
from features.settings import FeatureSettings
from models.decay import (
    DecayFit,
    DecaySettings,
    add_decayed_features,
    chosen_half_lives,
    select_decayed_features,
)

SETTINGS = FeatureSettings(event_groups={"demo": ("demo_request",), "blog": ("blog_read",)})
GRID = [1, 2, 3, 5, 8, 14, 30, 60, 120, 365]


def test_decayed_hl_matches_the_definition() -> None:
    spine = pd.DataFrame({"lead_id": ["a", "a", "b"],
                          "as_of": pd.to_datetime(["2025-01-11", "2025-01-01", "2025-01-11"])})
    events = pd.DataFrame({"lead_id": ["a", "a", "b", "a"],
                           "event_type": ["demo_request", "demo_request", "demo_request",
                                          "blog_read"],
                           "timestamp": pd.to_datetime(["2025-01-01", "2025-01-06",
                                                        "2025-01-11", "2025-01-09"])})
    out = decayed_hl_features(spine, events, SETTINGS, {"demo": 10.0, "blog": 2.0})
    assert list(out.columns) == ["demo_decayed_hl", "blog_decayed_hl"]
    # a at Jan 11: demo ages 10 and 5 days (h = 10), blog age 2 (h = 2); b: AT as_of is out
    assert out["demo_decayed_hl"].tolist() == pytest.approx([0.5 + 2 ** -0.5, 0.0, 0.0])
    assert out["blog_decayed_hl"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="unknown intent group 'pricing'"):
        decayed_hl_features(spine, events, SETTINGS, {"pricing": 5.0})


def test_add_decayed_features_leaves_the_input_alone() -> None:
    frame = pd.DataFrame({"lead_id": ["a"], "as_of": pd.to_datetime(["2025-01-11"]),
                          "x": [1.0]})
    events = pd.DataFrame({"lead_id": ["a"], "event_type": ["demo_request"],
                           "timestamp": pd.to_datetime(["2025-01-06"])})
    before = frame.copy()
    out = add_decayed_features(frame, events, SETTINGS, {"demo": 5.0})
    pd.testing.assert_frame_equal(frame, before)
    assert out["demo_decayed_hl"].tolist() == pytest.approx([0.5])
    assert out["x"].tolist() == [1.0]
    assert add_decayed_features(frame, events, SETTINGS, {}) is frame


def _fit(group: str, learned: float | None, configured: float | None) -> DecayFit:
    return DecayFit(group, 5.0, 3.0, 8.0, 100, 80, (), 14.0, learned, configured)


def test_only_groups_that_help_on_validation_are_chosen() -> None:
    fits = [_fit("demo", 0.40, 0.45), _fit("blog", 0.50, 0.45), _fit("email", None, None)]
    assert chosen_half_lives(fits) == {"demo": 5.0}


def test_decay_settings_check_their_values() -> None:
    assert DecaySettings.from_params(None) == DecaySettings(features=False, n_boot=40)
    with pytest.raises(ValueError, match="decay.n_boot"):
        DecaySettings.from_params({"n_boot": -1})
    with pytest.raises(ValueError, match="decay.feature"):
        DecaySettings.from_params({"feature": True})


def _sample(seed: int = 3, n_leads: int = 6000):
    """Leads with demo events over 120 days before as_of; the label follows the decayed count
    with a 2-day half-life. Leads split 60/20/20 by id into train/calibration/test."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2025-06-01")
    ids = np.array([f"L{i:05d}" for i in range(n_leads)])
    n_ev = rng.poisson(2.0, n_leads)
    ev_lead = np.repeat(ids, n_ev)
    events = pd.DataFrame({"lead_id": ev_lead, "event_type": "demo_request",
                           "timestamp": as_of - pd.to_timedelta(
                               rng.uniform(0, 120, ev_lead.size), unit="D")})
    frame = pd.DataFrame({"lead_id": ids, "as_of": as_of})
    d = decayed_hl_features(frame, events, SETTINGS, {"demo": 2.0})["demo_decayed_hl"]
    logit = 3.0 * np.log1p(d.to_numpy()) - 2.0
    frame["label"] = (rng.random(n_leads) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    parts = np.array(["train"] * int(0.6 * n_leads) + ["calibration"] * int(0.2 * n_leads)
                     + ["test"] * (n_leads - int(0.8 * n_leads)))
    return frame, parts, events


def test_test_split_labels_change_no_half_life_and_no_decision() -> None:
    frame, parts, events = _sample()
    fits, chosen = select_decayed_features(frame, parts, events, SETTINGS, n_boot=10, grid=GRID)
    assert chosen and 1 < chosen["demo"] < 4  # the 2-day signal, and it helps
    # test labels that follow a very different half-life (or none at all)
    for flipped in (1 - frame["label"], pd.Series(1, index=frame.index)):
        other = frame.assign(label=np.where(parts == "test", flipped, frame["label"]))
        fits2, chosen2 = select_decayed_features(other, parts, events, SETTINGS, n_boot=10,
                                                 grid=GRID)
        assert chosen2 == chosen
        assert [f.as_dict() for f in fits2] == [f.as_dict() for f in fits]
    # the guard bites: the same change on the calibration rows does move the verdict inputs
    other = frame.assign(label=np.where(parts == "calibration", 1 - frame["label"],
                                        frame["label"]))
    fits3, _ = select_decayed_features(other, parts, events, SETTINGS, n_boot=10, grid=GRID)
    assert fits3[0].val_log_loss_learned != fits[0].val_log_loss_learned
