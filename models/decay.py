"""How fast does interest fade? A half-life per intent group, learned from conversions.

For each event group (demo requests, pricing views, blog reads, ...) and each half-life `h`
on a log grid, the group's decayed count `D_h = sum over its events before as_of of
2^(-age / h)` (`features.behaviour.group_decay_sums`) enters a small logistic model

    logit P(convert) = a + b * log1p(all-time count of the group) + c * log1p(D_h)

fitted on the training snapshots. The all-time count carries how much a lead did, so `D_h`
carries only *when*: the half-life whose model has the lowest training log-loss is the
estimate (refined between grid points by a parabola in log h). Its 95 % interval is the
percentile interval of the same estimate over a bootstrap that resamples *leads* (a lead's
snapshots move together). Flat profiles give wide intervals: the data cannot tell.

Whether the learned half-life helps is decided on the validation (calibration) split only:
its log-loss at the learned half-life against the configured `decay_half_life_days`.

Used as features (`select_decayed_features`, called by the train stage): a group whose
learned half-life helps on validation gets `<group>_decayed_hl`, its decayed count at that
half-life (`features.behaviour.decayed_hl_features`). Half-lives are fitted on the training
split and judged on the calibration split; the test split is never read. The chosen
half-lives travel in the bundle (`metadata["decayed_half_lives"]`) so scoring builds the
same columns (`add_decayed_features`). With `decay.features: auto` (the default) the columns
must also help the whole served model: `models.training.train_all` keeps them only when its
validation log-loss (most recent training leads) drops by more than one standard error
(`keep_optional`); else the model is fitted without them and the bundle holds none.

Manual rules that subtract points after N days without activity ("-10 after 30 days")
are read as a half-life by `implied_half_life`: the half-life of the exponential that loses
the same share of the group's points after N days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.behaviour import decayed_hl_column, decayed_hl_features, group_decay_sums
from features.settings import FeatureSettings
from models.rules import DecayRule, RuleSet

__all__ = ["DEFAULT_GRID", "DecayFit", "DecaySettings", "add_decayed_features",
           "chosen_half_lives", "fit_decays", "fit_group_decay", "grid_with",
           "decayed_columns", "implied_half_life", "manual_inactivity_half_lives",
           "select_decayed_features"]

#: Half-lives tried, in days: log-spaced from 1 day to 2 years.
DEFAULT_GRID: tuple[float, ...] = tuple(float(round(x, 2)) for x in np.geomspace(1, 730, 25))
_RIDGE = 1e-4


@dataclass(frozen=True)
class DecayFit:
    group: str
    half_life_days: float
    ci_low: float
    ci_high: float
    n_snapshots: int
    n_with_events: int
    profile: tuple[tuple[float, float], ...]  # (half-life, training log-loss)
    configured_half_life_days: float | None = None
    val_log_loss_learned: float | None = None
    val_log_loss_configured: float | None = None

    @property
    def helps(self) -> bool | None:
        """The learned half-life beats the configured one on validation."""
        if self.val_log_loss_learned is None or self.val_log_loss_configured is None:
            return None
        return self.val_log_loss_learned < self.val_log_loss_configured

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "helps": self.helps}


def _design(count_all: np.ndarray, decayed: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(decayed)), np.log1p(count_all), np.log1p(decayed)])


def _fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray | None = None,
         iters: int = 30) -> tuple[np.ndarray, float]:
    """Weighted ridge-logistic fit by Newton steps; (coefficients, weighted mean log-loss)."""
    beta = np.zeros(X.shape[1]) if beta is None else beta.copy()
    ridge = _RIDGE * w.sum() * np.eye(X.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iters):
        eta = np.clip(X @ beta, -30, 30)
        p = 1.0 / (1.0 + np.exp(-eta))
        g = X.T @ (w * (y - p)) - ridge @ beta
        H = (X * (w * p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(H, g)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta, _log_loss(X, y, w, beta)


def _log_loss(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray) -> float:
    eta = np.clip(X @ beta, -30, 30)
    # log(1 + e^eta) - y * eta, stably
    loss = np.logaddexp(0.0, eta) - y * eta
    return float((w * loss).sum() / w.sum())


def _refine(grid: np.ndarray, losses: np.ndarray) -> float:
    """The minimum of the parabola through the best grid point and its neighbours, in log h."""
    i = int(np.argmin(losses))
    if i == 0 or i == len(grid) - 1:
        return float(grid[i])
    x = np.log(grid[i - 1:i + 2])
    a, b, _ = np.polyfit(x, losses[i - 1:i + 2], 2)
    if a <= 0:
        return float(grid[i])
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))


def fit_group_decay(
    group: str,
    decayed: Mapping[float, np.ndarray],
    count_all: np.ndarray,
    y: np.ndarray,
    lead_ids: np.ndarray,
    *,
    validation: tuple[Mapping[float, np.ndarray], np.ndarray, np.ndarray] | None = None,
    configured_half_life_days: float | None = None,
    n_boot: int = 60,
    seed: int = 0,
) -> DecayFit:
    """The learned half-life of one group from training snapshots.

    `decayed`: half-life -> the group's decayed count per training snapshot; `count_all`:
    its all-time count; `y`: 0/1 labels; `lead_ids`: each snapshot's lead (for the lead
    bootstrap). `validation`: (decayed by half-life, count_all, y) of the validation split,
    which must hold `configured_half_life_days` among its half-lives to be compared.
    """
    grid = np.array(sorted(decayed))
    if grid.size < 3:
        raise ValueError(f"decay: at least 3 half-lives are needed; got {grid.size}")
    y = np.asarray(y, dtype=np.float64)
    count_all = np.asarray(count_all, dtype=np.float64)
    designs = [_design(count_all, np.asarray(decayed[h], dtype=np.float64)) for h in grid]
    ones = np.ones(len(y))
    fits = [_fit(X, y, ones) for X in designs]
    losses = np.array([loss for _, loss in fits])
    estimate = _refine(grid, losses)

    codes = np.unique(np.asarray(lead_ids).astype(str), return_inverse=True)[1]
    n_leads = int(codes.max()) + 1 if codes.size else 0
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n_leads, n_leads), minlength=n_leads)[codes]
        w = w.astype(np.float64)
        boot = np.array([_fit(X, y, w, beta, iters=8)[1] for X, (beta, _) in
                         zip(designs, fits, strict=True)])
        draws.append(_refine(grid, boot))
    low, high = (np.quantile(draws, [0.025, 0.975]) if draws else (estimate, estimate))

    val_learned = val_configured = None
    if validation is not None and configured_half_life_days is not None:
        v_decayed, v_count, v_y = validation
        v_y = np.asarray(v_y, dtype=np.float64)
        v_count = np.asarray(v_count, dtype=np.float64)
        nearest = float(grid[np.argmin(np.abs(np.log(grid) - math.log(estimate)))])
        conf = float(configured_half_life_days)
        if nearest in v_decayed and conf in v_decayed and conf in decayed:
            beta_l = fits[int(np.flatnonzero(grid == nearest)[0])][0]
            beta_c = _fit(_design(count_all, np.asarray(decayed[conf], float)), y, ones)[0]
            v_ones = np.ones(len(v_y))
            val_learned = _log_loss(_design(v_count, np.asarray(v_decayed[nearest], float)),
                                    v_y, v_ones, beta_l)
            val_configured = _log_loss(_design(v_count, np.asarray(v_decayed[conf], float)),
                                       v_y, v_ones, beta_c)
    return DecayFit(
        group=group, half_life_days=estimate, ci_low=float(low), ci_high=float(high),
        n_snapshots=int(len(y)), n_with_events=int((count_all > 0).sum()),
        profile=tuple((float(h), float(v)) for h, v in zip(grid, losses, strict=True)),
        configured_half_life_days=configured_half_life_days,
        val_log_loss_learned=val_learned, val_log_loss_configured=val_configured,
    )


def implied_half_life(points_lost_share: float, after_days: float) -> float:
    """The half-life of an exponential that keeps `1 - points_lost_share` of a score after
    `after_days`: a rule "-10 of 20 points after 30 days" (share 0.5) implies 30 days."""
    if not 0 < points_lost_share < 1:
        raise ValueError(f"the share of points lost must be in (0, 1); got {points_lost_share!r}")
    if not after_days > 0:
        raise ValueError(f"days must be > 0; got {after_days!r}")
    return float(after_days * math.log(2) / -math.log(1 - points_lost_share))


def grid_with(configured: float | None, grid: Sequence[float] = DEFAULT_GRID) -> list[float]:
    """The grid plus the configured half-life (so validation can compare both)."""
    out = set(float(h) for h in grid)
    if configured is not None:
        out.add(float(configured))
    return sorted(out)


_COUNT = 1e9  # a half-life so long that every event weighs 1: the all-time count
#: Fewer training snapshots with the group's events than this: no half-life is fitted.
MIN_WITH_EVENTS = 50


def fit_decays(train: pd.DataFrame, validation: pd.DataFrame | None,
               events: pd.DataFrame | None, settings: FeatureSettings, *,
               grid: Sequence[float] = DEFAULT_GRID, n_boot: int = 40,
               seed: int = 0) -> list[DecayFit]:
    """A `DecayFit` per intent group of `settings.event_groups` with enough events.

    `train` / `validation`: spines with `lead_id`, `as_of`, `label` (training and
    calibration splits; never the test split). The configured `decay_half_life_days`
    joins the grid so validation can compare it with the learned one.
    """
    if events is None or not len(events) or not settings.event_groups:
        return []
    conf = float(settings.decay_half_life_days)
    hs = grid_with(conf, grid)

    def sums(spine: pd.DataFrame) -> dict[float, pd.DataFrame]:
        return group_decay_sums(spine[["lead_id", "as_of"]], events, settings, [*hs, _COUNT])

    tr = sums(train)
    va = sums(validation) if validation is not None and len(validation) else None
    y = train["label"].to_numpy(dtype=np.float64)
    if y.min(initial=1) == y.max(initial=0):
        return []
    out = []
    for g in settings.event_groups:
        col = f"decay_{g}"
        count = tr[_COUNT][col].to_numpy()
        if int((count > 0).sum()) < MIN_WITH_EVENTS:
            continue
        val = None
        if va is not None:
            val = ({h: va[h][col].to_numpy() for h in hs}, va[_COUNT][col].to_numpy(),
                   validation["label"].to_numpy(dtype=np.float64))
        out.append(fit_group_decay(g, {h: tr[h][col].to_numpy() for h in hs}, count, y,
                                   train["lead_id"].to_numpy(), validation=val,
                                   configured_half_life_days=conf, n_boot=n_boot, seed=seed))
    return out


def manual_inactivity_half_lives(ruleset: RuleSet,
                                 rule_x_train: pd.DataFrame) -> list[dict[str, Any]]:
    """What each manual inactivity (decay) rule implies as a half-life: the share of a
    typical active lead's manual points (the median total of training snapshots with a
    positive total) its first step takes away after `after_days`."""
    out = []
    totals = rule_x_train[ruleset.names].to_numpy(dtype=float) @ ruleset.points
    typical = float(np.median(totals[totals > 0])) if (totals > 0).any() else float("nan")
    for r in ruleset.rules:
        if not isinstance(r, DecayRule) or r.points >= 0:
            continue
        share = -float(r.points) / typical if typical > 0 else float("nan")
        implied = (implied_half_life(share, r.after_days) if 0 < share < 1 else None)
        out.append({"rule": r.name, "points": float(r.points), "after_days": r.after_days,
                    "per_days": r.per_days, "typical_points": typical,
                    "implied_half_life_days": implied})
    return out


@dataclass(frozen=True)
class DecaySettings:
    """The `decay` params section: `features` says when the chosen groups' learned-decay
    features enter the model: `auto` (the default) when they lower the served model's
    validation log-loss, `true` always, `false` never; `n_boot` is the number of
    lead-bootstrap draws of each half-life's interval."""

    features: bool | Literal["auto"] = "auto"
    n_boot: int = 40

    def __post_init__(self) -> None:
        if not isinstance(self.features, bool) and self.features != "auto":
            raise ValueError("`decay.features` must be true, false or auto; got "
                             f"{self.features!r}")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise ValueError(f"`decay.n_boot` must be an integer >= 0; got {self.n_boot!r}")

    @classmethod
    def from_params(cls, raw: Mapping[str, Any] | None) -> DecaySettings:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"features", "n_boot"})
        if unknown:
            raise ValueError(f"`decay.{unknown[0]}` is not a known setting; known: "
                             "features, n_boot")
        return cls(**raw)


