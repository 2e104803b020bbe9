"""Typed, validated settings for the modelling code, and its error types.

Each params.yaml section the modelling code uses maps to a frozen dataclass here:
`split` -> `SplitSettings`, `train` -> `TrainSettings` (with `LightGBMSettings` and
`LogRegSettings`), `calibration` -> `CalibrationSettings`, and each entry of `bands`
-> `BandSet`. The `parse_*` functions take the plain mapping loaded from YAML and fail
early with messages that name the offending key, e.g.
"`train.lightgbm.learning_rate` must be > 0; got -1". Nothing here reads a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BAND_TARGET_KEYS",
    "BandSet",
    "BandSpec",
    "CalibrationSettings",
    "InputError",
    "InsufficientDataError",
    "LightGBMSettings",
    "LogRegSettings",
    "ModelError",
    "SampleSettings",
    "SettingsError",
    "SplitSettings",
    "TrainSettings",
    "parse_band_set",
    "parse_bands",
    "parse_calibration",
    "parse_split",
    "parse_train",
]


class ModelError(ValueError):
    """Base class of the errors raised by `models`."""


class SettingsError(ModelError):
    """A settings value is missing, of the wrong type or out of range."""


class InsufficientDataError(ModelError):
    """The data is too small (too few rows, leads, positives) for the requested fit."""


class InputError(ModelError):
    """An input frame or array is malformed (missing column, NaN, wrong shape...)."""


BandPolicy = Literal["conversion", "share", "capacity"]
BandTargetKind = Literal["min_conversion", "top_share", "capacity_per_week"]
CalibrationMethod = Literal["isotonic", "sigmoid", "auto"]
ConversionRule = Literal["band", "marginal"]

#: Which per-band target key each set-level policy implies.
BAND_TARGET_KEYS: dict[str, str] = {
    "conversion": "min_conversion",
    "share": "top_share",
    "capacity": "capacity_per_week",
}


# --------------------------------------------------------------------------- helpers


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(f"`{path}` must be a number; got {value!r}")
    if not math.isfinite(value):
        raise SettingsError(f"`{path}` must be finite; got {value!r}")
    return float(value)


def _integer(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SettingsError(f"`{path}` must be an integer; got {value!r}")
    return int(value)


def _positive(path: str, value: Any) -> float:
    x = _number(path, value)
    if x <= 0:
        raise SettingsError(f"`{path}` must be > 0; got {value!r}")
    return x


def _positive_int(path: str, value: Any, minimum: int = 1) -> int:
    x = _integer(path, value)
    if x < minimum:
        raise SettingsError(f"`{path}` must be >= {minimum}; got {value!r}")
    return x


def _open_unit(path: str, value: Any) -> float:
    x = _number(path, value)
    if not 0 < x < 1:
        raise SettingsError(f"`{path}` must be in (0, 1); got {value!r}")
    return x


def _half_open_unit(path: str, value: Any) -> float:
    x = _number(path, value)
    if not 0 < x <= 1:
        raise SettingsError(f"`{path}` must be in (0, 1]; got {value!r}")
    return x


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"`{path}` must be a mapping; got {value!r}")
    return value


def _check_keys(path: str, mapping: Mapping[str, Any], required: set[str], optional: set[str]):
    missing = sorted(required - set(mapping))
    if missing:
        raise SettingsError(f"`{path}` is missing {', '.join(f'`{k}`' for k in missing)}")
    unknown = sorted(set(mapping) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise SettingsError(
            f"`{path}` has unknown key(s) {', '.join(f'`{k}`' for k in unknown)}; "
            f"allowed: {allowed}"
        )


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitSettings:
    """Fractions of leads per part: oldest -> train, then calibration, newest -> test."""

    train: float = 0.6
    calibration: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        for key in ("train", "calibration", "test"):
            _open_unit(f"split.{key}", getattr(self, key))
        total = self.train + self.calibration + self.test
        if abs(total - 1.0) > 1e-6:
            raise SettingsError(
                f"`split.train` + `split.calibration` + `split.test` must sum to 1; got {total:g}"
            )

    @property
    def fractions(self) -> tuple[float, float, float]:
        """(train, calibration, test)."""
        return (self.train, self.calibration, self.test)


def parse_split(mapping: Mapping[str, Any]) -> SplitSettings:
    """Parse the `split` section."""
    m = _mapping("split", mapping)
    _check_keys("split", m, {"train", "calibration", "test"}, set())
    return SplitSettings(
        train=_number("split.train", m["train"]),
        calibration=_number("split.calibration", m["calibration"]),
        test=_number("split.test", m["test"]),
    )


# --------------------------------------------------------------------------- train


@dataclass(frozen=True)
class LightGBMSettings:
    """LightGBM hyper-parameters (`train.lightgbm`); seeds and threads are set by the caller."""

    n_estimators: int = 2000
    learning_rate: float = 0.03
    num_leaves: int = 31
    min_child_samples: int = 50
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    reg_alpha: float = 0.0
    max_depth: int = -1
    min_split_gain: float = 0.0

    def __post_init__(self) -> None:
        p = "train.lightgbm."
        _positive_int(p + "n_estimators", self.n_estimators)
        _positive(p + "learning_rate", self.learning_rate)
        _positive_int(p + "num_leaves", self.num_leaves, minimum=2)
        _positive_int(p + "min_child_samples", self.min_child_samples)
        _half_open_unit(p + "subsample", self.subsample)
        _positive_int(p + "subsample_freq", self.subsample_freq, minimum=0)
        _half_open_unit(p + "colsample_bytree", self.colsample_bytree)
        for key in ("reg_lambda", "reg_alpha", "min_split_gain"):
            if _number(p + key, getattr(self, key)) < 0:
                raise SettingsError(f"`{p}{key}` must be >= 0; got {getattr(self, key)!r}")
        depth = _integer(p + "max_depth", self.max_depth)
        if depth == 0 or depth < -1:
            raise SettingsError(f"`{p}max_depth` must be -1 (no limit) or >= 1; got {depth}")

    def to_lgbm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `lightgbm.LGBMClassifier`."""
        return {
            "n_estimators": int(self.n_estimators),
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_child_samples": int(self.min_child_samples),
            "subsample": float(self.subsample),
            "subsample_freq": int(self.subsample_freq),
            "colsample_bytree": float(self.colsample_bytree),
            "reg_lambda": float(self.reg_lambda),
            "reg_alpha": float(self.reg_alpha),
            "max_depth": int(self.max_depth),
            "min_split_gain": float(self.min_split_gain),
        }


