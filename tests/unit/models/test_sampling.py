"""models.sampling: the training split sampled by lead, stratified by outcome, weighted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.calibration import fit_calibrator
from models.estimators import refit_lightgbm
from models.sampling import sample_training_leads, stratum_rates
from models.settings import (
    InputError,
    LightGBMSettings,
    SampleSettings,
    SettingsError,
    parse_train,
)
from models.training import train_all


def population(n_leads: int = 20_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """1-4 snapshots per lead, about 6 % of leads convert (on their last snapshot), driven
    by `intent`; the first 60 % of leads train, then 20 % calibrate, 20 % test."""
    rng = np.random.default_rng(seed)
    n_snap = rng.integers(1, 5, n_leads)
    lead = np.repeat(np.arange(n_leads), n_snap)
    intent = rng.normal(size=n_leads)
    converts = rng.uniform(size=n_leads) < 1 / (1 + np.exp(-(-3.2 + 1.2 * intent)))
    last = np.r_[lead[1:] != lead[:-1], True]
    frame = pd.DataFrame({
        "lead_id": np.array([f"L{i:06d}" for i in range(n_leads)])[lead],
        "intent": intent[lead] + rng.normal(scale=0.1, size=lead.size),
        "label": (converts[lead] & last).astype("int8"),
    })
    cut = np.array(["train", "calibration", "test"])[
        np.searchsorted([0.6 * n_leads, 0.8 * n_leads], lead, side="right")]
    return frame, cut


def test_stratum_rates_meet_the_budget_and_the_boost() -> None:
    conv, other = stratum_rates(300, 9700, 2000, 4.0)
    assert conv == pytest.approx(4 * other)
    assert 300 * conv + 9700 * other == pytest.approx(2000)
    # converted leads capped at 1: the others take the rest of the budget
    assert stratum_rates(2000, 8000, 5000, 5.0) == (1.0, 0.375)
    assert stratum_rates(10, 90, 100, 3.0) == (1.0, 1.0)


def test_sampling_is_by_lead_and_only_in_the_training_split() -> None:
    frame, parts = population()
    before = frame.copy()
    s = sample_training_leads(frame, parts, SampleSettings(max_leads=3000, converted_boost=5))
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert s.sampled
    kept = pd.Series(s.keep).groupby(frame["lead_id"].to_numpy()).agg(["min", "max"])
    assert (kept["min"] == kept["max"]).all()  # a lead is kept whole or not at all
    w = pd.Series(s.weight).groupby(frame["lead_id"].to_numpy()).nunique()
    assert (w == 1).all()  # one weight per lead
    # calibration and test rows are never sampled away, and keep weight 1
    outside = parts != "train"
    assert s.keep[outside].all() and (s.weight[outside] == 1).all()
    assert frame.loc[s.keep & (parts == "train"), "lead_id"].nunique() == pytest.approx(3000,
                                                                                          abs=2)


def test_strata_rates_hold_and_converted_leads_are_kept_more() -> None:
    frame, parts = population()
    s = sample_training_leads(frame, parts, SampleSettings(max_leads=3000, converted_boost=5))
    train = frame[parts == "train"]
    outcome = train.groupby("lead_id")["label"].max()
    kept = set(frame.loc[s.keep & (parts == "train"), "lead_id"])
    for value, name in ((1, "converted"), (0, "not_converted")):
        leads = outcome.index[outcome == value]
        rate = np.isin(leads, list(kept)).mean()
        stratum = s.summary["strata"][name]
        assert rate == pytest.approx(stratum["rate"], abs=1e-12)
        assert stratum["weight"] == pytest.approx(1 / stratum["rate"])
    conv, other = stratum_rates(int((outcome == 1).sum()), int((outcome == 0).sum()), 3000, 5)
    assert s.summary["strata"]["converted"]["rate"] == pytest.approx(conv, abs=2e-3)
    assert s.summary["strata"]["not_converted"]["rate"] == pytest.approx(other, abs=2e-4)
    assert s.summary["strata"]["converted"]["rate"] > 4 * s.summary["strata"]["not_converted"][
        "rate"]


def test_weighted_conversion_rate_equals_the_population_rate() -> None:
    frame, parts = population()
    s = sample_training_leads(frame, parts, SampleSettings(max_leads=3000, converted_boost=5))
    in_sample = s.keep & (parts == "train")
    y, w = frame["label"].to_numpy()[in_sample], s.weight[in_sample]
    pop = frame.loc[parts == "train", "label"].mean()
    assert np.average(y, weights=w) == pytest.approx(pop, rel=0.05)
    assert s.summary["weighted_rate"] == pytest.approx(np.average(y, weights=w))
    assert s.summary["population_rate"] == pytest.approx(pop)
    # the unweighted sample over-represents conversions: the weights are what corrects it
    assert y.mean() > 2 * pop


def test_weighted_fits_keep_probabilities_about_the_population() -> None:
    """LightGBM on the weighted training sample, then a calibrator on a weighted sample of
    calibration leads: the mean calibrated probability matches the population's rate;
    without the weights it would not."""
    frame, parts = population(seed=3)
    s = sample_training_leads(frame, parts, SampleSettings(max_leads=3000, converted_boost=5))
    X, y = frame[["intent"]], frame["label"].to_numpy()
    tr = s.keep & (parts == "train")
    lgbm = refit_lightgbm(X[tr], y[tr], LightGBMSettings(num_leaves=4, min_child_samples=50),
                          seed=0, n_estimators=150, sample_weight=s.weight[tr])
    plain = refit_lightgbm(X[tr], y[tr], LightGBMSettings(num_leaves=4, min_child_samples=50),
                           seed=0, n_estimators=150)
    pop_rate = y[parts == "train"].mean()
    raw_pop = lgbm.predict_proba(X[parts == "train"])[:, 1]
    assert raw_pop.mean() == pytest.approx(pop_rate, rel=0.15)
    assert plain.predict_proba(X[parts == "train"])[:, 1].mean() > 2 * pop_rate

    # calibration on a sample of the calibration leads, with their weights
    cal = sample_training_leads(frame, parts, SampleSettings(max_leads=1000, converted_boost=5),
                                sampled_part="calibration")
    cm = cal.keep & (parts == "calibration")
    raw = plain.predict_proba(X)[:, 1]
    weighted = fit_calibrator(raw[cm], y[cm], seed=0, groups=frame["lead_id"][cm],
                              sample_weight=cal.weight[cm])
    unweighted = fit_calibrator(raw[cm], y[cm], seed=0, groups=frame["lead_id"][cm])
    test = parts == "test"
    assert weighted.predict(raw[test]).mean() == pytest.approx(y[test].mean(), rel=0.15)
    assert unweighted.predict(raw[test]).mean() > 2 * y[test].mean()


def test_deterministic_for_a_seed() -> None:
    frame, parts = population(n_leads=5000)
    a = sample_training_leads(frame, parts, SampleSettings(max_leads=800, seed=7))
    b = sample_training_leads(frame, parts, SampleSettings(max_leads=800, seed=7))
    c = sample_training_leads(frame, parts, SampleSettings(max_leads=800, seed=8))
    assert np.array_equal(a.keep, b.keep) and np.array_equal(a.weight, b.weight)
    assert not np.array_equal(a.keep, c.keep)


def test_off_by_default_and_below_the_threshold() -> None:
    frame, parts = population(n_leads=2000)
    for settings in (SampleSettings(), SampleSettings(max_leads=1200)):  # 1200 train leads
        s = sample_training_leads(frame, parts, settings)
        assert not s.sampled and s.keep.all() and (s.weight == 1).all()
    assert "every lead is used" in sample_training_leads(
        frame, parts, SampleSettings(max_leads=1200)).summary["why"]
    assert sample_training_leads(frame, parts, SampleSettings(max_leads=1199)).sampled


def test_settings_and_input_checks() -> None:
    assert parse_train({}).sample == SampleSettings()
    got = parse_train({"sample": {"max_leads": 500, "converted_boost": 3, "seed": 1}}).sample
    assert got == SampleSettings(max_leads=500, converted_boost=3, seed=1)
    with pytest.raises(SettingsError, match=r"`train.sample.converted_boost` must be >= 1"):
        SampleSettings(converted_boost=0.5)
    with pytest.raises(SettingsError, match=r"`train.sample.max_leads` must be >= 2"):
        SampleSettings(max_leads=0)
    with pytest.raises(SettingsError, match="unknown key"):
        parse_train({"sample": {"max_snapshots": 5}})
    frame, parts = population(n_leads=100)
    with pytest.raises(InputError, match="`parts` has 3 values"):
        sample_training_leads(frame, parts[:3], SampleSettings(max_leads=10))
    bad = frame.assign(label=frame["label"].replace(1, 2))
    with pytest.raises(InputError, match="only 0 and 1"):
        sample_training_leads(bad, parts, SampleSettings(max_leads=10))


def test_train_all_trains_on_the_weighted_sample_and_scores_every_test_lead() -> None:
    from tests.unit.models.test_training import make_frame, settings

    frame = make_frame(n_leads=4000, seed=2)
    split, _, calibration, bands = settings()
    _, train_off, _, _ = settings()
    _, train_on, _, _ = settings(sample={"max_leads": 1000, "converted_boost": 4})
    full = train_all(frame, ["intent", "noise", "tier"], split, train_off, calibration, bands, 90)
    got = train_all(frame, ["intent", "noise", "tier"], split, train_on, calibration, bands, 90)
    s = got.summary["sample"]
    assert s["sampled"] and s["population_leads"] == 2400 and s["kept_leads"] == 1000
    assert got.bundle.metadata["sample"] == s
    assert not full.summary["sample"]["sampled"]
    pred, ref = got.predictions, full.predictions
    assert pred.loc[pred.split == "train", "lead_id"].nunique() == 1000
    # calibration and test splits intact: same leads, weight 1, same split as without sampling
    for part in ("calibration", "test"):
        assert set(pred.loc[pred.split == part, "lead_id"]) == set(
            ref.loc[ref.split == part, "lead_id"])
        assert (pred.loc[pred.split == part, "weight"] == 1).all()
    assert got.summary["split"]["rows"]["test"] == full.summary["split"]["rows"]["test"]
    # the weighted model's probabilities stay about the population on the test leads
    test = pred[pred.split == "test"]
    assert test["p_served"].mean() == pytest.approx(test["label"].mean(), rel=0.15)
    assert test["raw_lightgbm"].mean() == pytest.approx(test["label"].mean(), rel=0.25)