def chosen_half_lives(fits: Sequence[DecayFit]) -> dict[str, float]:
    """group -> learned half-life, for the groups whose validation verdict says it helps."""
    return {f.group: float(f.half_life_days) for f in fits if f.helps}


def add_decayed_features(frame: pd.DataFrame, events: pd.DataFrame | None,
                         settings: FeatureSettings,
                         half_lives: Mapping[str, float] | None) -> pd.DataFrame:
    """`frame` (with `lead_id`, `as_of`) plus `<group>_decayed_hl` per group of
    `half_lives`; a new frame, `frame` itself unchanged (returned as is when none)."""
    if not half_lives:
        return frame
    extra = decayed_hl_features(frame[["lead_id", "as_of"]], events, settings, half_lives)
    return pd.concat([frame.drop(columns=list(extra.columns), errors="ignore"), extra], axis=1)


def select_decayed_features(frame: pd.DataFrame, parts: np.ndarray,
                            events: pd.DataFrame | None, settings: FeatureSettings, *,
                            n_boot: int = 40, seed: int = 0,
                            grid: Sequence[float] = DEFAULT_GRID,
                            ) -> tuple[list[DecayFit], dict[str, float]]:
    """Fit a half-life per group on the rows whose `parts` is "train", judge it on the
    "calibration" rows, and return (the fits, group -> half-life of those that help). The
    "test" rows are dropped before anything is computed."""
    parts = np.asarray(parts)
    cols = ["lead_id", "as_of", "label"]
    train = frame.loc[parts == "train", cols]
    cal = frame.loc[parts == "calibration", cols]
    fits = fit_decays(train, cal if len(cal) else None, events, settings, grid=grid,
                      n_boot=n_boot, seed=seed)
    return fits, chosen_half_lives(fits)


def decayed_columns(half_lives: Mapping[str, float] | None) -> list[str]:
    """The feature names `add_decayed_features` adds for `half_lives`."""
    return [decayed_hl_column(g) for g in (half_lives or {})]