_LGBM_KEYS = set(LightGBMSettings.__dataclass_fields__)


@dataclass(frozen=True)
class LogRegSettings:
    """Logistic-regression baseline (`train.logreg`)."""

    C: float = 0.1
    min_frequency: int = 20
    max_iter: int = 5000

    def __post_init__(self) -> None:
        _positive("train.logreg.C", self.C)
        _positive_int("train.logreg.min_frequency", self.min_frequency)
        _positive_int("train.logreg.max_iter", self.max_iter)


SERVE_CHOICES = ("auto", "lightgbm", "logreg", "blend")


@dataclass(frozen=True)
class TuneSettings:
    """The `train.tune` section (see `models.tuning`): `n_trials` (the configured
    `train.lightgbm` settings are trial 0) bounds the search, `timeout_seconds` stops it
    early on a slow machine; `enabled: false` or `n_trials: 1` keeps the configured settings;
    `select` picks the winner: `one_se` (the simplest trial within one standard error of
    the best, the default) or `best` (the lowest validation log-loss); `parallel` trials are
    fitted at once (one LightGBM thread each; the search depends on it).
    """

    enabled: bool = True
    n_trials: int = 20
    timeout_seconds: float = 120.0
    select: str = "one_se"
    parallel: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise SettingsError(f"`train.tune.enabled` must be true or false; got {self.enabled!r}")
        if self.select not in ("one_se", "best"):
            raise SettingsError(f"`train.tune.select` must be one_se or best; got {self.select!r}")
        _positive_int("train.tune.n_trials", self.n_trials)
        _positive_int("train.tune.parallel", self.parallel)
        _positive("train.tune.timeout_seconds", self.timeout_seconds)


@dataclass(frozen=True)
class SampleSettings:
    """The `train.sample` section (see `models.sampling`): when the training split holds
    more than `max_leads` leads, train on a sample of them, drawn by lead and stratified
    by outcome; converted leads are kept at `converted_boost` times the rate of the others
    (capped at 1). `max_leads: null` (the default) never samples."""

    max_leads: int | None = None
    converted_boost: float = 5.0
    seed: int = 42

    def __post_init__(self) -> None:
        if self.max_leads is not None:
            _positive_int("train.sample.max_leads", self.max_leads, minimum=2)
        boost = _number("train.sample.converted_boost", self.converted_boost)
        if boost < 1:
            raise SettingsError(f"`train.sample.converted_boost` must be >= 1; got {boost:g}")
        if _integer("train.sample.seed", self.seed) < 0:
            raise SettingsError(f"`train.sample.seed` must be >= 0; got {self.seed!r}")


