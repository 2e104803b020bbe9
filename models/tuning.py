"""LightGBM hyper-parameters searched for the data at hand, inside the training period.

The served LightGBM used to carry settings chosen once for the built-in sample
(`num_leaves: 4`, `min_child_samples: 300`); on exports of other sizes those underfit. Here
Optuna's TPE sampler searches capacity, learning rate and regularisation on the training
split only: every trial is fitted on the older training leads and early-stopped and scored
(log-loss) on the most recent ones (`models.split.validation_slice`, whole leads on one
side). The calibration and test splits are never seen, so neither tuning nor early stopping
can leak the test labels.

- The configured `train.lightgbm` settings are always the first trial, so tuning can only
  keep or beat them on validation.
- The search space scales with the data: `min_child_samples` up to about 2 % of the fitting
  rows, `num_leaves` up to 64 (fewer when the rows cannot fill them).
- The winner is the simplest trial within one standard error of the lowest validation
  log-loss (`select: one_se`, the default; `select: best` takes the lowest): the validation
  leads are few, so among trials whose difference from the best is noise the one with the
  fewest leaves (then the largest `min_child_samples`) is the least likely to have
  won by fitting the validation leads' luck, and the most likely to hold on later leads.
  The standard error is of each row's paired log-loss difference from the best trial,
  clustered by lead (`groups`: a lead's snapshots move together).
- The budget is `n_trials`; `timeout_seconds` is a safety stop. The search is deterministic
  for a seed and `parallel` when it ends on `n_trials`; a search cut by the timeout depends
  on machine speed, and the result says so (`stopped_by`).
- `parallel` trials are fitted at once, each LightGBM on one thread (threads of one
  LightGBM team that outnumber the cores spin against each other; separate one-thread fits
  only share them). A batch is sampled in order (TPE's constant liar keeps a trial away from
  the others of its batch), fitted together and reported in order, so which fit finishes
  first changes nothing. `parallel: 1` is the sequential search.

`refit_rounds` turns the early-stopped number of trees into the number for a refit on all
training rows (validation included): more rows support proportionally more boosting rounds
at the same learning rate.

Pure: frames and settings in, settings and a trial table out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from models.estimators import fit_lightgbm
from models.metrics import clustered_standard_error, log_loss, row_log_loss
from models.settings import LightGBMSettings, SettingsError, TuneSettings

log = logging.getLogger(__name__)

#: Parameters the search varies; the others keep their configured values.
SEARCHED = ("learning_rate", "num_leaves", "min_child_samples", "reg_lambda",
            "colsample_bytree", "subsample")


@dataclass
class TuneResult:
    """The chosen settings, the early-stopped number of trees, and every trial."""

    params: LightGBMSettings
    best_iteration: int
    best_log_loss: float
    default_log_loss: float
    trials: pd.DataFrame
    stopped_by: str  # "n_trials" | "timeout" | "disabled"
    seconds: float
    space: dict[str, tuple[float, float]] = field(default_factory=dict)
    # how the winner was picked among the trials: rule, best and chosen trial, their gap
    selection: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record for the training summary and MLflow."""
        chosen = {k: getattr(self.params, k) for k in SEARCHED}
        return {
            "stopped_by": self.stopped_by,
            "trials": int(len(self.trials)),
            "seconds": round(self.seconds, 2),
            "validation_log_loss": round(self.best_log_loss, 6),
            "configured_validation_log_loss": round(self.default_log_loss, 6),
            "best_iteration": int(self.best_iteration),
            "chosen": chosen,
            "selection": dict(self.selection),
            "space": {k: list(v) for k, v in self.space.items()},
        }


