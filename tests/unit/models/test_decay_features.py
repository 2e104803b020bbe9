"""Learned decay used as features: `<group>_decayed_hl` by definition, chosen on the
calibration split only (test-split labels change nothing), added without mutating input;
with `decay.features: auto` kept only when the served model's validation log-loss drops
(`models.training.keep_optional`), never judged on the test split."""

from __future__ import annotations

from types import SimpleNamespace

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
from models.settings import parse_bands, parse_calibration, parse_split, parse_train
from models.split import split_leads
from models.training import TrainResult, train_all
from pipeline.errors import ConfigError
from pipeline.stages.train import decay_to_check, decayed_features, settle_decay
from tests.helpers import tiny_training

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
    assert DecaySettings.from_params(None) == DecaySettings(features="auto", n_boot=40)
    assert DecaySettings.from_params({"features": False}).features is False
    with pytest.raises(ValueError, match="decay.n_boot"):
        DecaySettings.from_params({"n_boot": -1})
    with pytest.raises(ValueError, match="decay.feature"):
        DecaySettings.from_params({"feature": True})
    params = SimpleNamespace(raw={"decay": {"features": "sometimes"}})
    with pytest.raises(ConfigError, match="`decay.features` must be true, false or auto; "
                                          "got 'sometimes'"):
        decayed_features(pd.DataFrame(), {}, params)


def _sample(seed: int = 3, n_leads: int = 6000, *, half_life: float = 2.0,
            events_per_lead: float = 2.0, days: float = 120.0, signal: float = 3.0,
            intent: float = 0.0):
    """Leads (created in id order, one snapshot each) with Poisson(`events_per_lead`) demo
    events over `days` before as_of; the label's log-odds are -2 + `signal` x log1p(the
    decayed count at `half_life`) + `intent` x a standard-normal column. Columns: lead_id,
    as_of, created_at, label, demo_count, intent, demo_decayed_hl (at `half_life`). Leads
    split 60/20/20 by id into train/calibration/test (`parts`)."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2025-06-01")
    ids = np.array([f"L{i:05d}" for i in range(n_leads)])
    n_ev = rng.poisson(events_per_lead, n_leads)
    ev_lead = np.repeat(ids, n_ev)
    events = pd.DataFrame({"lead_id": ev_lead, "event_type": "demo_request",
                           "timestamp": as_of - pd.to_timedelta(
                               rng.uniform(0, days, ev_lead.size), unit="D")})
    frame = pd.DataFrame({"lead_id": ids, "as_of": as_of, "created_at": as_of - pd.to_timedelta(
        np.linspace(480, days, n_leads), unit="D")})
    d = decayed_hl_features(frame, events, SETTINGS, {"demo": half_life})["demo_decayed_hl"]
    u = rng.random(n_leads)
    frame = frame.assign(demo_count=n_ev.astype(float), intent=rng.normal(size=n_leads),
                         demo_decayed_hl=d.to_numpy())
    logit = signal * np.log1p(d.to_numpy()) + intent * frame["intent"].to_numpy() - 2.0
    frame["label"] = (u < 1 / (1 + np.exp(-logit))).astype(np.int8)
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


# The model-level check (`decay.features: auto`): the frame holds an all-time count and an
# intent score; its decayed count at 7 days carries the timing that the count lacks (signal
# 3.0), or nothing at all (signal 0.0). Tuning off and a tiny LightGBM: about 1.5 s a fit.
CHECK_FEATURES = ["demo_count", "intent", "demo_decayed_hl"]
CHOSEN = {"demo": 7.0}  # what the per-group verdict chose: demo_decayed_hl


def _check_sample(signal: float) -> pd.DataFrame:
    return _sample(n_leads=4000, half_life=7.0, events_per_lead=4.0, days=90.0, signal=signal,
                   intent=0.8)[0]


def _train_auto(frame: pd.DataFrame) -> TrainResult:
    """`train_all` and the stage's bookkeeping as `leadprop train` runs them under auto."""
    tiny = tiny_training()
    decay = {"features": "auto", "chosen": dict(CHOSEN), "groups": []}
    result = train_all(frame, CHECK_FEATURES, parse_split(tiny["split"]),
                       parse_train({**tiny["train"], "tune": {"enabled": False}}),
                       parse_calibration(tiny["calibration"]), parse_bands(tiny["bands"]),
                       horizon_days=90, groups={c: "behaviour:demo" for c in CHECK_FEATURES},
                       optional_features=decay_to_check(decay))
    settle_decay(result, decay)
    return result


@pytest.fixture(scope="module")
def with_signal() -> tuple[pd.DataFrame, TrainResult]:
    frame = _check_sample(signal=3.0)
    return frame, _train_auto(frame)


def test_auto_keeps_a_decayed_count_that_carries_signal(with_signal) -> None:  # noqa: ANN001
    _, result = with_signal
    check = result.summary["decay"]["model_check"]
    assert check["columns"] == ["demo_decayed_hl"] and check["kept"] is True
    assert check["validation_log_loss_with"] < check["validation_log_loss_without"] - \
        check["standard_error"]
    assert result.bundle.features == CHECK_FEATURES
    assert result.bundle.metadata["decayed_half_lives"] == CHOSEN
    assert result.summary["decay"]["used"] == CHOSEN


def test_auto_drops_a_decayed_count_that_carries_none() -> None:
    result = _train_auto(_check_sample(signal=0.0))
    check = result.summary["decay"]["model_check"]
    assert check["kept"] is False
    assert check["gain"] <= check["standard_error"]
    # every model is fitted without the column; the bundle builds no decayed feature
    assert result.bundle.features == ["demo_count", "intent"]
    assert "demo_decayed_hl" not in result.bundle.groups
    assert result.bundle.metadata["decayed_half_lives"] == {}
    assert result.summary["decay"]["used"] == {} and result.summary["features"]["n"] == 2
    assert "optional_features" not in result.summary  # moved into summary["decay"]


def test_test_split_labels_change_nothing_about_the_check(with_signal) -> None:  # noqa: ANN001
    frame, result = with_signal
    parts = split_leads(frame, "label", (0.6, 0.2, 0.2), seed=1).parts.to_numpy()
    check = result.summary["decay"]["model_check"]
    flipped = frame.assign(label=np.where(parts == "test", 1 - frame["label"], frame["label"]))
    assert _train_auto(flipped).summary["decay"]["model_check"] == check
    # the guard bites: shuffled training-split labels move the check's numbers
    shuffled = frame["label"].to_numpy().copy()
    shuffled[parts == "train"] = np.random.default_rng(0).permutation(shuffled[parts == "train"])
    moved = frame.assign(label=shuffled)
    other = _train_auto(moved).summary["decay"]["model_check"]
    assert other["validation_log_loss_without"] != check["validation_log_loss_without"]
