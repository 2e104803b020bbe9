"""LightGBM tuning on the training split only: the configured settings are trial 0, the
search is deterministic for a seed, the space scales with the data, the budget holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.settings import LightGBMSettings, SettingsError, TuneSettings
from models.tuning import refit_rounds, search_space, select_trial, tune_lightgbm

BASE = LightGBMSettings(n_estimators=300, num_leaves=4, min_child_samples=300)


def _data(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.integers(0, 5, n).astype(float)})
    logit = -2 + 1.5 * X["a"] - 1.2 * X["a"] * X["b"] + 0.3 * X["c"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(int)
    return X, y


def _tune(settings: TuneSettings, **kwargs):
    X, y = _data()
    return tune_lightgbm(X[:2200], y[:2200], X[2200:], y[2200:], BASE, settings, seed=7,
                         early_stopping_rounds=30, **kwargs)


def test_the_configured_settings_are_trial_zero_and_never_beaten_on_validation() -> None:
    result = _tune(TuneSettings(n_trials=8, select="best"))
    assert result.trials["trial"].iloc[0] == 0
    assert result.trials["num_leaves"].iloc[0] == 4
    assert result.trials["validation_log_loss"].iloc[0] == pytest.approx(result.default_log_loss)
    assert result.best_log_loss == pytest.approx(result.trials["validation_log_loss"].min())
    assert result.best_log_loss <= result.default_log_loss
    # an interaction the 4-leaf, 300-row-leaf default cannot fit: the search finds better
    assert result.best_log_loss < result.default_log_loss - 0.002
    assert result.stopped_by == "n_trials" and len(result.trials) == 8


def _trials(leaves: list[int], losses: list[np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({"trial": range(len(leaves)), "num_leaves": leaves,
                         "min_child_samples": [20] * len(leaves),
                         "validation_log_loss": [float(r.mean()) for r in losses]})


def test_one_se_picks_the_simplest_trial_whose_gap_is_noise_and_best_the_lowest() -> None:
    rng = np.random.default_rng(3)
    best = rng.exponential(0.3, 2000)
    noise = best + rng.normal(0.0, 0.2, 2000)               # a gap within its own noise
    noise += 0.001 - (noise - best).mean()
    clear = best + 0.05                                     # a gap far outside it
    losses = [clear, best, noise]
    trials = _trials([2, 40, 8], losses)
    pick, how = select_trial(trials, losses, "one_se")
    assert pick == 2 and how["best_trial"] == 1 and how["chosen_trial"] == 2
    assert 0 < how["gap_to_best"] <= how["standard_error"] and how["within_one_se"] == 2
    assert select_trial(trials, losses, "best")[0] == 1


def test_one_se_counts_a_leads_snapshots_as_one_draw() -> None:
    # the same per-row gap: within one SE when each lead's 10 snapshots move together,
    # outside it when the rows are treated as 10 x more independent draws
    rng = np.random.default_rng(5)
    per_lead = rng.normal(0.0, 0.1, 300)
    gap = np.repeat(per_lead - per_lead.mean() + 0.004, 10)
    best = np.full(3000, 0.3)
    losses, leads = [best, best + gap], np.repeat(np.arange(300), 10)
    trials = _trials([40, 2], losses)
    assert select_trial(trials, losses, "one_se", groups=leads)[0] == 1
    assert select_trial(trials, losses, "one_se")[0] == 0


def test_tuning_reports_how_the_winner_was_picked() -> None:
    result = _tune(TuneSettings(n_trials=6))
    how = result.summary()["selection"]
    assert how["rule"] == "one_se" and how["within_one_se"] >= 1
    chosen = result.trials[result.trials["trial"] == how["chosen_trial"]].iloc[0]
    assert result.best_log_loss == pytest.approx(chosen["validation_log_loss"])
    assert result.best_log_loss - result.trials["validation_log_loss"].min() == pytest.approx(
        how["gap_to_best"], abs=1e-6)


def test_the_search_is_deterministic_for_a_seed() -> None:
    first, second = _tune(TuneSettings(n_trials=6)), _tune(TuneSettings(n_trials=6))
    pd.testing.assert_frame_equal(first.trials, second.trials)
    assert first.params == second.params


def test_parallel_trials_do_not_depend_on_which_fit_finishes_first(monkeypatch) -> None:
    """Batches of two trials fitted at once: the search is the same run after run even when
    some fits are made to finish after their batch partner, every trial is distinct, and
    `parallel: 1` is the sequential search."""
    import time as clock

    import models.tuning as tuning

    # 13 trials: TPE samples at random until 10 are complete, so the last ones are where
    # the results of earlier trials, and so their order, could matter
    first = _tune(TuneSettings(n_trials=13, parallel=2))
    real_fit = tuning.fit_lightgbm

    def slow_for_some(*args, **kwargs):  # about half the trials finish after their partner
        if int(args[4].learning_rate * 1e6) % 2:
            clock.sleep(0.3)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tuning, "fit_lightgbm", slow_for_some)
    again = _tune(TuneSettings(n_trials=13, parallel=2))
    pd.testing.assert_frame_equal(first.trials, again.trials)
    assert first.params == again.params and len(first.trials) == 13
    assert first.trials["learning_rate"].nunique() == 13
    monkeypatch.setattr(tuning, "fit_lightgbm", real_fit)
    sequential = _tune(TuneSettings(n_trials=13, parallel=1))
    assert sequential.trials["trial"].tolist() == list(range(13))
    assert not sequential.trials.equals(first.trials)  # batches sample differently


def test_one_trial_keeps_the_configured_settings() -> None:
    result = _tune(TuneSettings(n_trials=1))
    assert result.params == BASE and result.stopped_by == "disabled"
    assert _tune(TuneSettings(enabled=False, n_trials=9)).params == BASE


def test_the_timeout_stops_the_search_and_says_so() -> None:
    ticks = iter(np.arange(0.0, 1e6, 50.0))
    result = _tune(TuneSettings(n_trials=50, timeout_seconds=100), clock=lambda: next(ticks))
    assert result.stopped_by == "timeout"
    assert len(result.trials) < 50


def test_the_space_scales_with_the_rows() -> None:
    small, large = search_space(500, 50), search_space(200_000, 20_000)
    assert small["min_child_samples"][1] < large["min_child_samples"][1]
    assert small["num_leaves"][1] <= large["num_leaves"][1]
    assert large["min_child_samples"] == (5, 1000) and large["num_leaves"] == (2, 64)


def test_refit_rounds_scale_with_the_rows() -> None:
    assert refit_rounds(100, 850, 1000) == 118
    assert refit_rounds(1, 10, 10) == 1
    with pytest.raises(SettingsError):
        refit_rounds(10, 0, 5)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_trials": 0}, "`train.tune.n_trials` must be >= 1; got 0"),
    ({"timeout_seconds": -1}, "`train.tune.timeout_seconds` must be > 0; got -1"),
    ({"enabled": "yes"}, "`train.tune.enabled` must be true or false; got 'yes'"),
    ({"select": "lowest"}, "`train.tune.select` must be one_se or best; got 'lowest'"),
    ({"parallel": 0}, "`train.tune.parallel` must be >= 1; got 0"),
])
def test_settings_are_checked(kwargs, message) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        TuneSettings(**kwargs)
