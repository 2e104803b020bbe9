"""studies/generator_decay.py: the half-lives the generator implies lie inside the learned
intervals on the synthetic sample (20 000 leads, params.yaml's groups), plus the pieces."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from features.settings import FeatureSettings
from models.decay import DecayFit
from pipeline import synth
from pipeline.settings import load_params
from pipeline.stages.features import feature_settings
from studies.generator_decay import compare, phase_half_life, run

ROOT = Path(__file__).resolve().parents[3]
#: params.yaml's intent groups (the groups the pipeline and the study use)
GROUPS = FeatureSettings(
    event_groups=feature_settings(load_params(ROOT / "params.yaml"))[1].event_groups)


def test_phase_half_life_is_ln2_over_the_buying_exit_rate() -> None:
    # buying -> cooling 0.06 / day plus the conversion hazard 0.022 / day at fit = intent = 0
    assert phase_half_life() == pytest.approx(math.log(2) / 0.082)
    assert phase_half_life(intent=1.0) < phase_half_life()  # more intent converts sooner


def test_compare_says_inside_or_by_how_much() -> None:
    fit = DecayFit("demo", 4.0, 3.0, 5.0, 100, 80, ())
    rows = compare({"demo": {"half_life_days": 10.0}, "other": {"half_life_days": 1.0}}, [fit])
    assert rows == [{"group": "demo", "implied_half_life_days": 10.0,
                     "learned_half_life_days": 4.0, "ci_low": 3.0, "ci_high": 5.0,
                     "inside": False, "off_by": 2.0}]
    assert compare({"demo": {"half_life_days": 4.5}}, [fit])[0]["inside"] is True


def test_generator_half_lives_lie_inside_the_learned_intervals() -> None:
    result = run(synth.SynthSettings(n_leads=20_000, seed=42), GROUPS, n_boot=40)
    rows = {r["group"]: r for r in result["groups"]}
    assert set(rows) == set(GROUPS.event_groups)
    for g in ("research", "pricing", "ready_to_buy", "email", "negative"):
        assert rows[g]["inside"], rows[g]
    # intent fades within days in the generator: a buying phase lasts ln2/0.082 = 8.5 days
    for g in ("research", "pricing", "ready_to_buy"):
        assert 2 < rows[g]["implied_half_life_days"] < 9