def search_space(n_rows: int, n_positives: int) -> dict[str, tuple[float, float]]:
    """Bounds of each searched parameter for `n_rows` fitting rows with `n_positives`."""
    if n_rows < 2 or n_positives < 1:
        raise SettingsError(f"search_space needs rows of both outcomes; got {n_rows} rows, "
                            f"{n_positives} positives")
    max_child = max(10, min(1000, n_rows // 50))
    max_leaves = int(max(4, min(64, n_rows // max(20, max_child // 4))))
    return {
        "learning_rate": (0.01, 0.2),
        "num_leaves": (2, max_leaves),
        "min_child_samples": (5, max_child),
        "reg_lambda": (1e-3, 100.0),
        "colsample_bytree": (0.2, 1.0),
        "subsample": (0.5, 1.0),
    }


def tune_lightgbm(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray,
    X_val: pd.DataFrame,
    y_val: np.ndarray,
    base: LightGBMSettings,
    settings: TuneSettings,
    seed: int,
    *,
    early_stopping_rounds: int = 100,
    clock: Callable[[], float] = time.monotonic,
    groups: np.ndarray | None = None,
) -> TuneResult:
    """Search LightGBM settings by validation log-loss; `base` is trial 0.

    `X_fit`/`y_fit` are the older training rows, `X_val`/`y_val` the most recent training
    leads (never the calibration or test split); `groups` the lead of each validation row
    (for the standard error of `select: one_se`; without it rows count as independent).
    """
    import optuna

    started = clock()
    y_fit = np.asarray(y_fit)
    space = search_space(len(X_fit), int(y_fit.sum()))

    def evaluate(params: LightGBMSettings) -> tuple[float, int, np.ndarray]:
        """Validation log-loss, early-stopped tree count, each validation row's log-loss."""
        model = fit_lightgbm(X_fit, y_fit, X_val, y_val, params, seed,
                             early_stopping_rounds=early_stopping_rounds)
        p = model.predict_proba(X_val)[:, 1]
        return (log_loss(np.asarray(y_val), p), int(model.best_iteration_ or params.n_estimators),
                row_log_loss(np.asarray(y_val), p))

    default_loss, default_iter, default_rows = evaluate(base)
    row_losses = {0: default_rows}  # trial number -> each validation row's log-loss
    rows = [{"trial": 0, **{k: getattr(base, k) for k in SEARCHED},
             "validation_log_loss": default_loss, "best_iteration": default_iter}]
    if not settings.enabled or settings.n_trials == 1:
        return TuneResult(base, default_iter, default_loss, default_loss, pd.DataFrame(rows),
                          "disabled", clock() - started, space)

    def propose(trial: optuna.Trial) -> LightGBMSettings:
        lo, hi = space["num_leaves"]
        c_lo, c_hi = space["min_child_samples"]
        return replace(
            base,
            learning_rate=trial.suggest_float("learning_rate", *space["learning_rate"], log=True),
            num_leaves=trial.suggest_int("num_leaves", int(lo), int(hi), log=True),
            min_child_samples=trial.suggest_int("min_child_samples", int(c_lo), int(c_hi),
                                                log=True),
            reg_lambda=trial.suggest_float("reg_lambda", *space["reg_lambda"], log=True),
            colsample_bytree=trial.suggest_float("colsample_bytree", *space["colsample_bytree"]),
            subsample=trial.suggest_float("subsample", *space["subsample"]),
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # constant_liar: a trial asked while others of its batch run keeps away from them
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=seed, constant_liar=settings.parallel > 1))
    # trial 0 is the configured settings, already evaluated: tell the sampler about it
    study.add_trial(optuna.trial.create_trial(
        params={k: _clip(getattr(base, k), space[k]) for k in SEARCHED},
        distributions=_distributions(space),
        value=default_loss,
        user_attrs={"best_iteration": default_iter},
    ))

    stopped_by = "n_trials"
    # Trials run in batches of `parallel`, each LightGBM on one thread: a batch is asked in
    # order, fitted at once and told in order, so the search depends on `parallel` and the
    # seed, never on which fit finished first.
    with ThreadPoolExecutor(max_workers=settings.parallel) as pool:
        while len(study.trials) < settings.n_trials and \
                clock() - started < settings.timeout_seconds:
            batch, proposed = [], []
            for _ in range(min(settings.parallel, settings.n_trials - len(study.trials))):
                batch.append(study.ask())
                proposed.append(propose(batch[-1]))  # sampled with the batch's earlier ones
            for trial, (loss, best_iter, per_row) in zip(batch, pool.map(evaluate, proposed),
                                                         strict=True):
                trial.set_user_attr("best_iteration", best_iter)
                row_losses[trial.number] = per_row
                study.tell(trial, loss)
    if len(study.trials) < settings.n_trials:
        stopped_by = "timeout"
        log.warning("tuning stopped by train.tune.timeout_seconds (%.0f s) after %d of %d "
                    "trials: the result depends on machine speed", settings.timeout_seconds,
                    len(study.trials), settings.n_trials)
    losses = [row_losses[0]]
    for t in study.trials[1:]:
        if t.value is None:
            continue
        rows.append({"trial": t.number, **t.params, "validation_log_loss": t.value,
                     "best_iteration": t.user_attrs["best_iteration"]})
        losses.append(row_losses[t.number])
    trials = pd.DataFrame(rows)
    pick, selection = select_trial(trials, losses, settings.select, groups)
    best_row = trials.iloc[pick]
    if int(best_row["trial"]) == 0:
        chosen = base
    else:
        chosen = replace(base, **{k: _cast(k, best_row[k]) for k in SEARCHED})
    return TuneResult(chosen, int(best_row["best_iteration"]),
                      float(best_row["validation_log_loss"]), default_loss, trials, stopped_by,
                      clock() - started, space, selection)


def select_trial(trials: pd.DataFrame, row_losses: list[np.ndarray], rule: str,
                 groups: np.ndarray | None = None) -> tuple[int, dict[str, Any]]:
    """The position (in `trials`) of the winning trial, and how it was picked.

    `best`: the lowest validation log-loss. `one_se`: of the trials whose paired
    difference from the best is within one lead-clustered standard error (`groups`), the
    one with the fewest `num_leaves`, then the largest `min_child_samples`, then the lowest
    log-loss. `row_losses[i]`: each validation row's log-loss under trial `i`."""
    best = int(trials["validation_log_loss"].to_numpy().argmin())
    gaps = [float(np.mean(r - row_losses[best])) for r in row_losses]
    ses = [clustered_standard_error(r - row_losses[best], groups) if i != best else 0.0
           for i, r in enumerate(row_losses)]
    pick = best
    if rule == "one_se":
        within = [i for i in range(len(trials)) if gaps[i] <= ses[i]]
        pick = min(within, key=lambda i: (int(trials["num_leaves"].iloc[i]),
                                          -int(trials["min_child_samples"].iloc[i]), gaps[i]))
    return pick, {
        "rule": rule,
        "best_trial": int(trials["trial"].iloc[best]),
        "chosen_trial": int(trials["trial"].iloc[pick]),
        "gap_to_best": round(gaps[pick], 6),
        "standard_error": round(ses[pick], 6),
        "within_one_se": int(sum(g <= s for g, s in zip(gaps, ses, strict=True))),
    }


def refit_rounds(best_iteration: int, n_fit_rows: int, n_all_rows: int) -> int:
    """Boosting rounds for a refit on `n_all_rows` after early stopping at `best_iteration`
    on `n_fit_rows`: scaled by the row ratio, at least 1."""
    if n_fit_rows < 1 or n_all_rows < n_fit_rows:
        raise SettingsError(f"refit_rounds needs 1 <= n_fit_rows <= n_all_rows; got "
                            f"{n_fit_rows}, {n_all_rows}")
    return max(1, int(math.ceil(best_iteration * n_all_rows / n_fit_rows)))


def _distributions(space: dict[str, tuple[float, float]]) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    return {
        "learning_rate": FloatDistribution(*space["learning_rate"], log=True),
        "num_leaves": IntDistribution(int(space["num_leaves"][0]), int(space["num_leaves"][1]),
                                      log=True),
        "min_child_samples": IntDistribution(int(space["min_child_samples"][0]),
                                             int(space["min_child_samples"][1]), log=True),
        "reg_lambda": FloatDistribution(*space["reg_lambda"], log=True),
        "colsample_bytree": FloatDistribution(*space["colsample_bytree"]),
        "subsample": FloatDistribution(*space["subsample"]),
    }


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def _cast(key: str, value: Any) -> Any:
    return int(value) if key in ("num_leaves", "min_child_samples") else float(value)


def settings_dict(params: LightGBMSettings) -> dict[str, Any]:
    """All LightGBM settings as a plain dict (for the summary and MLflow params)."""
    return asdict(params)
