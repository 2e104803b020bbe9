"""Read `params.yaml` once and turn each section into a typed, validated settings object.

Entry points call :func:`load_params` and pass the typed sections to the pure code in
`features/` and `models/`; nothing else in the project reads params.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from models.settings import (
    BandSet,
    CalibrationSettings,
    ModelError,
    SplitSettings,
    TrainSettings,
    parse_bands,
    parse_calibration,
    parse_split,
    parse_train,
)
from pipeline.errors import ConfigError

KNOWN_SECTIONS = (
    "paths",
    "source",
    "generate",
    "ingest",
    "snapshots",
    "label",
    "features",
    "split",
    "train",
    "calibration",
    "bands",
    "register",
    "score",
    "rules",
)


INGEST_KEYS = (
    "now",
    "delimiter",
    "encoding",
    "decimal",
    "date_format",
    "na_values",
    "dayfirst",
    "max_bad_share",
    "max_reject_share",
    "personal_data",
    "not_personal",
)


def _check_keys(section: str, mapping: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"params: unknown key `{section}.{key}`.{hint} Known keys: {', '.join(allowed)}."
            )


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(
            f"`{name}` must be {'an integer' if integer else 'a number'} {bound}; got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes; declared once in `params.yaml: paths`."""

    raw: Path = Path("data/raw")
    interim: Path = Path("data/interim")
    features: Path = Path("data/features")
    scored: Path = Path("data/scored")
    reports: Path = Path("reports")

    @property
    def models(self) -> Path:
        return self.features.parent / "models"


@dataclass(frozen=True)
class RegisterSettings:
    model_name: str = "lead-propensity"
    auc_tolerance: float = 0.005

    def __post_init__(self) -> None:
        if not self.model_name or not isinstance(self.model_name, str):
            raise ConfigError(
                f"`register.model_name` must be a non-empty string; got {self.model_name!r}"
            )
        _positive("register.auc_tolerance", self.auc_tolerance, allow_zero=True)


@dataclass(frozen=True)
class ScoreSettings:
    as_of: pd.Timestamp | None = None
    model: str = "models:/lead-propensity@champion"


@dataclass(frozen=True)
class Params:
    """All of params.yaml, typed. Sections owned by `features/` and `models/` stay raw
    mappings here and are parsed by their owners' settings constructors."""

    paths: Paths
    source: str
    generate: Mapping[str, Any]
    ingest_now: pd.Timestamp | None
    ingest: Mapping[str, Any]
    snapshots: Mapping[str, Any]
    label: Mapping[str, Any]
    features: Mapping[str, Any]
    split: SplitSettings
    train: TrainSettings
    calibration: CalibrationSettings
    bands: Mapping[str, BandSet]
    register: RegisterSettings
    score: ScoreSettings
    rules: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _timestamp(name: str, value: Any) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"`{name}` must be a date like 2026-06-30; got {value!r}") from err


def _model_settings(parser: Any, section: Any) -> Any:
    """Parse a section owned by `models/`, turning its ValueErrors into ConfigErrors."""
    try:
        return parser(section or {})
    except ModelError as err:
        raise ConfigError(f"params: {err}") from err


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`."""
    if not isinstance(raw, Mapping):
        raise ConfigError("params: the file must hold a mapping of sections")
    _check_keys("params", raw, KNOWN_SECTIONS)
    paths_raw = raw.get("paths", {}) or {}
    _check_keys("paths", paths_raw, ("raw", "interim", "features", "scored", "reports"))
    paths = Paths(**{k: Path(v) for k, v in paths_raw.items()})
    register_raw = raw.get("register", {}) or {}
    _check_keys("register", register_raw, ("model_name", "auc_tolerance"))
    score_raw = raw.get("score", {}) or {}
    _check_keys("score", score_raw, ("as_of", "model"))
    ingest_raw = raw.get("ingest", {}) or {}
    _check_keys("ingest", ingest_raw, INGEST_KEYS)
    return Params(
        paths=paths,
        source=str(raw.get("source", "synthetic")),
        generate=raw.get("generate", {}) or {},
        ingest_now=_timestamp("ingest.now", ingest_raw.get("now")),
        ingest=ingest_raw,
        snapshots=raw.get("snapshots", {}) or {},
        label=raw.get("label", {}) or {},
        features=raw.get("features", {}) or {},
        split=_model_settings(parse_split, raw.get("split")),
        train=_model_settings(parse_train, raw.get("train")),
        calibration=_model_settings(parse_calibration, raw.get("calibration")),
        bands=_model_settings(parse_bands, raw.get("bands")),
        register=RegisterSettings(**register_raw),
        score=ScoreSettings(
            as_of=_timestamp("score.as_of", score_raw.get("as_of")),
            model=str(score_raw.get("model", ScoreSettings.model)),
        ),
        rules=raw.get("rules", {}) or {},
        raw=dict(raw),
    )


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`; a missing or malformed file is a ConfigError.

    When `source` names a source configuration, its decisions and `params:` overrides are
    folded in first (`pipeline.sources.effective_params`): `features.exclude` / `.safe` get
    the columns the config excludes / marks safe, so every stage sees them.
    """
    from pipeline.sources import effective_params

    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: params file not found (run from the project root or pass --params)"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return parse_params(effective_params(raw))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{'a': {'b': 1}}` -> `{'a.b': 1}`; lists become their string form (for MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