@dataclass(frozen=True)
class TrainSettings:
    """The `train` section."""

    seed: int = 42
    validation_fraction: float = 0.15
    early_stopping_rounds: int = 100
    min_positives: int = 50
    min_calibration_positives: int = 20
    lightgbm: LightGBMSettings = field(default_factory=LightGBMSettings)
    logreg: LogRegSettings = field(default_factory=LogRegSettings)
    tune: TuneSettings = field(default_factory=lambda: TuneSettings())
    # auto: the candidate with the lowest validation log-loss; or force one of them
    serve: str = "auto"
    # fit and engagement sub-scores beside the served model (models.subscores)
    subscores: bool = True
    # train on a lead sample of the training split (models.sampling); off by default
    sample: SampleSettings = field(default_factory=lambda: SampleSettings())

    def __post_init__(self) -> None:
        if not isinstance(self.subscores, bool):
            raise SettingsError(f"`train.subscores` must be true or false; got {self.subscores!r}")
        if self.serve not in SERVE_CHOICES:
            raise SettingsError(f"`train.serve` must be one of {', '.join(SERVE_CHOICES)}; "
                                f"got {self.serve!r}")
        seed = _integer("train.seed", self.seed)
        if seed < 0:
            raise SettingsError(f"`train.seed` must be >= 0; got {seed}")
        _open_unit("train.validation_fraction", self.validation_fraction)
        _positive_int("train.early_stopping_rounds", self.early_stopping_rounds)
        _positive_int("train.min_positives", self.min_positives)
        _positive_int("train.min_calibration_positives", self.min_calibration_positives)


def parse_train(mapping: Mapping[str, Any]) -> TrainSettings:
    """Parse the `train` section (including `train.lightgbm` and `train.logreg`)."""
    m = _mapping("train", mapping)
    scalar = {
        "seed",
        "validation_fraction",
        "early_stopping_rounds",
        "min_positives",
        "min_calibration_positives",
        "serve",
        "subscores",
    }
    _check_keys("train", m, set(), scalar | {"lightgbm", "logreg", "tune", "sample"})
    lgbm = _mapping("train.lightgbm", m.get("lightgbm", {}))
    _check_keys("train.lightgbm", lgbm, set(), _LGBM_KEYS)
    logreg = _mapping("train.logreg", m.get("logreg", {}))
    _check_keys("train.logreg", logreg, set(), {"C", "min_frequency", "max_iter"})
    tune = _mapping("train.tune", m.get("tune", {}))
    _check_keys("train.tune", tune, set(), {"enabled", "n_trials", "timeout_seconds", "select",
                                              "parallel"})
    sample = _mapping("train.sample", m.get("sample") or {})
    _check_keys("train.sample", sample, set(), {"max_leads", "converted_boost", "seed"})
    return TrainSettings(
        **{k: m[k] for k in scalar if k in m},
        lightgbm=LightGBMSettings(**lgbm),
        logreg=LogRegSettings(**logreg),
        tune=TuneSettings(**tune),
        sample=SampleSettings(**sample),
    )


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationSettings:
    """The `calibration` section: method and the folds used to cross-fit it."""

    method: CalibrationMethod = "auto"
    n_folds: int = 5

    def __post_init__(self) -> None:
        if self.method not in ("isotonic", "sigmoid", "auto"):
            raise SettingsError(
                f"`calibration.method` must be one of isotonic, sigmoid, auto; got {self.method!r}"
            )
        _positive_int("calibration.n_folds", self.n_folds, minimum=2)


def parse_calibration(mapping: Mapping[str, Any]) -> CalibrationSettings:
    """Parse the `calibration` section."""
    m = _mapping("calibration", mapping)
    _check_keys("calibration", m, set(), {"method", "n_folds"})
    return CalibrationSettings(**m)


# --------------------------------------------------------------------------- bands


@dataclass(frozen=True)
class BandSpec:
    """One band. The lowest band of a set has no target; every other band has exactly one.

    `target_kind` is `min_conversion` (observed conversion of the band on the calibration
    split must reach `target`), `top_share` (the band holds this share of leads) or
    `capacity_per_week` (the band holds about this many leads per week of inflow).
    `fallback_min_conversion`: for a capacity band, the min_conversion target used when the
    data gives no inflow (no creation dates); None = derived (see `models.bands`).
    """

    name: str
    target_kind: BandTargetKind | None = None
    target: float | None = None
    fallback_min_conversion: float | None = None


