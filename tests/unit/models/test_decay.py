"""The learned half-life recovers a known one, says when the data cannot tell, and reads
manual decay rules as half-lives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.behaviour import group_decay_sums
from features.settings import FeatureSettings
from models.decay import fit_group_decay, grid_with, implied_half_life

GRID = grid_with(14.0, [1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 180])


def simulate(n_leads: int, half_life: float | None, seed: int):
    """Leads with demo events spread over 120 days before as_of; conversion depends on the
    decayed count with the true half-life (or only on the all-time count when None)."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2025-06-01")
    lead = np.repeat(np.arange(n_leads), 2)
    snap = as_of + pd.to_timedelta(np.tile([0, 20], n_leads), unit="D")
    spine = pd.DataFrame({"lead_id": [f"L{i}" for i in lead], "as_of": snap})
    n_ev = rng.poisson(2.0, n_leads)
    ev_lead = np.repeat(np.arange(n_leads), n_ev)
    age = rng.uniform(0, 120, ev_lead.size)
    events = pd.DataFrame({"lead_id": [f"L{i}" for i in ev_lead],
                           "timestamp": as_of - pd.to_timedelta(age, unit="D"),
                           "event_type": "demo_request"})
    settings = FeatureSettings(event_groups={"demo": ("demo_request",)})
    sums = group_decay_sums(spine, events, settings, GRID)
    count = np.repeat(n_ev, 2).astype(float)
    if half_life is None:
        truth = 0.4 * np.log1p(count) - 2.0
    else:
        d = group_decay_sums(spine, events, settings, [half_life])[float(half_life)]
        truth = 2.5 * np.log1p(d["decay_demo"].to_numpy()) - 2.5
    y = (rng.random(len(spine)) < 1 / (1 + np.exp(-truth))).astype(float)
    decayed = {h: f["decay_demo"].to_numpy() for h, f in sums.items()}
    return decayed, count, y, spine["lead_id"].to_numpy()


def test_decay_sums_match_the_definition() -> None:
    spine = pd.DataFrame({"lead_id": ["a", "a", "b"],
                          "as_of": pd.to_datetime(["2025-01-11", "2025-01-01", "2025-01-11"])})
    events = pd.DataFrame({"lead_id": ["a", "a", "b"], "event_type": "demo_request",
                           "timestamp": pd.to_datetime(["2025-01-01", "2025-01-06",
                                                        "2025-01-11"])})
    settings = FeatureSettings(event_groups={"demo": ("demo_request",)})
    got = group_decay_sums(spine, events, settings, [10.0])[10.0]["decay_demo"].tolist()
    # a at Jan 11: ages 10 and 5 days; a at Jan 1: nothing before; b: an event AT as_of is out
    assert got == pytest.approx([0.5 + 2 ** -0.5, 0.0, 0.0])


def test_a_known_half_life_lies_inside_the_interval() -> None:
    decayed, count, y, leads = simulate(6000, half_life=10.0, seed=1)
    fit = fit_group_decay("demo", decayed, count, y, leads, n_boot=40)
    assert fit.ci_low <= 10.0 <= fit.ci_high
    assert 5 < fit.half_life_days < 20
    assert fit.ci_high / fit.ci_low < 4           # informative
    assert fit.n_with_events == int((count > 0).sum())


def test_no_timing_signal_gives_a_wide_interval() -> None:
    decayed, count, y, leads = simulate(3000, half_life=None, seed=2)
    fit = fit_group_decay("demo", decayed, count, y, leads, n_boot=40)
    assert fit.ci_high / fit.ci_low > 5


def test_validation_decides_whether_it_helps() -> None:
    decayed, count, y, leads = simulate(6000, half_life=3.0, seed=3)
    v_decayed, v_count, v_y, _ = simulate(3000, half_life=3.0, seed=4)
    fit = fit_group_decay("demo", decayed, count, y, leads, n_boot=5,
                          validation=(v_decayed, v_count, v_y), configured_half_life_days=90.0)
    assert fit.helps is True
    assert fit.val_log_loss_learned < fit.val_log_loss_configured
    assert fit.as_dict()["helps"] is True


def test_manual_rule_as_half_life() -> None:
    assert implied_half_life(0.5, 30) == pytest.approx(30.0)
    assert implied_half_life(0.25, 30) == pytest.approx(72.28, abs=0.01)
    with pytest.raises(ValueError):
        implied_half_life(1.0, 30)
