"""Band cutoffs on calibrated probability, fitted on the calibration split; the 1-99 score.

A band set (e.g. cold / warm / hot) is a list of bands from lowest to highest. Every band
above the lowest starts at a cutoff on calibrated probability; a lead with p >= cutoff
belongs to that band or a higher one, so p == cutoff goes to the higher band. Cutoffs are
chosen from the top band down, each among the distinct calibration probabilities below the
band above it, leaving at least one distinct value for every lower band:

- `min_conversion` X, rule "band" (default): the band [c, next cutoff) (for the top band,
  p >= c) must convert at >= X, measured as the *observed* conversion of calibration
  leads, over at least `min_band_size` leads. The cutoff is the smallest c that satisfies
  it, so the band is as large as possible. The expected conversion (mean calibrated p) is
  reported next to it. Beware: a band average can be met by mixing weak leads with strong
  ones, so with a base rate above X the band may swallow nearly every lower lead.
  Rule "marginal" (`conversion_rule: marginal`): additionally every lead in the band must
  have calibrated p >= X, i.e. the cutoff is the smallest calibration probability >= X
  that also meets the band rule.
  If no c satisfies the rule, the cutoff with the highest observed conversion among bands
  of at least `min_band_size` leads is used and the band is marked `feasible: false` with
  a message.
- `top_share` s: the band holds the share s of calibration leads (closest achievable with
  ties); shares are per band, so hot 0.10 and warm 0.25 put 35 % above the warm cutoff.
- `capacity_per_week` N: N leads *newly enter* the band per week of scoring. With simulated
  scoring batches (`fit_bands(..., weekly=weekly_batches(...))`: every open calibration lead
  re-scored at every batch moment) the cutoff is the grid cutoff whose mean simulated new
  entries per week (in the band this batch, not in it the batch before; see
  `WeeklyBatches`) is closest to N, scaled by simulated / expected inflow when the set has
  `leads_per_week`. A lead stays open, often in the band, for weeks, so this is a much
  smaller band than a pooled-row share. Without batches the band holds the share
  N / leads_per_week of the (snapshot) rows, the older reading. `leads_per_week` is the
  inflow of the scored population, estimated by the caller from the calibration split.
  Without an inflow (an export with no creation dates), a capacity band falls back to a
  `min_conversion` target and says so in its `fallback` field: the band's
  `fallback_min_conversion` if set, else twice the highest `min_conversion` of the bands
  below it (capped at 0.95), else twice the calibration base rate. The set's
  `conversion_rule` applies to the fallback target as to any `min_conversion` band.

Share and capacity bands are marked infeasible when the target is outside what the data
can give (more leads than remain, or fewer than the ties at the top allow).

Promises are read conservatively. `promise: later_batch` (the default): a `min_conversion`
band's Wilson 95 % lower bound on the calibration split must clear the target plus the
margin a later batch of the same size needs (`later_batch_margin`: 1.96 standard errors of
the target's rate at the band's calibration count), so that a later batch's own lower bound
still clears the promise. `promise: lower_bound`: the calibration lower bound clears the
target (the true rate is at least the target, but a later batch measured with its own
interval lands below it about half the time when the rate sits at the target);
`promise: point` uses the observed rate. Cutoffs are chosen on the score grid, `S / 100`
for a whole score S, so a lead is in a band exactly when its 1-99 score (whole percent,
rounded down) is at least the band's `min_score`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from models.metrics import wilson_interval
from models.settings import BandSet, BandSpec, InputError, InsufficientDataError, SettingsError

__all__ = [
    "FittedBand",
    "FittedBands",
    "WeeklyBatches",
    "apply_bands",
    "band_table",
    "estimate_leads_per_week",
    "projected_leads_per_week",
    "fit_bands",
    "score_1_99",
    "weekly_batches",
    "wilson_low",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class FittedBand:
    """One fitted band and what it achieved on the calibration split."""

    name: str
    min_propensity: float
    target_kind: str | None = None
    target: float | None = None
    feasible: bool = True
    message: str | None = None
    n: int = 0
    conversions: int = 0
    rate: float | None = None
    expected_rate: float | None = None
    share: float = 0.0
    expected_per_week: float | None = None
    fallback: str | None = None
    # simulated new entries per week (mean, p10, p90; target for a capacity band), with
    # `fit_bands(..., weekly=...)`
    weekly_entries: dict[str, float] | None = None


@dataclass(frozen=True)
class FittedBands:
    """A fitted band set: bands from lowest to highest, with strictly increasing cutoffs."""

    set_name: str
    bands: tuple[FittedBand, ...]
    min_band_size: int = 30
    scoring_cadence_days: float = 7.0
    leads_per_week: float | None = None
    conversion_rule: str = "band"
    weekly: dict[str, Any] | None = None  # WeeklyBatches.summary() of the simulation used

    def __post_init__(self) -> None:
        if len(self.bands) < 2:
            raise SettingsError(f"band set `{self.set_name}` needs at least 2 bands")
        if self.bands[0].min_propensity != 0.0:
            raise SettingsError(
                f"band set `{self.set_name}`: the lowest band must start at 0; "
                f"got {self.bands[0].min_propensity}"
            )
        cut = self.cutoffs
        if not np.all(np.isfinite(cut)) or (cut <= 0).any() or (cut > 1).any():
            raise SettingsError(
                f"band set `{self.set_name}`: cutoffs must be in (0, 1]; got {cut.tolist()}"
            )
        if not np.all(np.diff(cut) > 0):
            raise SettingsError(
                f"band set `{self.set_name}`: cutoffs must be strictly increasing; "
                f"got {cut.tolist()}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """Band names, lowest first."""
        return tuple(b.name for b in self.bands)

    @property
    def cutoffs(self) -> np.ndarray:
        """min_propensity of every band above the lowest."""
        return np.array([b.min_propensity for b in self.bands[1:]], dtype=float)

    @property
    def feasible(self) -> bool:
        """False if any band's target could not be met."""
        return all(b.feasible for b in self.bands)

    @property
    def messages(self) -> list[str]:
        """Fallbacks taken and messages of infeasible bands, for logging and the report."""
        return [m for b in self.bands for m in (b.fallback, b.message) if m]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "format_version": FORMAT_VERSION,
            "set_name": self.set_name,
            "min_band_size": self.min_band_size,
            "scoring_cadence_days": self.scoring_cadence_days,
            "leads_per_week": self.leads_per_week,
            "conversion_rule": self.conversion_rule,
            "weekly": self.weekly,
            "feasible": self.feasible,
            "bands": [asdict(b) for b in self.bands],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedBands:
        """Inverse of `to_dict`; re-checks the cutoffs."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise SettingsError(
                f"fitted bands format_version must be {FORMAT_VERSION}; got {version!r}"
            )
        fields = set(FittedBand.__dataclass_fields__)
        bands = []
        for i, b in enumerate(data["bands"]):
            unknown = set(b) - fields
            if unknown:
                raise SettingsError(f"fitted band {i} has unknown keys {sorted(unknown)}")
            bands.append(FittedBand(**b))
        return cls(
            set_name=data["set_name"],
            bands=tuple(bands),
            min_band_size=int(data["min_band_size"]),
            scoring_cadence_days=float(data["scoring_cadence_days"]),
            leads_per_week=data.get("leads_per_week"),
            conversion_rule=data.get("conversion_rule", "band"),
            weekly=data.get("weekly"),
        )


# --------------------------------------------------------------------------- fitting


def _check_p(p: ArrayLike, name: str = "p") -> np.ndarray:
    arr = np.asarray(p, dtype=float).ravel()
    if not np.isfinite(arr).all():
        raise InputError(f"`{name}` must be finite; got {int((~np.isfinite(arr)).sum())} NaN/inf")
    if (arr < 0).any() or (arr > 1).any():
        raise InputError(
            f"`{name}` must be calibrated probabilities in [0, 1]; "
            f"got range [{arr.min():g}, {arr.max():g}]"
        )
    return arr


def _check_y(y: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size != n:
        raise InputError(f"`y` has {arr.size} values for {n} probabilities")
    if np.isnan(arr).any() or not np.isin(arr, (0.0, 1.0)).all():
        raise InputError("`y` must contain only 0 and 1")
    return arr.astype(int)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def fit_bands(
    p_cal: ArrayLike,
    y_cal: ArrayLike,
    band_set: BandSet,
    leads_per_week: float | None = None,
    weekly: WeeklyBatches | None = None,
) -> FittedBands:
    """Fit the cutoffs of `band_set` on calibrated probabilities and outcomes.

    See the module docstring for the rule of each target kind. Shares and capacities count
    rows, so pass one row per lead (e.g. each calibration lead's snapshot at the age you
    score at) when any band uses `top_share` or `capacity_per_week`. Raises
    `InsufficientDataError` when there are too few distinct probabilities to give every
    band its own cutoff.

    With `weekly` (simulated scoring batches, see `weekly_batches`) a capacity band's cutoff
    is instead the grid cutoff whose mean simulated *new entries* per week come closest to
    the capacity (times simulated inflow / `band_set.leads_per_week` when that is set), and
    every band records its simulated weekly entries. `band_set.leads_per_week`, when set,
    replaces the `leads_per_week` argument.
    """
    if not isinstance(band_set, BandSet):
        raise SettingsError(f"`band_set` must be a BandSet; got {type(band_set).__name__}")
    p = _check_p(p_cal, "p_cal")
    y = _check_y(y_cal, p.size)
    name = band_set.name
    fallbacks: dict[int, str] = {}
    if band_set.leads_per_week is not None:
        leads_per_week = band_set.leads_per_week
    if weekly is not None and not isinstance(weekly, WeeklyBatches):
        raise SettingsError(f"`weekly` must be WeeklyBatches; got {type(weekly).__name__}")
    if band_set.uses_capacity and leads_per_week is None and weekly is None:
        band_set, fallbacks = _capacity_fallback(band_set, float(y.mean()) if y.size else 0.0)
    if leads_per_week is not None and not (
        isinstance(leads_per_week, int | float)
        and not isinstance(leads_per_week, bool)
        and math.isfinite(leads_per_week)
        and leads_per_week > 0
    ):
        raise SettingsError(f"`leads_per_week` must be > 0; got {leads_per_week!r}")

    values, inverse = np.unique(p, return_inverse=True)  # ascending distinct probabilities
    k_bands = len(band_set.bands)
    if values.size < k_bands:
        raise InsufficientDataError(
            f"`bands.{name}` has {k_bands} bands but the calibration split has only "
            f"{values.size} distinct probabilities"
        )
    count_at = np.bincount(inverse, minlength=values.size)
    pos_at = np.bincount(inverse, weights=y, minlength=values.size)
    # Suffix sums: rows / positives with p >= values[i]; index values.size means "none".
    n_ge = np.append(np.cumsum(count_at[::-1])[::-1], 0)
    pos_ge = np.append(np.cumsum(pos_at[::-1])[::-1], 0.0)
    total = p.size
    min_size = band_set.min_band_size

    # Cutoffs lie on the score grid: a band starts at S / 100 for a whole score S, so it holds
    # exactly the leads scored S or more. grid_score[i]: the S whose band starts at values[i].
    grid_score: dict[int, int] = {}
    for score in range(2, 100):  # the largest S whose band starts at values[i] wins
        grid_score[int(np.searchsorted(values, score / 100 - 1e-12, side="left"))] = score
    grid_score.pop(values.size, None)
    grid = np.array(sorted(i for i in grid_score if i >= 1), dtype=np.int64)

    cut_idx: dict[int, int] = {}
    info: dict[int, tuple[bool, str | None]] = {}
    upper = values.size
    for k in range(k_bands - 1, 0, -1):
        spec = band_set.bands[k]
        # leave >= 1 value and >= 1 grid point for each lower band
        cand = grid[(np.arange(grid.size) >= k - 1) & (grid >= k) & (grid < upper)]
        if cand.size == 0:
            raise InsufficientDataError(
                f"`bands.{name}`: no room for a cutoff of band `{spec.name}` below the band "
                f"above it ({values.size} distinct probabilities, on the whole-percent grid)"
            )
        n_band = n_ge[cand] - n_ge[upper]
        pos_band = pos_ge[cand] - pos_ge[upper]
        feasible, message = True, None
        if spec.target_kind == "min_conversion":
            target = float(spec.target)  # type: ignore[arg-type]
            if band_set.promise in ("lower_bound", "later_batch"):
                # evidence: how far the band's lower bound (less a later batch's margin)
                # clears the target
                evidence = wilson_low(pos_band, n_band) - target - (
                    later_batch_margin(target, n_band) if band_set.promise == "later_batch"
                    else 0.0)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    evidence = np.where(n_band > 0, pos_band / np.maximum(n_band, 1) - target,
                                        -1.0)
            ok = (n_band >= min_size) & (evidence >= -1e-12)
            if band_set.conversion_rule == "marginal":
                ok &= values[cand] >= target
            if ok.any():
                choice = int(cand[np.argmax(ok)])  # smallest cutoff that works
            else:
                need = min(min_size, int(n_band.max()))
                rate = np.where(n_band >= need, pos_band / np.maximum(n_band, 1), -1.0)
                # the highest rate achievable. (The band with the most evidence, lower bound
                # less margin, was tried: on the synthetic sample it picks a noisy larger band
                # below the marginal cutoff whose later batches break the promise.)
                j = int(np.argmax(rate))  # smallest cutoff on ties
                choice = int(cand[j])
                feasible = False
                reading = {"point": "observed conversion",
                           "lower_bound": "conversion at the Wilson 95 % lower bound",
                           "later_batch": "conversion at the Wilson 95 % lower bound plus "
                                          "the margin of a later batch"}[band_set.promise]
                message = (
                    f"`bands.{name}` band `{spec.name}`: no cutoff gives >= {_pct(target)} "
                    f"{reading} with >= {min_size} calibration leads "
                    f"({band_set.conversion_rule} rule); using the best "
                    f"achievable {_pct(rate[j])} (n={int(n_band[j])}) at p >= {values[choice]:.4g}"
                )
        elif spec.target_kind == "capacity_per_week" and weekly is not None:
            choice, feasible, message = _weekly_capacity_cutoff(
                spec, band_set, weekly, cand, upper, grid_score, values.size
            )
        else:
            if spec.target_kind == "top_share":
                share = float(spec.target)  # type: ignore[arg-type]
                what = f"top_share {share:g}"
            else:
                share = float(spec.target) / float(leads_per_week)  # type: ignore[arg-type]
                what = (
                    f"capacity_per_week {spec.target:g} of {leads_per_week:g} leads per week "
                    f"(share {share:.3g})"
                )
            want = share * total
            j = int(np.argmin(np.abs(n_band - want)))  # first minimum: the larger band on ties
            choice = int(cand[j])
            lo, hi = int(n_band.min()), int(n_band.max())
            if not lo <= want <= hi:
                feasible = False
                message = (
                    f"`bands.{name}` band `{spec.name}`: {what} asks for {want:.1f} of {total} "
                    f"calibration leads but the data allows {lo}..{hi}; using {int(n_band[j])} "
                    f"(p >= {values[choice]:.4g})"
                )
        cut_idx[k] = choice
        info[k] = (feasible, message)
        upper = choice

    # Statistics of every band on the calibration split.
    starts = [0] + [cut_idx[k] for k in range(1, k_bands)]
    ends = starts[1:] + [values.size]
    sum_p_at = np.bincount(inverse, weights=p, minlength=values.size)
    cut_p = [0.0] + [grid_score[cut_idx[k]] / 100 for k in range(1, k_bands)] + [math.inf]
    fitted: list[FittedBand] = []
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        spec = band_set.bands[k]
        n = int(count_at[s:e].sum())
        conv = int(round(pos_at[s:e].sum()))
        feasible, message = info.get(k, (True, None))
        share = n / total
        fitted.append(
            FittedBand(
                name=spec.name,
                min_propensity=0.0 if k == 0 else grid_score[s] / 100,
                target_kind=spec.target_kind,
                target=None if spec.target is None else float(spec.target),
                feasible=feasible,
                message=message,
                n=n,
                conversions=conv,
                rate=conv / n if n else None,
                expected_rate=float(sum_p_at[s:e].sum() / n) if n else None,
                share=share,
                expected_per_week=None if leads_per_week is None else share * leads_per_week,
                fallback=fallbacks.get(k),
                weekly_entries=None if weekly is None or k == 0 else _entry_stats(
                    weekly, cut_p[k], cut_p[k + 1], spec, band_set),
            )
        )
    return FittedBands(
        set_name=name,
        bands=tuple(fitted),
        min_band_size=min_size,
        scoring_cadence_days=float(band_set.scoring_cadence_days),
        leads_per_week=None if leads_per_week is None else float(leads_per_week),
        conversion_rule=band_set.conversion_rule,
        weekly=None if weekly is None else {
            **weekly.summary(), "expected_leads_per_week": band_set.leads_per_week},
    )


def _entries_target(spec: BandSpec, band_set: BandSet, weekly: WeeklyBatches) -> float:
    """The capacity in simulated entries per week: scaled by simulated / expected inflow."""
    scale = 1.0 if band_set.leads_per_week is None else (
        weekly.inflow_per_week / band_set.leads_per_week)
    return float(spec.target) * scale  # type: ignore[arg-type]


def _entry_stats(weekly: WeeklyBatches, low: float, high: float, spec: BandSpec,
                 band_set: BandSet) -> dict[str, float]:
    per_week = weekly.entries(low, high)
    out = {"mean": float(per_week.mean()), "p10": float(np.quantile(per_week, 0.1)),
           "p90": float(np.quantile(per_week, 0.9))}
    if spec.target_kind == "capacity_per_week":
        out["target"] = _entries_target(spec, band_set, weekly)
    return out


def _weekly_capacity_cutoff(
    spec: BandSpec, band_set: BandSet, weekly: WeeklyBatches, cand: np.ndarray, upper: int,
    grid_score: dict[int, int], n_values: int,
) -> tuple[int, bool, str | None]:
    """(value index of the cutoff, feasible, message) for a capacity band on simulated
    weekly batches: the candidate whose mean new entries per week is closest to the target
    (the larger band on ties)."""
    want = _entries_target(spec, band_set, weekly)
    high = math.inf if upper >= n_values else grid_score[upper] / 100
    means = np.array([weekly.entries(grid_score[int(c)] / 100, high).mean() for c in cand])
    j = int(np.argmin(np.abs(means - want)))
    lo, hi = float(means.min()), float(means.max())
    if lo <= want <= hi:
        return int(cand[j]), True, None
    return int(cand[j]), False, (
        f"`bands.{band_set.name}` band `{spec.name}`: capacity_per_week {spec.target:g} asks "
        f"for {want:.1f} new entries per simulated week but the cutoffs allow {lo:.1f}..{hi:.1f}; "
        f"using {means[j]:.1f} (score >= {grid_score[int(cand[j])]})"
    )


def later_batch_margin(target: float, n: ArrayLike, z: float = 1.96) -> np.ndarray:
    """How far above `target` a band's true conversion must lie for a later batch of `n`
    band leads to clear `target` at its own Wilson 95 % lower bound: about z standard
    errors of a rate `target` at `n` leads (`promise: later_batch`)."""
    m = np.maximum(np.asarray(n, dtype=float), 1.0)
    return z * np.sqrt(target * (1 - target) / m)


def wilson_low(successes: np.ndarray, n: np.ndarray, z: float = 1.96) -> np.ndarray:
    """Vectorised lower end of the Wilson score interval (0 where n == 0)."""
    k = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        phat = k / m
        denom = 1 + z * z / m
        centre = (phat + z * z / (2 * m)) / denom
        half = z * np.sqrt(phat * (1 - phat) / m + z * z / (4 * m * m)) / denom
        low = np.maximum(0.0, centre - half)
    return np.where(m > 0, low, 0.0)


def _capacity_fallback(band_set: BandSet, base_rate: float) -> tuple[BandSet, dict[int, str]]:
    """`band_set` with each capacity band turned into a min_conversion band, and the reasons.

    Used when no inflow is known (the export has no creation dates, so "N leads per week"
    has no meaning); see the module docstring for how the fallback target is chosen.
    """
    specs = list(band_set.bands)
    reasons: dict[int, str] = {}
    for i, spec in enumerate(specs):
        if spec.target_kind != "capacity_per_week":
            continue
        lower = [b.target for b in specs[:i] if b.target_kind == "min_conversion"]
        if spec.fallback_min_conversion is not None:
            target, why = spec.fallback_min_conversion, "its fallback_min_conversion"
        elif lower:
            target = min(0.95, 2 * max(lower))  # type: ignore[type-var]
            why = "twice the highest min_conversion below it"
        else:
            target = min(0.95, max(2 * base_rate, 0.01))
            why = "twice the calibration base rate"
        higher = [b.target for b in specs[i + 1:] if b.target_kind == "min_conversion"]
        if spec.fallback_min_conversion is None and higher and not target < min(higher):  # type: ignore[type-var]
            target = ((max(lower) if lower else base_rate) + min(higher)) / 2  # type: ignore[type-var,operator]
            why = "halfway between the bands around it"
        specs[i] = BandSpec(name=spec.name, target_kind="min_conversion", target=float(target))
        reasons[i] = (
            f"`bands.{band_set.name}` band `{spec.name}`: capacity_per_week {spec.target:g} "
            f"needs the lead inflow per week, which this data does not give (no complete "
            f"created_at); sized by min_conversion {target:.3g} instead ({why}). Map a "
            f"creation date to get capacity sizing, or set `fallback_min_conversion` on the band."
        )
    return replace(band_set, bands=tuple(specs)), reasons


def estimate_leads_per_week(created_at: ArrayLike, lead_ids: ArrayLike | None = None) -> float:
    """Lead inflow per week: distinct leads / weeks spanned by their creation times.

    The span counts whole days, first to last creation day inclusive. Pass `lead_ids`
    when `created_at` has one row per snapshot rather than per lead.
    """
    created = pd.to_datetime(pd.Series(np.asarray(created_at)))
    if created.empty or created.isna().any():
        raise InputError("`created_at` must be non-empty and have no missing values")
    if lead_ids is not None:
        ids = np.asarray(lead_ids)
        if ids.size != created.size:
            raise InputError(f"`lead_ids` has {ids.size} values for {created.size} timestamps")
        created = created.groupby(ids).min()
    days = (created.max().normalize() - created.min().normalize()).days + 1
    return float(created.size / (days / 7))


def projected_leads_per_week(created_at: ArrayLike, at: Any, min_weeks: int = 8,
                             max_change: float = 2.0) -> float | None:
    """Lead inflow per week expected at `at` (the moment scoring starts): a least-squares
    line through the leads created per whole week (the last whole weeks before the last
    creation day; a partial first week is left out), evaluated at `at`.

    The projection is clipped to [1 / max_change, max_change] x the mean of the fitted
    weeks, so a noisy slope cannot run away. None with fewer than `min_weeks` whole weeks.
    One value per lead: pass lead-level creation times.
    """
    created = pd.to_datetime(pd.Series(np.asarray(created_at)))
    if created.empty or created.isna().any():
        raise InputError("`created_at` must be non-empty and have no missing values")
    last = created.max().normalize() + pd.Timedelta(days=1)  # end of the last creation day
    first = created.min().normalize()
    n_weeks = int((last - first).days // 7)
    if n_weeks < min_weeks:
        return None
    start = last - pd.Timedelta(days=7 * n_weeks)
    week = ((created - start).dt.total_seconds() // (7 * 86_400)).to_numpy()
    counts = np.bincount(week[week >= 0].astype(np.int64), minlength=n_weeks)[:n_weeks]
    mid = np.arange(n_weeks) + 0.5  # week midpoints, in weeks from `start`
    slope, intercept = np.polyfit(mid, counts.astype(float), 1)
    t = (pd.Timestamp(at) - start).total_seconds() / (7 * 86_400)
    mean = float(counts.mean())
    return float(np.clip(intercept + slope * t, mean / max_change, mean * max_change))


# --------------------------------------------------------------------------- weekly batches


@dataclass(frozen=True)
class WeeklyBatches:
    """Simulated scoring batches: every open lead's calibrated p at each batch moment.

    Build it with `weekly_batches`. Batch `j` is at `anchor + j * cadence_days`; a lead's
    cohort is the first batch at or after its creation and its age the batches since then.
    A lead *enters* a band in a batch when it is in the band there and was not in it in the
    batch before (a lead first seen, or not open the batch before, was in no band).

    Weekly entries are read as a steady state with leads of every age, the way a real batch
    sees them: entries per cohort and age `M[c, k]` are counted where observed (the batch
    `c + k` exists); where not (a young cohort's late ages), the cohort's size times the
    entry rate per lead at that age over the cohorts observed there stands in. Simulated week
    `w` (one per cohort batch) then adds age `k` of cohort `(w - k) mod n_cohorts` for every
    observed age: each simulated week holds one cohort at every age, like a real batch.
    Counts are scaled to leads per week by the creation span (whole days, first to last
    creation day, as in `estimate_leads_per_week`), so the mean is the weekly inflow times
    the lifetime entries per lead even when the first and last cohorts are partial weeks.
    Ages beyond the oldest cohort's span are not seen and not counted.
    """

    cadence_days: float
    n_batches: int
    n_cohorts: int
    cohort_size: np.ndarray  # leads per cohort (n_cohorts)
    p: np.ndarray  # one value per (lead, batch) row
    prev_p: np.ndarray  # the lead's p in the batch before, NaN if it was not in it
    cohort: np.ndarray  # per row
    age: np.ndarray  # per row, in batches
    span_weeks: float = 1.0  # creation span of the leads, in weeks

    @property
    def per_week(self) -> float:
        """Entries summed over the simulated weeks x this = entries per week on average."""
        return self.n_cohorts / self.span_weeks

    @property
    def n_leads(self) -> int:
        return int(self.cohort_size.sum())

    @property
    def inflow_per_week(self) -> float:
        """New leads per week in the simulation."""
        return float(self.cohort_size.sum() / self.span_weeks)

    def entries(self, low: float, high: float = math.inf) -> np.ndarray:
        """New entries per simulated week (one value per cohort) into the band
        `low <= p < high`, in leads per week (see the class docstring)."""
        inside = (self.p >= low) & (self.p < high)
        before = (self.prev_p >= low) & (self.prev_p < high)  # NaN compares False
        new = inside & ~before
        n_ages = self.n_batches
        cells = np.bincount(self.cohort[new] * n_ages + self.age[new],
                            minlength=self.n_cohorts * n_ages).reshape(self.n_cohorts, n_ages)
        k = np.arange(n_ages)
        observed = k[None, :] <= (self.n_batches - 1 - np.arange(self.n_cohorts))[:, None]
        at_risk = (self.cohort_size[:, None] * observed).sum(axis=0)
        rate = np.divide((cells * observed).sum(axis=0), at_risk,
                         out=np.zeros(n_ages), where=at_risk > 0)
        filled = np.where(observed, cells, self.cohort_size[:, None] * rate[None, :])
        filled[:, at_risk == 0] = 0.0
        weeks = np.arange(self.n_cohorts)
        rows = (weeks[:, None] - k[None, :]) % self.n_cohorts
        return filled[rows, k[None, :]].sum(axis=1) * self.per_week

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the simulation."""
        return {
            "cadence_days": self.cadence_days,
            "batches": self.n_batches,
            "simulated_weeks": self.n_cohorts,
            "leads": self.n_leads,
            "rows": int(self.p.size),
            "inflow_per_week": self.inflow_per_week,
            "max_age_days": (self.n_batches - 1) * self.cadence_days,
            "statistic": "mean",
        }


def weekly_batches(
    batches: pd.DataFrame, leads: pd.DataFrame, cadence_days: float = 7.0
) -> WeeklyBatches:
    """Prepare simulated scoring batches for `fit_bands(..., weekly=...)`.

    `batches`: one row per open lead per batch, columns `lead_id`, `as_of` (the batch
    moment; batches `cadence_days` apart) and `p` (calibrated probability as scoring sees
    it then). `leads`: every simulated lead, columns `lead_id` and `created_at` (a lead
    open in no batch still counts in the inflow). Batch 0 is the earliest `as_of`.
    """
    for frame, cols, what in ((batches, ("lead_id", "as_of", "p"), "batches"),
                              (leads, ("lead_id", "created_at"), "leads")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InputError(f"`{what}` lacks column(s) {missing}")
    cadence = float(cadence_days)
    if not (math.isfinite(cadence) and cadence > 0):
        raise SettingsError(f"`cadence_days` must be > 0; got {cadence_days!r}")
    if batches.empty:
        raise InsufficientDataError("no simulated scoring batch holds an open lead")
    p = _check_p(batches["p"], "batches.p")
    step = pd.Timedelta(days=cadence).value
    as_of = pd.to_datetime(batches["as_of"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    anchor = as_of.min()
    offset = as_of - anchor
    batch = np.rint(offset / step).astype(np.int64)
    off_grid = np.abs(offset - batch * step) > 1e9  # more than a second off the grid
    if off_grid.any():
        raise InputError(
            f"`batches.as_of` must be {cadence:g} days apart from the first batch; "
            f"{int(off_grid.sum())} rows are not "
            f"(e.g. {batches['as_of'].iloc[int(np.argmax(off_grid))]})"
        )
    n_batches = int(batch.max()) + 1
    created = pd.to_datetime(leads["created_at"]).to_numpy(dtype="datetime64[ns]")
    if np.isnat(created).any():
        raise InputError(f"`leads.created_at` has {int(np.isnat(created).sum())} missing values")
    if leads["lead_id"].duplicated().any():
        raise InputError("`leads.lead_id` must be unique")
    # the first batch at or after creation
    lead_cohort = np.ceil((created.astype(np.int64) - anchor) / step).astype(np.int64)
    lead_cohort = np.maximum(lead_cohort, 0)
    ids = pd.Index(leads["lead_id"].astype(str))
    pos = ids.get_indexer(batches["lead_id"].astype(str))
    if (pos < 0).any():
        raise InputError(f"{int((pos < 0).sum())} batch rows name leads missing from `leads` "
                         f"(e.g. {batches['lead_id'].iloc[int(np.argmax(pos < 0))]!r})")
    cohort = lead_cohort[pos]
    age = batch - cohort
    if (age < 0).any():
        raise InputError(f"{int((age < 0).sum())} batch rows are before their lead's creation")
    if pd.Series(pos * n_batches + batch).duplicated().any():
        raise InputError("`batches` has a lead twice in one batch")
    in_range = lead_cohort < n_batches
    days = (pd.Timestamp(created[in_range].max()).normalize()
            - pd.Timestamp(created[in_range].min()).normalize()).days + 1
    n_cohorts = int(lead_cohort[in_range].max()) + 1
    sizes = np.bincount(lead_cohort[in_range], minlength=n_cohorts).astype(float)
    # the same lead's p in the batch before
    key = pos * n_batches + batch
    order = np.argsort(key, kind="stable")
    prev = np.full(p.size, np.nan)
    sorted_key, sorted_pos = key[order], pos[order]
    follows = np.r_[False, (np.diff(sorted_key) == 1) & (sorted_pos[1:] == sorted_pos[:-1])]
    prev_sorted = np.r_[np.nan, p[order][:-1]]
    prev[order] = np.where(follows, prev_sorted, np.nan)
    return WeeklyBatches(cadence_days=cadence, n_batches=n_batches, n_cohorts=n_cohorts,
                         cohort_size=sizes, p=p, prev_p=prev, cohort=cohort, age=age,
                         span_weeks=days / 7)


# --------------------------------------------------------------------------- applying


def apply_bands(p: ArrayLike, fitted: FittedBands) -> np.ndarray:
    """Band name per calibrated probability; p equal to a cutoff goes to the higher band."""
    arr = _check_p(p)
    idx = np.searchsorted(fitted.cutoffs, arr, side="right")
    return np.asarray(fitted.names)[idx]


def band_table(p: ArrayLike, y: ArrayLike | None, fitted: FittedBands) -> list[dict[str, Any]]:
    """Per band (lowest first): name, min_propensity, promised_conversion, n, conversions,
    rate, ci_low, ci_high (Wilson 95 %), mean_propensity, share.

    `promised_conversion` is the band's `min_conversion` target, else None. With `y=None`
    (a scoring batch) conversions, rate and the interval are None.
    """
    arr = _check_p(p)
    yy = None if y is None else _check_y(y, arr.size)
    labels = apply_bands(arr, fitted)
    rows: list[dict[str, Any]] = []
    for band in fitted.bands:
        mask = labels == band.name
        n = int(mask.sum())
        row: dict[str, Any] = {
            "name": band.name,
            "min_propensity": band.min_propensity,
            "promised_conversion": band.target if band.target_kind == "min_conversion" else None,
            "n": n,
            "conversions": None,
            "rate": None,
            "ci_low": None,
            "ci_high": None,
            "mean_propensity": float(arr[mask].mean()) if n else None,
            "share": n / arr.size if arr.size else 0.0,
        }
        if yy is not None:
            conv = int(yy[mask].sum())
            low, high = wilson_interval(conv, n)
            row.update(
                conversions=conv,
                rate=conv / n if n else None,
                ci_low=low if n else None,
                ci_high=high if n else None,
            )
        rows.append(row)
    return rows


def score_1_99(p: ArrayLike) -> np.ndarray:
    """The 1-99 score: the calibrated probability in whole percent, rounded down and clipped
    to [1, 99]: a lead scored 20 converts 20 to 21 times in 100, and a band whose cutoff is
    S / 100 holds exactly the leads scored S or more. No lead is ever certain either way.
    """
    arr = _check_p(p)
    return np.clip(np.floor(100 * arr + 1e-9), 1, 99).astype(int)
