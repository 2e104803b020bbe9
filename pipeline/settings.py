"""Read `params.yaml` once and turn each section into a typed, validated settings object.

Entry points call :func:`load_params` and pass the typed sections to the pure code in
`features/` and `models/`; nothing else in the project reads params.
"""

from __future__ import annotations

import difflib
import re
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
from pipeline.spark.session import SparkSettings, check_engine

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
    "decay",
    "engine",
    "spark",
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
    # pipeline.readers.ReadOptions fields the list above lacked
    "date_formats",
    "min_date",
    "duplicates",
    "max_field_size",
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


#: The registered model of the built-in synthetic sample (kept un-suffixed, as before).
BASE_MODEL_NAME = "lead-propensity"
_SLUG = re.compile(r"[^a-z0-9]+")


def source_key(source: str | None) -> str:
    """The namespace of a data source: `synthetic` for the built-in sample, else the source
    configuration's file name without folder and extension, lower-cased, other characters
    as `-` (`sources/XEducation.yaml` -> `xeducation`). The file name, not the config's
    free-text `name:`, so renaming the display name keeps the model's lineage."""
    if source in (None, "", "synthetic"):
        return "synthetic"
    return _SLUG.sub("-", Path(str(source)).stem.lower()).strip("-") or "source"


def default_model_name(source: str | None) -> str:
    """`lead-propensity` for the synthetic sample, `lead-propensity-<source key>` for a
    source configuration: each source has its own registered model and champion."""
    key = source_key(source)
    return BASE_MODEL_NAME if key == "synthetic" else f"{BASE_MODEL_NAME}-{key}"


@dataclass(frozen=True)
class RegisterSettings:
    """`register:` the registered model's name (null in params: `default_model_name` of
    the source) and the promotion gate's ROC AUC tolerance."""

    model_name: str = BASE_MODEL_NAME
    auc_tolerance: float = 0.005

    def __post_init__(self) -> None:
        if not self.model_name or not isinstance(self.model_name, str):
            raise ConfigError(
                "`register.model_name` must be a non-empty string (or null: "
                f"lead-propensity[-<source>]); got {self.model_name!r}"
            )
        _positive("register.auc_tolerance", self.auc_tolerance, allow_zero=True)


SCORE_KEYS = ("as_of", "model", "formats", "csv_sep", "csv_decimal", "history", "phrases",
              "pass_through", "chunk_events", "holdout_share", "holdout_key", "attribution")
ATTRIBUTION_KEYS = ("enabled", "movers")


@dataclass(frozen=True)
class AttributionSettings:
    """`score.attribution:` score-change attribution against the previous batch
    (`models.attribution`): `enabled` adds `score_change` / `change_reasons` to the scored
    table (off: the columns are left out), `movers` is how many of the biggest movers go to
    `<out>.movers.csv` and the MLflow run."""

    enabled: bool = True
    movers: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"`score.attribution.enabled` must be true or false; got "
                              f"{self.enabled!r}")
        _positive("score.attribution.movers", self.movers, integer=True, allow_zero=True)

    @classmethod
    def parse(cls, raw: Any) -> AttributionSettings:
        """From the params mapping (or an instance, or null for the defaults)."""
        if isinstance(raw, cls):
            return raw
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("`score.attribution` must be a mapping like {enabled: true, "
                              f"movers: 50}}; got {raw!r}")
        _check_keys("score.attribution", raw, ATTRIBUTION_KEYS)
        return cls(**raw)


@dataclass(frozen=True)
class ScoreSettings:
    """`score:` — which model, as of when, and how the table is published
    (`pipeline.outputs`): `formats` (csv / xlsx / parquet), the CSV's `csv_sep` and
    `csv_decimal`, the file-based batch `history`; `phrases`: a reasons phrase file
    (`models/resources/phrases.yaml` when null); `pass_through`: lead columns copied into
    the scored table only (never features, MLflow or reports)."""

    as_of: pd.Timestamp | None = None
    model: str = "models:/lead-propensity@champion"
    formats: tuple[str, ...] = ("csv", "parquet")
    csv_sep: str = ","
    csv_decimal: str = "."
    history: bool = True
    phrases: Path | None = None
    pass_through: tuple[str, ...] = ()
    # events held in memory at once while scoring (`pipeline.streaming`; lower = less memory)
    chunk_events: int = 4_000_000
    # randomised holdout of open leads (`models.holdout`): share in [0, 1) and hash key
    holdout_share: float = 0.05
    holdout_key: str = "leadprop-holdout-v1"
    # score-change attribution against the previous batch (`AttributionSettings`)
    attribution: AttributionSettings = field(default_factory=AttributionSettings)

    def __post_init__(self) -> None:
        from pipeline.outputs import TableOptions

        object.__setattr__(self, "attribution", AttributionSettings.parse(self.attribution))

        _positive("score.chunk_events", self.chunk_events, integer=True)

        options = TableOptions(tuple(self.formats) if isinstance(self.formats, list)
                               else self.formats, self.csv_sep, self.csv_decimal, self.history)
        object.__setattr__(self, "formats", options.formats)
        names = self.pass_through
        if not isinstance(names, list | tuple) or not all(isinstance(c, str) and c
                                                          for c in names):
            raise ConfigError("`score.pass_through` must be a list of lead column names "
                              f"(e.g. [company, owner]); got {names!r}")
        object.__setattr__(self, "pass_through", tuple(dict.fromkeys(names)))
        if self.phrases is not None:
            object.__setattr__(self, "phrases", Path(self.phrases))
        share = self.holdout_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            raise ConfigError("`score.holdout_share` must be a number in [0, 1) (0 = no "
                              f"holdout; 0.05 = 5 % of open leads); got {share!r}")
        if not isinstance(self.holdout_key, str) or not self.holdout_key:
            raise ConfigError("`score.holdout_key` must be a non-empty text; got "
                              f"{self.holdout_key!r}")


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
    # `engine`: embedded | spark for `features` and `score`; `spark:` its session settings
    engine: str = "embedded"
    spark: SparkSettings = field(default_factory=SparkSettings)

    @property
    def source_key(self) -> str:
        """The data source's namespace (`source_key`): registry name and score history."""
        return source_key(self.source)


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
    _check_keys("score", score_raw, SCORE_KEYS)
    ingest_raw = raw.get("ingest", {}) or {}
    _check_keys("ingest", ingest_raw, INGEST_KEYS)
    source = str(raw.get("source", "synthetic"))
    register = RegisterSettings(**{**register_raw, "model_name": register_raw.get("model_name")
                                   or default_model_name(source)})
    return Params(
        paths=paths,
        source=source,
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
        register=register,
        score=ScoreSettings(
            as_of=_timestamp("score.as_of", score_raw.get("as_of")),
            model=str(score_raw.get("model") or f"models:/{register.model_name}@champion"),
            **{k: score_raw[k] for k in SCORE_KEYS[2:] if score_raw.get(k) is not None},
        ),
        rules=raw.get("rules", {}) or {},
        raw=dict(raw),
        engine=check_engine(str(raw.get("engine") or "embedded")),
        spark=SparkSettings.from_params(raw.get("spark")),
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
