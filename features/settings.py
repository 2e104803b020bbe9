"""Typed, validated settings for the feature logic (params sections `snapshots`, `label`,
`features`). The pipeline reads params.yaml and passes the raw mappings to `from_params`;
nothing in `features/` reads a file or a param by itself."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SettingsError(ValueError):
    """A settings value is invalid; the message names the params key and the bad value."""


def _positive_ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SettingsError(f"`{name}` must be a list of positive integers; got {value!r}")
    items = list(value)
    ok = bool(items) and all(
        isinstance(v, (int,)) and not isinstance(v, bool) and v > 0 for v in items
    )
    if not ok:
        raise SettingsError(f"`{name}` must be positive integers; got {items!r}")
    if len(set(items)) != len(items):
        raise SettingsError(f"`{name}` must not repeat a value; got {items!r}")
    return tuple(sorted(items))


def _positive_number(name: str, value: Any, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        what = "a positive integer" if integer else "a positive number"
        raise SettingsError(f"`{name}` must be {what}; got {value!r}")
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise SettingsError(f"`{name}` must be a list of column names; got {value!r}")
    items = list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise SettingsError(f"`{name}` must be a list of column names; got {items!r}")
    return tuple(items)


def _check_keys(section: str, raw: Mapping[str, Any], known: Iterable[str]) -> None:
    known = tuple(known)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(
            f"`{section}.{unknown[0]}` is not a known setting; known: {', '.join(known)}"
        )


@dataclass(frozen=True)
class SnapshotSettings:
    """When training examples are taken (`ages_days` after creation), the label horizon,
    and the training sample at scale: at most `sample_leads` leads (None: all), drawn by
    lead and stratified by outcome with `sample_seed` (`features.snapshots.sample_spine`)."""

    ages_days: tuple[int, ...] = (1, 7, 30, 90)
    horizon_days: int = 90
    sample_leads: int | None = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "ages_days", _positive_ints("snapshots.ages_days", self.ages_days)
        )
        _positive_number("label.horizon_days", self.horizon_days, integer=True)
        if self.sample_leads is not None:
            _positive_number("snapshots.sample_leads", self.sample_leads, integer=True)
        if isinstance(self.sample_seed, bool) or not isinstance(self.sample_seed, int):
            raise SettingsError(f"`snapshots.sample_seed` must be an integer; got "
                              f"{self.sample_seed!r}")

    @classmethod
    def from_params(
        cls, snapshots: Mapping[str, Any] | None, label: Mapping[str, Any] | None
    ) -> SnapshotSettings:
        """Build from the raw `snapshots` and `label` params sections."""
        snapshots, label = dict(snapshots or {}), dict(label or {})
        _check_keys("snapshots", snapshots, ("ages_days", "sample_leads", "sample_seed"))
        _check_keys("label", label, ("horizon_days",))
        return cls(
            ages_days=snapshots.get("ages_days", cls.ages_days),
            horizon_days=label.get("horizon_days", cls.horizon_days),
            sample_leads=snapshots.get("sample_leads"),
            sample_seed=snapshots.get("sample_seed", cls.sample_seed),
        )


@dataclass(frozen=True)
class JourneySettings:
    """The `features.journey` section (see `features.journey`): `sequences` maps a name to
    `[first, then]` event types (a `then` within `sequence_gap_minutes` after a `first`);
    `burst_gap_days` of silence start a new burst of activity."""

    enabled: bool = True
    sequences: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    sequence_gap_minutes: float = 5
    burst_gap_days: float = 14

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise SettingsError(f"`features.journey.enabled` must be true or false; got "
                                f"{self.enabled!r}")
        _positive_number("features.journey.sequence_gap_minutes", self.sequence_gap_minutes)
        _positive_number("features.journey.burst_gap_days", self.burst_gap_days)
        raw = self.sequences or {}
        if not isinstance(raw, Mapping):
            raise SettingsError("`features.journey.sequences` must map names to [first, then] "
                                f"event types; got {raw!r}")
        out: dict[str, tuple[str, str]] = {}
        for name, pair in raw.items():
            if not isinstance(name, str) or not _GROUP_NAME.match(name):
                raise SettingsError("`features.journey.sequences` names must be lower-case "
                                    f"identifiers (a-z, 0-9, _); got {name!r}")
            types = _names(f"features.journey.sequences.{name}", pair)
            if len(types) != 2:
                raise SettingsError(f"`features.journey.sequences.{name}` must be [first, then] "
                                    f"(two event types); got {list(types)!r}")
            if types[0] == types[1]:
                raise SettingsError(f"`features.journey.sequences.{name}` must name two "
                                    f"different event types; got {list(types)!r}")
            out[name] = (types[0], types[1])
        object.__setattr__(self, "sequences", MappingProxyType(out))

    @classmethod
    def from_params(cls, raw: Any) -> JourneySettings:
        if isinstance(raw, JourneySettings):
            return raw
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise SettingsError(f"`features.journey` must be a mapping; got {raw!r}")
        _check_keys("features.journey", raw, tuple(cls.__dataclass_fields__))
        return cls(**raw)

    def __hash__(self) -> int:
        return hash((self.enabled, tuple(self.sequences.items()), self.sequence_gap_minutes,
                     self.burst_gap_days))


@dataclass(frozen=True)
class FeatureSettings:
    """Knobs of the behavioural/fit features and of the leakage audit (`features` section).

    - `windows_days`: count windows; each window is [as_of - w days, as_of).
    - `decay_half_life_days`: half-life of the time-decayed engagement scores.
    - `session_gap_minutes`: a gap longer than this between two events starts a new session.
    - `event_groups`: intent group -> raw event types (a type may be in one group only).
    - `email_sent` / `email_open` / `email_click`: the event types the email rates use.
    - `exclude`: lead columns never turned into features (and marked excluded in the audit).
    - `safe`: columns the user reviewed and keeps; the audit reports them but never as suspects.
    - `audit_auc_threshold`: univariate AUC at which the audit says a column separates the
      outcome almost alone (also used for the is-missing indicator).
    - `audit_outcome_words`: extra entries for the audit's outcome vocabulary
      (features/resources/outcome_words.txt syntax: `word`, `word*`, `two words`,
      `!not an outcome`, `name: status word`).
    - `journey`: the sequence features (`JourneySettings`, `features.journey`).
    """

    windows_days: tuple[int, ...] = (7, 30, 90)
    decay_half_life_days: float = 14.0
    session_gap_minutes: float = 30
    event_groups: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    exclude: tuple[str, ...] = ()
    safe: tuple[str, ...] = ()
    email_sent: str = "email_sent"
    email_open: str = "email_open"
    email_click: str = "email_click"
    audit_auc_threshold: float = 0.80
    audit_outcome_words: tuple[str, ...] = ()
    journey: JourneySettings = field(default_factory=JourneySettings)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("windows_days", _positive_ints("features.windows_days", self.windows_days))
        _positive_number("features.decay_half_life_days", self.decay_half_life_days)
        _positive_number("features.session_gap_minutes", self.session_gap_minutes)
        set_("exclude", _names("features.exclude", self.exclude))
        set_("safe", _names("features.safe", self.safe))
        both = sorted(set(self.exclude) & set(self.safe))
        if both:
            raise SettingsError(
                f"`features.exclude` and `features.safe` must not share a column; got {both!r}"
            )
        for key in ("email_sent", "email_open", "email_click"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise SettingsError(f"`features.{key}` must be an event type name; "
                                    f"got {getattr(self, key)!r}")
        thr = self.audit_auc_threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.5 < thr <= 1:
            raise SettingsError(
                f"`features.audit_auc_threshold` must be in (0.5, 1]; got {thr!r}"
            )
        words = self.audit_outcome_words
        if words is None:
            words = ()
        if isinstance(words, (str, Mapping)) or not isinstance(words, Iterable) or not all(
                isinstance(w, str) and w.strip() for w in words):
            raise SettingsError(
                "`features.audit_outcome_words` must be a list of words or phrases "
                f"(e.g. [refunded, 'order cancelled']); got {words!r}")
        set_("audit_outcome_words", tuple(w.strip() for w in words))
        set_("event_groups", MappingProxyType(self._groups(self.event_groups)))
        set_("journey", JourneySettings.from_params(self.journey))

    @staticmethod
    def _groups(raw: Any) -> dict[str, tuple[str, ...]]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise SettingsError(
                f"`features.event_groups` must map group names to lists of event types; "
                f"got {raw!r}"
            )
        groups: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for group, types in raw.items():
            if not isinstance(group, str) or not _GROUP_NAME.match(group):
                raise SettingsError(
                    "`features.event_groups` group names must be lower-case identifiers "
                    f"(a-z, 0-9, _); got {group!r}"
                )
            names = _names(f"features.event_groups.{group}", types)
            for name in names:
                if name in owner and owner[name] != group:
                    raise SettingsError(
                        f"`features.event_groups` puts event type {name!r} in more than one "
                        f"group: {owner[name]}, {group}"
                    )
                owner[name] = group
            groups[group] = tuple(dict.fromkeys(names))
        return groups

    def __hash__(self) -> int:
        return hash(
            (self.windows_days, self.decay_half_life_days, self.session_gap_minutes,
             tuple(self.event_groups.items()), self.exclude, self.safe, self.email_sent,
             self.email_open, self.email_click, self.audit_auc_threshold,
             self.audit_outcome_words, self.journey)
        )

    @property
    def type_to_group(self) -> dict[str, str]:
        """Raw event type -> its intent group."""
        return {t: g for g, types in self.event_groups.items() for t in types}

    @classmethod
    def from_params(cls, features: Mapping[str, Any] | None) -> FeatureSettings:
        """Build from the raw `features` params section (unknown keys are an error)."""
        raw = dict(features or {})
        known = tuple(f for f in cls.__dataclass_fields__)
        _check_keys("features", raw, known)
        return cls(**raw)