@dataclass(frozen=True)
class BandSet:
    """A named set of bands, listed from lowest to highest propensity.

    `min_band_size`: fewest calibration leads a `min_conversion` band may hold.
    `conversion_rule`: how `min_conversion` is read (see `models.bands`): "band" = the
    band's observed conversion reaches the target (default); "marginal" = every lead in
    the band has calibrated p >= the target (stricter, no dilution by weak leads).
    `leads_per_week`: the expected weekly inflow of the scored population, for a set with a
    `capacity_per_week` band; None = the calibration split's own inflow. A capacity band's
    simulated weekly entries are scaled by the ratio of the simulated to this inflow.
    `inflow`: with `leads_per_week` unset, the expected inflow a capacity is sized for:
    "trend" (default) = the linear trend of weekly lead creations over the training and
    calibration leads (never the test split), projected to the data's end, when scoring
    starts (`models.bands.projected_leads_per_week`); "calibration" = the calibration
    split's own inflow.
    """

    name: str
    policy: BandPolicy
    bands: tuple[BandSpec, ...]
    scoring_cadence_days: float = 7.0
    min_band_size: int = 30
    conversion_rule: ConversionRule = "band"
    # later_batch: a min_conversion promise holds when the Wilson 95 % lower bound of the
    # band's calibration conversion clears it with the margin a later batch of the same size
    # needs to clear it at its own lower bound; lower_bound: without that margin; point:
    # when the observed rate does
    promise: str = "later_batch"
    leads_per_week: float | None = None
    inflow: str = "trend"

    def __post_init__(self) -> None:
        p = f"bands.{self.name}"
        if self.inflow not in ("trend", "calibration"):
            raise SettingsError(
                f"`{p}.inflow` must be 'trend' or 'calibration'; got {self.inflow!r}")
        if self.leads_per_week is not None:
            _positive(f"{p}.leads_per_week", self.leads_per_week)
        if self.promise not in ("later_batch", "lower_bound", "point"):
            raise SettingsError(f"`{p}.promise` must be 'later_batch', 'lower_bound' or "
                                f"'point'; got {self.promise!r}")
        if self.conversion_rule not in ("band", "marginal"):
            raise SettingsError(
                f"`{p}.conversion_rule` must be 'band' or 'marginal'; got {self.conversion_rule!r}"
            )
        if self.policy not in BAND_TARGET_KEYS:
            raise SettingsError(
                f"`{p}.policy` must be one of conversion, share, capacity; got {self.policy!r}"
            )
        if len(self.bands) < 2:
            raise SettingsError(f"`{p}.bands` must list at least 2 bands; got {len(self.bands)}")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise SettingsError(f"`{p}.bands` names must be unique; got {names}")
        _positive(f"{p}.scoring_cadence_days", self.scoring_cadence_days)
        _positive_int(f"{p}.min_band_size", self.min_band_size)
        lowest = self.bands[0]
        if lowest.fallback_min_conversion is not None:
            raise SettingsError(f"`{p}.bands[0].fallback_min_conversion` only applies to a "
                                "capacity_per_week band")
        if lowest.target_kind is not None:
            raise SettingsError(
                f"`{p}.bands[0]` ({lowest.name}) is the lowest band and takes every lead below "
                f"the next cutoff; it cannot have a target; got `{lowest.target_kind}`"
            )
        for i, band in enumerate(self.bands[1:], start=1):
            bp = f"{p}.bands[{i}]"
            if band.target_kind is None or band.target is None:
                raise SettingsError(
                    f"`{bp}` ({band.name}) needs one of min_conversion, top_share, "
                    "capacity_per_week"
                )
            key = f"{bp}.{band.target_kind}"
            if band.target_kind in ("min_conversion", "top_share"):
                _open_unit(key, band.target)
            elif band.target_kind == "capacity_per_week":
                _positive(key, band.target)
            else:
                raise SettingsError(f"`{bp}` has unknown target kind {band.target_kind!r}")
            if band.fallback_min_conversion is not None:
                if band.target_kind != "capacity_per_week":
                    raise SettingsError(
                        f"`{bp}.fallback_min_conversion` only applies to a capacity_per_week "
                        f"band; `{band.name}` uses {band.target_kind}"
                    )
                _open_unit(f"{bp}.fallback_min_conversion", band.fallback_min_conversion)
        conv = [
            (i, b.target) for i, b in enumerate(self.bands) if b.target_kind == "min_conversion"
        ]
        for (i, a), (j, b) in zip(conv, conv[1:], strict=False):
            if not b > a:  # type: ignore[operator]
                raise SettingsError(
                    f"`{p}.bands[{j}].min_conversion` must be > `{p}.bands[{i}].min_conversion` "
                    f"(bands are listed from lowest to highest); got {b} <= {a}"
                )
        shares = sum(b.target for b in self.bands if b.target_kind == "top_share")  # type: ignore[misc]
        if shares >= 1:
            raise SettingsError(
                f"`{p}` top_share values must sum to < 1 so the lowest band keeps some leads; "
                f"got {shares:g}"
            )

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names from lowest to highest."""
        return tuple(b.name for b in self.bands)

    @property
    def uses_capacity(self) -> bool:
        """True if any band is sized by `capacity_per_week`."""
        return any(b.target_kind == "capacity_per_week" for b in self.bands)


def parse_band_set(name: str, mapping: Mapping[str, Any]) -> BandSet:
    """Parse one entry of the `bands` section.

    Each band above the lowest takes its target from `min_conversion`, `top_share` or
    `capacity_per_week`, or from a generic `target` read with the set-level `policy`.
    """
    if not isinstance(name, str) or not name:
        raise SettingsError(f"band set name must be a non-empty string; got {name!r}")
    p = f"bands.{name}"
    m = _mapping(p, mapping)
    _check_keys(
        p, m, {"bands"},
        {"policy", "scoring_cadence_days", "min_band_size", "conversion_rule", "promise",
         "leads_per_week", "inflow"},
    )
    policy = m.get("policy", "conversion")
    if policy not in BAND_TARGET_KEYS:
        raise SettingsError(
            f"`{p}.policy` must be one of conversion, share, capacity; got {policy!r}"
        )
    raw_bands = m["bands"]
    if isinstance(raw_bands, str | bytes) or not isinstance(raw_bands, Sequence):
        raise SettingsError(f"`{p}.bands` must be a list; got {raw_bands!r}")
    specs: list[BandSpec] = []
    for i, raw in enumerate(raw_bands):
        bp = f"{p}.bands[{i}]"
        b = _mapping(bp, raw)
        _check_keys(
            bp, b, {"name"}, {"target", "fallback_min_conversion", *BAND_TARGET_KEYS.values()}
        )
        band_name = b["name"]
        if not isinstance(band_name, str) or not band_name.strip():
            raise SettingsError(f"`{bp}.name` must be a non-empty string; got {band_name!r}")
        given = [k for k in ("target", *BAND_TARGET_KEYS.values()) if k in b]
        if len(given) > 1:
            raise SettingsError(f"`{bp}` ({band_name}) must have one target; got {given}")
        fallback = b.get("fallback_min_conversion")
        if fallback is not None:
            fallback = _number(f"{bp}.fallback_min_conversion", fallback)
        if not given:
            specs.append(BandSpec(name=band_name, fallback_min_conversion=fallback))
            continue
        key = given[0]
        kind = BAND_TARGET_KEYS[policy] if key == "target" else key
        value = _number(f"{bp}.{key}", b[key])
        specs.append(BandSpec(name=band_name, target_kind=kind, target=value,  # type: ignore[arg-type]
                              fallback_min_conversion=fallback))
    cadence = _number(f"{p}.scoring_cadence_days", m.get("scoring_cadence_days", 7))
    min_size = _integer(f"{p}.min_band_size", m.get("min_band_size", 30))
    return BandSet(
        name=name,
        policy=policy,
        bands=tuple(specs),
        scoring_cadence_days=cadence,
        min_band_size=min_size,
        conversion_rule=m.get("conversion_rule", "band"),
        promise=m.get("promise", "later_batch"),
        leads_per_week=(None if m.get("leads_per_week") is None
                        else _number(f"{p}.leads_per_week", m["leads_per_week"])),
        inflow=m.get("inflow", "trend"),
    )


def parse_bands(mapping: Mapping[str, Any]) -> dict[str, BandSet]:
    """Parse the whole `bands` section into {set name: BandSet}."""
    m = _mapping("bands", mapping)
    if not m:
        raise SettingsError("`bands` must define at least one band set")
    return {name: parse_band_set(name, value) for name, value in m.items()}
