"""Bring your own CRM export: source configurations (`sources/*.yaml`, see sources/README.md).

A source configuration says, for one export, where its files are and how to read them
(`pipeline.readers.ReadOptions`), which export column is which contract column
(docs/contract.md), the role of every other column (`fit`, `behaviour`, `ignore`,
`exclude`), and where the outcome is (a column with its positive and negative values, or a
conversion event in the activity log). `params.yaml: source` names the file; `synthetic`
keeps the built-in generator.

What this module does, in pipeline order:

- `load_source` / `parse_source`: read and validate the YAML (unknown keys and values get
  close matches) into a frozen :class:`SourceConfig`. No data is read.
- `effective_params`: params.yaml with the config's decisions folded in (`features.exclude`
  and `features.safe` get the excluded / safe columns, `params:` overrides merged), so the
  leakage decisions live in one place and every stage sees them.
- `read_export`: read the files with the configured options; read errors name the option of
  the source configuration that is probably wrong.
- `map_export`: check every configured column exists (close matches otherwise) and the
  outcome holds only configured values (values and counts otherwise), then produce raw text
  frames in the contract's shape for `pipeline.contract.validate_leads/validate_events`.
- `type_columns`: after validation, type the role columns (numbers with the export's decimal
  mark, yes/no flags, dates, categories).

Interim column names: a role column is stored under a lower-case ASCII name (Cyrillic is
transliterated: `Кол-во визитов` -> `kol_vo_vizitov`) or the `name:` given in the config, so
the feature built from it is `extra_<name>`. A lead-level export (no `created_at`) gets one
training example per lead (`features.snapshots`); its export moment (`exported_at`, default
the leads file's modification time) is kept in the table's attrs as the end of the data.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.fit import KNOWN_COLUMNS
from features.pii import personal_kind
from pipeline.contract import (
    DATETIME,
    REJECT_COLUMNS,
    parse_dates,
    parse_moment,
    to_naive_utc,
    utc_now,
)
from pipeline.errors import ConfigError, DataError, LeadpropError
from pipeline.readers import ReadOptions, read_table

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
ROLES = ("fit", "behaviour", "ignore", "exclude", "pass")
#: Interim prefix of a `pass` column (name, owner...): copied into the scored table only
#: (`score.pass_through`); `_`-prefixed columns are never features and never audited.
PASS_PREFIX = "_pass_"
DEFAULT_ROLES = ("fit", "behaviour", "ignore", "error")
TYPES = ("auto", "number", "category", "flag", "date")
MISSING_OUTCOME = ("error", "negative", "reject")
#: Contract columns of `leads` an export column may be mapped onto (`converted` comes from
#: `outcome`).
LEAD_FIELDS = (
    "lead_id", "created_at", "source", "email", "first_name", "last_name", "phone", "company",
    "company_size", "industry", "country", "job_title", "budget", "need", "timeframe",
    "converted_at", "lost_at",
)
EVENT_FIELDS = ("lead_id", "timestamp", "event_type", "page", "channel")
#: params.yaml sections a source configuration may override under `params:`.
OVERRIDABLE = ("snapshots", "label", "features", "split", "train", "calibration", "bands",
               "register", "score", "rules")
TOP_KEYS = ("name", "description", "leads", "events", "outcome", "exported_at", "params")
LEADS_KEYS = ("path", "read", "map", "roles", "default_role")
EVENTS_KEYS = ("path", "read", "map", "event_types", "lead_map", "lead_columns")
OUTCOME_KEYS = ("column", "positive", "negative", "lost", "date", "missing", "event")
ROLE_KEYS = ("role", "type", "name", "reason", "safe")
READ_KEYS = tuple(f.name for f in fields(ReadOptions))
REPORT_FILE = "source.json"

_FLAG_TRUE = frozenset({"yes", "y", "true", "1", "1.0", "да", "д", "ja", "oui", "si", "sí"})
_FLAG_FALSE = frozenset({"no", "n", "false", "0", "0.0", "нет", "н", "nein", "non"})
_THOUSANDS = re.compile(r"[\s\u00a0\u202f']")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s\-().]{7,}$")
_UNNAMED = re.compile(r"^Unnamed: \d+$")
_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya", "і": "i",
    "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
}  # fmt: skip


# ------------------------------------------------------------------------ the config


@dataclass(frozen=True)
class ColumnSpec:
    """One export column outside the contract: its role, type and interim name."""

    column: str
    role: str
    type: str = "auto"
    name: str = ""
    reason: str | None = None
    safe: bool = False


@dataclass(frozen=True)
class Outcome:
    """Where the outcome is: `column` with `positive` / `negative` values (`lost`: the
    negative values that close a lead, dated by `date`), or `event`, an event type."""

    column: str | None = None
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    date: str | None = None
    missing: str = "error"
    event: str | None = None


@dataclass(frozen=True)
class LeadsSource:
    path: Path
    read: ReadOptions
    map: Mapping[str, str]
    roles: tuple[ColumnSpec, ...] = ()
    default_role: str = "fit"


@dataclass(frozen=True)
class EventsSource:
    path: Path
    read: ReadOptions
    map: Mapping[str, str]
    event_types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SourceConfig:
    """A validated source configuration (see the module docstring and sources/README.md)."""

    file: str
    name: str
    leads: LeadsSource
    outcome: Outcome
    events: EventsSource | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    exported_at: pd.Timestamp | None = None
    description: str = ""
    #: True for an event-log-only export: `leads` is derived from the events file.
    leads_from_events: bool = False

    @property
    def time_aware(self) -> bool:
        """True when the export has `created_at` (point-in-time snapshots); else lead-level."""
        return "created_at" in self.leads.map

    def role_of(self, column: str) -> ColumnSpec | None:
        for spec in self.leads.roles:
            if spec.column == column:
                return spec
        return None

    @property
    def exclude(self) -> tuple[str, ...]:
        """Interim names of the columns with role `exclude` (audited, never features)."""
        return tuple(s.name for s in self.leads.roles if s.role == "exclude")

    @property
    def safe(self) -> tuple[str, ...]:
        """Interim and feature names of the columns marked `safe` (kept; never suspects)."""
        out: list[str] = []
        for s in self.leads.roles:
            if s.safe:
                out += [s.name, f"extra_{s.name}"]
        return tuple(out)


def load_source(path: Path | str) -> SourceConfig:
    """Read and validate a source configuration; ConfigError names the problem and file."""
    path = Path(path)
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        near = _near_configs(path)
        raise ConfigError(
            f"params: `source` is {str(path)!r}, which {where}. It must be `synthetic` or the "
            f"path of a source configuration (relative to the project folder {Path.cwd()})."
            f"{near} See sources/README.md."
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: save the source configuration as UTF-8 ({err})") from err
    return parse_source(raw, str(path))


def _near_configs(path: Path) -> str:
    folder = path.parent if path.parent.is_dir() else Path("sources")
    if not folder.is_dir():
        return ""
    names = sorted(str(p) for p in folder.glob("*.y*ml"))
    close = difflib.get_close_matches(str(path), names, n=3, cutoff=0.5)
    shown = close or names[:5]
    return f" Did you mean {', '.join(repr(n) for n in shown)}?" if shown else ""


def parse_source(raw: Any, file: str = "source.yaml") -> SourceConfig:
    """Validate a source configuration mapping (as read from YAML) into SourceConfig."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{file}: a source configuration is a mapping with at least `leads:` "
                          "and `outcome:` (see sources/example.yaml)")
    _check_keys(file, "", raw, TOP_KEYS)
    if raw.get("leads") is None and isinstance(raw.get("events"), Mapping):
        return _parse_event_log(raw, file)
    for key in ("leads", "outcome"):
        if not isinstance(raw.get(key), Mapping):
            raise ConfigError(f"{file}: `{key}:` is required and must be a mapping "
                              "(see sources/example.yaml; an event log alone: `events:` with "
                              "`lead_columns:` and no `leads:`)")
    leads_raw = raw["leads"]
    _check_keys(file, "leads.", leads_raw, LEADS_KEYS)
    read = _read_options(file, "leads.read", leads_raw.get("read"))
    lead_map = _field_map(file, "leads.map", leads_raw.get("map"), LEAD_FIELDS)
    default_role = _choice(file, "leads.default_role", leads_raw.get("default_role", "fit"),
                           DEFAULT_ROLES)
    roles = _roles(file, leads_raw.get("roles"))
    leads = LeadsSource(path=_path(file, "leads.path", leads_raw.get("path")), read=read,
                        map=MappingProxyType(lead_map), roles=roles, default_role=default_role)

    events = None
    if raw.get("events") is not None:
        ev = raw["events"]
        if not isinstance(ev, Mapping):
            raise ConfigError(f"{file}: `events:` must be a mapping with `path:` and `map:`")
        _check_keys(file, "events.", ev, EVENTS_KEYS)
        for key in ("lead_map", "lead_columns"):
            if key in ev:
                raise ConfigError(f"{file}: `events.{key}` derives the leads from the event "
                                  "log, for an export without a leads table; this one has "
                                  "`leads:`, so put the column in `leads.map` / `leads.roles`, "
                                  "or drop `leads:`")
        merged_read = {**_mapping(file, "leads.read", leads_raw.get("read")),
                       **_mapping(file, "events.read", ev.get("read"))}
        ev_map = _field_map(file, "events.map", ev.get("map"), EVENT_FIELDS)
        missing = [f for f in EVENT_FIELDS[:3] if f not in ev_map]
        if missing:
            raise ConfigError(f"{file}: `events.map` must name the export columns for "
                              f"{', '.join(missing)} (lead_id, timestamp and event_type are "
                              "required)")
        types = _mapping(file, "events.event_types", ev.get("event_types"))
        events = EventsSource(
            path=_path(file, "events.path", ev.get("path")),
            read=_read_options(file, "events.read", merged_read), map=MappingProxyType(ev_map),
            event_types=MappingProxyType({_text(file, "events.event_types", k):
                                          _text(file, f"events.event_types.{k}", v)
                                          for k, v in types.items()}))

    outcome = _outcome(file, raw["outcome"], lead_map, events)
    config = SourceConfig(
        file=file, name=str(raw.get("name") or Path(file).stem), leads=leads, outcome=outcome,
        events=events, params=MappingProxyType(_params(file, raw.get("params"))),
        exported_at=_exported_at(file, raw.get("exported_at")),
        description=str(raw.get("description") or ""),
    )
    _check_consistency(config)
    return config


def _parse_event_log(raw: Mapping[str, Any], file: str) -> SourceConfig:
    """An export that is only an event log: the leads are derived from it (`derive_leads`).

    lead_id = the events' lead_id (a user id), created_at = the user's first event; the
    per-user columns in `events.lead_map` (contract fields) and `events.lead_columns` (roles,
    like `leads.roles`) become lead attributes when they are constant within each user; the
    conversion is an event type (`outcome.event`).
    """
    ev = raw["events"]
    _check_keys(file, "events.", ev, EVENTS_KEYS)
    if not isinstance(raw.get("outcome"), Mapping) or raw["outcome"].get("event") is None:
        raise ConfigError(f"{file}: an event log without `leads:` takes the conversion from "
                          "the log: set `outcome: {event: <the purchase event type>}`")
    read = _read_options(file, "events.read", ev.get("read"))
    ev_map = _field_map(file, "events.map", ev.get("map"), EVENT_FIELDS)
    missing = [f for f in EVENT_FIELDS[:3] if f not in ev_map]
    if missing:
        raise ConfigError(f"{file}: `events.map` must name the export columns for "
                          f"{', '.join(missing)} (lead_id, timestamp and event_type are "
                          "required)")
    per_lead = [f for f in LEAD_FIELDS if f not in ("lead_id", "created_at", "converted_at",
                                                     "lost_at")]
    lead_map = _field_map(file, "events.lead_map", ev.get("lead_map"), per_lead)
    roles = _roles(file, ev.get("lead_columns"), "events.lead_columns")
    taken = {ev_map["lead_id"], ev_map["timestamp"], ev_map["event_type"]}
    for column in [*lead_map.values(), *(s.column for s in roles)]:
        if column in taken:
            raise ConfigError(f"{file}: {column!r} is the events' lead_id, timestamp or "
                              "event_type; it cannot also be a per-lead column")
    path = _path(file, "events.path", ev.get("path"))
    types = _mapping(file, "events.event_types", ev.get("event_types"))
    events = EventsSource(
        path=path, read=read, map=MappingProxyType(ev_map),
        event_types=MappingProxyType({_text(file, "events.event_types", k):
                                      _text(file, f"events.event_types.{k}", v)
                                      for k, v in types.items()}))
    leads = LeadsSource(
        path=path, read=read,
        map=MappingProxyType({"lead_id": ev_map["lead_id"], "created_at": ev_map["timestamp"],
                              **lead_map}),
        roles=roles, default_role="ignore")
    config = SourceConfig(
        file=file, name=str(raw.get("name") or Path(file).stem), leads=leads,
        outcome=_outcome(file, raw["outcome"], leads.map, events), events=events,
        params=MappingProxyType(_params(file, raw.get("params"))),
        exported_at=_exported_at(file, raw.get("exported_at")),
        description=str(raw.get("description") or ""), leads_from_events=True)
    _check_consistency(config)
    return config


def _check_keys(file: str, prefix: str, mapping: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=2, cutoff=0.6)
            hint = f" Did you mean {' or '.join(f'`{prefix}{c}`' for c in close)}?" if close else ""
            raise ConfigError(f"{file}: unknown key `{prefix}{key}`.{hint} The keys here are: "
                              f"{', '.join(known)}.")


def _choice(file: str, key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{file}: `{key}` must be one of {', '.join(allowed)}; got "
                          f"{value!r}.{hint}")
    return str(value)


def _mapping(file: str, key: str, value: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{file}: `{key}` must be a mapping; got {value!r}")
    return dict(value)


def _text(file: str, key: str, value: Any) -> str:
    """A YAML scalar as text; YAML's yes/no/on/off booleans must be quoted."""
    if isinstance(value, bool):
        raise ConfigError(f"{file}: `{key}`: YAML reads an unquoted yes/no/on/off/true/false "
                          f"as a boolean ({value!r}); quote the value, e.g. 'Yes'.")
    if value is None or isinstance(value, (Mapping, list)):
        raise ConfigError(f"{file}: `{key}` must be a text value; got {value!r}")
    return str(value)


def _texts(file: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(_text(file, f"{key}[{i}]", v) for i, v in enumerate(items))


def _path(file: str, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{file}: `{key}` must be the path of a CSV or Parquet file "
                          f"(relative to the project folder); got {value!r}")
    return Path(value.strip())


def _read_options(file: str, key: str, value: Any) -> ReadOptions:
    given = _mapping(file, key, value)
    _check_keys(file, f"{key}.", given, READ_KEYS)
    if isinstance(given.get("na_values"), list):
        given["na_values"] = tuple(_texts(file, f"{key}.na_values", given["na_values"]))
    try:
        return ReadOptions(**given)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{file}: {_as_read_key(str(err), key)}") from None


def _field_map(file: str, key: str, value: Any, allowed: Sequence[str]) -> dict[str, str]:
    given = _mapping(file, key, value)
    _check_keys(file, f"{key}.", given, allowed)
    out = {str(k): _text(file, f"{key}.{k}", v) for k, v in given.items()}
    seen: dict[str, str] = {}
    for contract, column in out.items():
        if column in seen:
            raise ConfigError(f"{file}: `{key}` maps the export column {column!r} onto both "
                              f"`{seen[column]}` and `{contract}`; one export column can be one "
                              "contract column only.")
        seen[column] = contract
    return out


def _roles(file: str, value: Any, section: str = "leads.roles") -> tuple[ColumnSpec, ...]:
    out = []
    for column, spec in _mapping(file, section, value).items():
        column = _text(file, section, column)
        key = f"{section}.{column}"
        if isinstance(spec, str) or spec is None:
            spec = {"role": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{file}: `{key}` must be a role ({', '.join(ROLES)}) or a "
                              f"mapping with `role:`; got {spec!r}")
        _check_keys(file, f"{key}.", spec, ROLE_KEYS)
        role = _choice(file, f"{key}.role", spec.get("role"), ROLES)
        kind = _choice(file, f"{key}.type", spec.get("type", "auto"), TYPES)
        safe = spec.get("safe", False)
        if not isinstance(safe, bool):
            raise ConfigError(f"{file}: `{key}.safe` must be true or false; got {safe!r}")
        reason = spec.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ConfigError(f"{file}: `{key}.reason` must be text; got {reason!r}")
        if safe and role not in ("fit", "behaviour"):
            raise ConfigError(f"{file}: `{key}`: `safe: true` keeps a column the leakage audit "
                              f"flagged as a feature, so its role must be fit or behaviour; "
                              f"got {role!r}")
        if safe and not (reason or "").strip():
            raise ConfigError(f"{file}: `{key}`: `safe: true` overrides the leakage audit; say "
                              "why in `reason:` (one line)")
        name = spec.get("name")
        if name is not None and (not isinstance(name, str)
                                 or not re.fullmatch(r"[a-z][a-z0-9_]*", name)):
            raise ConfigError(f"{file}: `{key}.name` must be a lower-case identifier (a-z, "
                              f"0-9, _; starting with a letter); got {name!r}")
        name = name or column_name(column)
        if not name and role != "ignore":
            raise ConfigError(f"{file}: {column!r} has no letters or digits to name it by; "
                              f"give it a name: `{key}.name`")
        out.append(ColumnSpec(column=column, role=role, type=kind, name=name,
                              reason=reason.strip() if reason else None, safe=safe))
    return tuple(out)


def _outcome(file: str, raw: Mapping[str, Any], lead_map: Mapping[str, str],
             events: EventsSource | None) -> Outcome:
    _check_keys(file, "outcome.", raw, OUTCOME_KEYS)
    missing = _choice(file, "outcome.missing", raw.get("missing", "error"), MISSING_OUTCOME)
    if raw.get("event") is not None:
        other = [k for k in ("column", "positive", "negative", "lost", "date") if k in raw]
        if other:
            raise ConfigError(f"{file}: `outcome.event` takes the outcome from the events file; "
                              f"drop `outcome.{other[0]}` (or drop `outcome.event` to use a "
                              "column)")
        if events is None:
            raise ConfigError(f"{file}: `outcome.event` needs an `events:` section (the "
                              "activity log the conversion event is in)")
        if "converted_at" in lead_map:
            raise ConfigError(f"{file}: with `outcome.event` the conversion date is the event's "
                              "timestamp; remove `converted_at` from `leads.map`")
        return Outcome(event=_text(file, "outcome.event", raw["event"]), missing=missing)
    if raw.get("column") is None:
        raise ConfigError(f"{file}: `outcome` needs `column:` (with `positive:` and "
                          "`negative:` values) or `event:` (an event type in the events file)")
    column = _text(file, "outcome.column", raw["column"])
    positive = _texts(file, "outcome.positive", raw.get("positive"))
    negative = _texts(file, "outcome.negative", raw.get("negative"))
    lost = _texts(file, "outcome.lost", raw.get("lost"))
    if not positive or not negative:
        raise ConfigError(f"{file}: `outcome.positive` and `outcome.negative` must each list at "
                          f"least one value of {column!r} (e.g. positive: ['Won'], negative: "
                          "['Lost', 'Open'])")
    both = sorted(_fold(positive) & _fold(negative))
    if both:
        raise ConfigError(f"{file}: {', '.join(repr(b) for b in both)} is in both "
                          "`outcome.positive` and `outcome.negative`")
    not_negative = sorted(_fold(lost) - _fold(negative))
    if not_negative:
        raise ConfigError(f"{file}: `outcome.lost` must be a subset of `outcome.negative`; "
                          f"{', '.join(repr(v) for v in not_negative)} is not negative")
    date = _text(file, "outcome.date", raw["date"]) if raw.get("date") is not None else None
    if date is not None and "converted_at" in lead_map:
        raise ConfigError(f"{file}: the conversion date is given twice (`outcome.date` and "
                          "`leads.map.converted_at`); keep one")
    if lost and date is None:
        raise ConfigError(f"{file}: `outcome.lost` dates lost leads with `outcome.date`; add "
                          "`outcome.date` (the column with the closing date) or drop `lost`")
    if lost and "lost_at" in lead_map:
        raise ConfigError(f"{file}: the lost date is given twice (`outcome.lost` with "
                          "`outcome.date`, and `leads.map.lost_at`); keep one")
    return Outcome(column=column, positive=positive, negative=negative, lost=lost, date=date,
                   missing=missing)


def _params(file: str, value: Any) -> dict[str, Any]:
    given = _mapping(file, "params", value)
    _check_keys(file, "params.", given, OVERRIDABLE)
    features = given.get("features") or {}
    for key in ("exclude", "safe"):
        if isinstance(features, Mapping) and key in features:
            raise ConfigError(
                f"{file}: `params.features.{key}`: leakage decisions are written as column "
                f"roles in `leads.roles` (role: exclude, or safe: true with a reason), so they "
                "are made once, next to the column they are about")
    return given


def _exported_at(file: str, value: Any) -> pd.Timestamp | None:
    try:
        return parse_moment("exported_at", value)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from None


def _check_consistency(config: SourceConfig) -> None:
    file, leads = config.file, config.leads
    mapped = set(leads.map.values())
    outcome_columns = {c for c in (config.outcome.column, config.outcome.date) if c}
    for spec in leads.roles:
        if spec.column in mapped or spec.column in outcome_columns:
            what = "mapped in `leads.map`" if spec.column in mapped else "the outcome"
            raise ConfigError(f"{file}: {spec.column!r} is {what}, so it cannot also have a "
                              "role in `leads.roles`; remove it from one of them")
    if not config.time_aware:
        # A date in a lead-level export becomes "days before exported_at" (features.build).
        if config.events is not None and config.outcome.event is None:
            raise ConfigError(
                f"{file}: an events file needs `created_at` in `leads.map`: without a creation "
                "time there is no as_of before which events may be counted. Map created_at, "
                "or drop `events:` and pass behaviour as pre-aggregated lead columns "
                "(role: behaviour).")
        return
    behaviour = [s.column for s in leads.roles if s.role == "behaviour" and not s.safe]
    if behaviour or leads.default_role == "behaviour":
        shown = ", ".join(repr(c) for c in behaviour[:3]) or "every unlisted column"
        raise ConfigError(
            f"{file}: role `behaviour` ({shown}) is for lead-level exports. This export maps "
            "`created_at`, so features are taken at moments after creation, and a total in the "
            "leads table is as of the export: it would count activity after each snapshot. "
            "Give the activity as `events:`, or set the role to exclude (audited, not used), "
            "or keep it knowingly with `safe: true` and a reason.")


def _fold(values: Sequence[str]) -> set[str]:
    return {str(v).strip().casefold() for v in values}


# ------------------------------------------------------------- params.yaml + config


def effective_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml as read, with the source configuration's decisions folded in.

    For `source: synthetic` the mapping is returned as is. Otherwise the config's `params:`
    overrides are deep-merged (mappings merge, everything else replaces), and the config's
    excluded / safe columns are added to `features.exclude` / `features.safe` (a column the
    config marks safe is dropped from params.yaml's exclude list, and the other way round).
    """
    source = raw.get("source", SYNTHETIC) if isinstance(raw, Mapping) else SYNTHETIC
    if source in (None, SYNTHETIC):
        return dict(raw) if isinstance(raw, Mapping) else raw
    config = load_source(str(source))
    merged = _deep_merge(dict(raw), config.params)
    features = dict(merged.get("features") or {})
    exclude, safe = list(config.exclude), list(config.safe)
    features["exclude"] = _union(features.get("exclude"), exclude, drop=safe)
    features["safe"] = _union(features.get("safe"), safe, drop=exclude)
    merged["features"] = features
    passed = [s.name.removeprefix(PASS_PREFIX) for s in config.leads.roles if s.role == "pass"]
    if passed:
        score = dict(merged.get("score") or {})
        score["pass_through"] = _union(score.get("pass_through"), passed, drop=())
        merged["score"] = score
    return merged


def _union(first: Any, second: Sequence[str], drop: Sequence[str]) -> list[str]:
    items = list(first) if isinstance(first, (list, tuple)) else []
    return [c for c in dict.fromkeys([*items, *second]) if c not in set(drop)]


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------- reading


@dataclass
class Export:
    """The raw tables of an export, as read (text columns, rows numbered as in the file)."""

    leads: pd.DataFrame
    events: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    #: per-lead columns of an event-log-only export that vary within a lead (not used)
    varying: tuple[str, ...] = ()


def read_export(config: SourceConfig) -> Export:
    """Read the leads (and events) files with the configured options.

    Entirely empty columns with no header name (a trailing delimiter) are dropped. Read
    errors are DataErrors that name the `read.*` option of the config that is likely wrong.
    """
    notes: list[str] = []
    if config.leads_from_events:
        assert config.events is not None
        events = _read(config, config.events.path, config.events.read, "events", notes)
        leads, varying, derived_notes = derive_leads(config, events)
        return Export(leads, events, notes + derived_notes, varying)
    leads = _read(config, config.leads.path, config.leads.read, "leads", notes)
    events = None
    if config.events is not None:
        events = _read(config, config.events.path, config.events.read, "events", notes)
    return Export(leads, events, notes)


def derive_leads(config: SourceConfig, events: pd.DataFrame
                 ) -> tuple[pd.DataFrame, tuple[str, ...], list[str]]:
    """The raw leads table of an event-log-only export: one row per lead id (in order of
    first appearance) with the lead id, the raw timestamp text of the lead's first event (as
    `created_at`) and each per-lead column that is constant within every lead.

    Rows are numbered by the file row of the lead's first event. Returns (leads, the
    per-lead columns that vary within a lead and are not used, notes).
    Rows without a lead id are left to the events validation (rejected there with a reason).
    """
    ev = config.events
    assert ev is not None
    file = str(ev.path)
    _require(config, events, list(ev.map.values()), file, "events")
    id_col, ts_col = ev.map["lead_id"], ev.map["timestamp"]
    per_lead = [c for c in dict.fromkeys(_configured_lead_columns(config))
                if c not in (id_col, ts_col)]
    _require(config, events, per_lead, file, "events")
    ids = events[id_col].astype("str").str.strip().where(events[id_col].notna())
    has_id = ids.notna() & (ids != "")
    frame = events.loc[has_id, [ts_col, *per_lead]].copy()
    frame.insert(0, "_id", ids[has_id])
    frame["_row"] = frame.index
    frame["_at"] = parse_dates(frame[ts_col], ev.read)
    # The first event per lead (unparseable timestamps last, so validation sees one only
    # when a lead has no readable timestamp at all); ties keep file order.
    order = frame.sort_values("_at", kind="stable", na_position="last")
    first = order.drop_duplicates("_id", keep="first").set_index("_id")
    lead_ids = pd.Index(frame["_id"].drop_duplicates(), name=None)
    out = pd.DataFrame({id_col: lead_ids.to_numpy(),
                        ts_col: first.loc[lead_ids, ts_col].to_numpy()},
                       index=pd.Index(first.loc[lead_ids, "_row"].to_numpy()))
    notes = [f"leads: derived from the event log: {len(lead_ids)} leads (one per "
             f"{id_col!r}), created_at = each lead's first {ts_col!r}"]
    varying: list[str] = []
    for column in per_lead:
        text = frame[column].astype("str").str.strip().where(frame[column].notna())
        text = text.where(text != "")
        distinct = text.groupby(frame["_id"]).nunique(dropna=True)
        varies = distinct[distinct > 1]
        if len(varies):
            lead = varies.index[0]
            values = text[frame["_id"] == lead].dropna().unique()[:3]
            varying.append(column)
            notes.append(
                f"events: per-lead column {column!r} changes within {len(varies)} of "
                f"{len(lead_ids)} leads (e.g. lead {lead}: "
                f"{', '.join(_show(v) for v in values)}), so it is not a lead attribute and "
                "is not used. Give it as an event column (events.map) if it describes events.")
            continue
        value = text.groupby(frame["_id"]).first()  # first non-missing value
        out[column] = lead_ids.map(value).to_numpy()
    out[ts_col] = out[ts_col].astype("str").where(out[ts_col].notna())
    return out, tuple(varying), notes


def _read(config: SourceConfig, path: Path, options: ReadOptions, what: str,
          notes: list[str]) -> pd.DataFrame:
    section = f"{what}.read"
    _check_bom(config, path, options, section)
    try:
        with source_messages(config.file, section):
            frame = read_table(path, options, what)
    except DataError as err:
        guess = _guess_encoding(path, options, _wanted(config, what)) \
            if "encoding" in str(err) else None
        if guess is None:
            raise
        text = re.sub(r", e\.g\. to '[^)]*'\)", ")", str(err))
        raise DataError(f"{text} It reads as {guess!r} (the configured columns are in its "
                        f"header): set `{section}.encoding: {guess}`.", file=err.file,
                        column=err.column, n_rows=err.n_rows, example=err.example) from None
    empty = [c for c in frame.columns if _UNNAMED.match(str(c)) and frame[c].isna().all()]
    if empty:
        notes.append(f"{what}: dropped {len(empty)} empty column(s) without a header name "
                     "(a trailing delimiter)")
        frame = frame.drop(columns=empty)
    return frame


_ENCODINGS = ("utf-8", "cp1251", "cp1252", "koi8-r", "utf-16")


def _wanted(config: SourceConfig, what: str) -> list[str]:
    if what == "events" and config.events is not None:
        return list(config.events.map.values())
    return _configured_lead_columns(config)


def _guess_encoding(path: Path, options: ReadOptions, wanted: Sequence[str]) -> str | None:
    """The first common encoding that decodes the file's start and whose header holds every
    configured column (error path only)."""
    with Path(path).open("rb") as handle:
        head = handle.read(1 << 16)
    head = head[: head.rfind(b"\n") + 1] or head  # whole lines: no cut multi-byte character
    for candidate in _ENCODINGS:
        if candidate == options.encoding:
            continue
        try:
            text = head.decode("utf-8-sig" if candidate == "utf-8" else candidate)
        except (UnicodeDecodeError, LookupError):
            continue
        header = text.splitlines()[0].split(options.delimiter) if text else []
        names = {h.strip().strip('"') for h in header}
        if wanted and all(w in names for w in wanted):
            return candidate
    return None


def _check_bom(config: SourceConfig, path: Path, options: ReadOptions, section: str) -> None:
    if not path.is_file() or path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return
    with path.open("rb") as handle:
        head = handle.read(3)
    utf8 = options.encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig")
    if head == b"\xef\xbb\xbf" and not utf8:
        raise DataError(
            f"{path}: the {section.split('.')[0]} file starts with a UTF-8 byte-order mark, "
            f"but `{section}.encoding` is {options.encoding!r}. Set `{section}.encoding: utf-8` "
            f"in {config.file}.", file=str(path))


_READ_OPTION = re.compile(r"\bingest\.(" + "|".join(READ_KEYS) + r")\b")


def _as_read_key(message: str, section: str) -> str:
    return _READ_OPTION.sub(lambda m: f"{section}.{m.group(1)}", message)


@contextmanager
def source_messages(file: str, section: str,
                    columns: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-word read and contract errors for a source configuration: `ingest.<option>`
    becomes `<section>.<option>` of the config `file`, and an error about a contract column
    names the export column mapped onto it (`columns`: contract -> export)."""
    try:
        yield
    except LeadpropError as err:
        message = str(err)
        column = getattr(err, "column", None)
        mapped = (columns or {}).get(column) if column else None
        if not _READ_OPTION.search(message) and not mapped:
            raise
        text = _as_read_key(message, section)
        if mapped:
            text += f" ('{column}' is the export column {mapped!r}, see {file}.)"
        if _READ_OPTION.search(message):
            text += f" (The read options are in {file}.)"
        if isinstance(err, DataError):
            raise DataError(text, file=err.file, column=err.column, n_rows=err.n_rows,
                            example=err.example) from None
        raise type(err)(text) from None


# ---------------------------------------------------------------------------- mapping


@dataclass
class Mapped:
    """An export in the contract's shape, ready for `pipeline.contract` validation.

    `leads` / `events`: raw frames (text, plus datetime columns where the outcome came from
    events) with contract names. `columns`: one ColumnSpec per kept role column (defaults
    filled in), `ignored`: export columns dropped. In a lead-level export `leads` carries a
    placeholder `created_at` for validation, which `drop_placeholder` removes again.
    """

    leads: pd.DataFrame
    events: pd.DataFrame | None
    columns: tuple[ColumnSpec, ...]
    ignored: tuple[str, ...]
    outcome_counts: dict[str, int]
    event_type_counts: dict[str, int]
    notes: list[str]
    lead_level: bool


def map_export(config: SourceConfig, export: Export) -> Mapped:
    """Check the export against the config and rename it onto the contract.

    DataError when a configured column is not in the file (with close matches), or the
    outcome holds values that are neither positive nor negative (with counts).
    """
    raw, file = export.leads, str(config.leads.path)
    notes = list(export.notes)
    _require(config, raw, [c for c in _configured_lead_columns(config)
                           if c not in export.varying], file, "leads")
    if config.events is not None and export.events is not None:
        _require(config, export.events, list(config.events.map.values()),
                 str(config.events.path), "events")
    columns, ignored = _resolve_roles(config, raw)

    out: dict[str, pd.Series] = {}
    lead_map = config.leads.map
    if "lead_id" in lead_map:
        out["lead_id"] = raw[lead_map["lead_id"]]
    else:
        out["lead_id"] = pd.Series(raw.index.astype(str), index=raw.index, dtype="str")
        notes.append("leads: no lead_id column; each lead's id is its row number in the file")
    for contract, column in lead_map.items():
        if contract != "lead_id" and column not in export.varying:
            out[contract] = raw[column]

    events = None
    type_counts: dict[str, int] = {}
    if config.events is not None and export.events is not None:
        events, type_counts = _map_events(config, export.events)
    outcome = config.outcome
    if outcome.event is not None:
        out["converted"], out["converted_at"], counts = _outcome_from_events(
            config, out["lead_id"], events)
    else:
        out["converted"], counts = _outcome_codes(config, raw[outcome.column], file)
        if outcome.date is not None:
            dates = raw[outcome.date]
            is_pos = out["converted"] == "1"
            out["converted_at"] = dates.where(is_pos)
            if outcome.lost:
                is_lost = raw[outcome.column].astype("str").str.strip().str.casefold().isin(
                    _fold(outcome.lost))
                out["lost_at"] = dates.where(is_lost & raw[outcome.column].notna())
    for spec in columns:
        out[spec.name] = raw[spec.column]
    if config.time_aware:
        _require_conversion_dates(config, out, file)

    lead_level = not config.time_aware
    leads = pd.DataFrame(out, index=raw.index)
    if lead_level:
        # The earliest plausible day (ingest.min_date), so no real date is before it.
        leads["created_at"] = pd.Series(pd.Timestamp(config.leads.read.min_date),
                                        index=raw.index).astype(DATETIME)
        if events is not None:
            notes.append("events: a lead-level export (no created_at) uses the activity log "
                         "for the outcome only; behaviour must come as lead columns")
            events = None
    return Mapped(leads, events, columns, ignored, counts, type_counts, notes, lead_level)


def _require_conversion_dates(config: SourceConfig, out: Mapping[str, pd.Series],
                              file: str) -> None:
    """DataError when a time-aware export's positives have no conversion date at all.

    With `created_at` mapped, a label is "converted within the horizon after as_of", which
    needs each conversion's moment; without one every positive is "converted without a
    date" and never a positive example (training would then blame the horizon).
    """
    converted = out["converted"]
    is_pos = converted == "1"
    n_pos = int(is_pos.sum())
    if not n_pos:
        return
    dates = out.get("converted_at")
    if dates is not None:
        text = dates.astype("str").str.strip().where(dates.notna())
        if (text[is_pos].notna() & (text[is_pos] != "")).any():
            return
    created = config.leads.map["created_at"]
    example = str(out["lead_id"][is_pos].iloc[0])
    raise DataError(
        f"{file}: {config.file} maps {created!r} to `created_at`, so the export is read "
        f"time-aware (a lead is scored at moments after it was created and its label is "
        f"\"converted within the horizon after that moment\"), but none of the {n_pos} "
        f"converted leads (e.g. lead {example}) has a conversion date, so no snapshot could "
        f"ever be a positive. Two honest options: (1) give the conversion date: "
        f"`outcome.date: <column>` (or `leads.map.converted_at`), or an activity log with "
        f"`outcome.event`; or (2) read the export lead-level: remove `created_at` from "
        f"`leads.map` and give {created!r} a role instead (`leads.roles.{created}: "
        f"{{role: fit, type: date}}` becomes \"days before exported_at\").",
        file=file, column=created, n_rows=n_pos, example=example)


def drop_placeholder(frame: pd.DataFrame) -> pd.DataFrame:
    """A lead-level frame without the placeholder `created_at` added for validation."""
    return frame.drop(columns="created_at") if "created_at" in frame.columns else frame


def _configured_lead_columns(config: SourceConfig) -> list[str]:
    cols = list(config.leads.map.values()) + [s.column for s in config.leads.roles]
    cols += [c for c in (config.outcome.column, config.outcome.date) if c]
    return cols


def _require(config: SourceConfig, raw: pd.DataFrame, wanted: Sequence[str], file: str,
             what: str) -> None:
    have = [str(c) for c in raw.columns]
    missing = [c for c in dict.fromkeys(wanted) if c not in have]
    if not missing:
        return
    lower = {h.casefold(): h for h in have}
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col.casefold(), list(lower), n=3, cutoff=0.6)
        if close:
            hints.append(f"for {col!r}: {', '.join(repr(lower[c]) for c in close)}")
    section = f"{what}.read"
    options = config.leads.read if what == "leads" else config.events.read  # type: ignore[union-attr]
    encoding = _encoding_hint(missing, have, options.encoding, section)
    plural = "s" if len(missing) > 1 else ""
    raise DataError(
        f"{file}: {config.file} names {len(missing)} {what} column{plural} the file does not "
        f"have: {', '.join(repr(c) for c in missing)}."
        + (f" Close matches {'; '.join(hints)}." if hints else "")
        + encoding
        + f" The file has {len(have)} columns: {', '.join(repr(h) for h in have[:40])}"
        + (", …" if len(have) > 40 else "") + ".",
        file=file, column=missing[0])


def _encoding_hint(missing: Sequence[str], have: Sequence[str], encoding: str,
                   section: str) -> str:
    """' Is `<section>.encoding` X?' when re-decoding the header makes a name appear."""
    for candidate in ("cp1251", "utf-8", "cp1252", "koi8-r", "latin-1"):
        if candidate == encoding:
            continue
        fixed = []
        for name in have:
            try:
                fixed.append(name.encode(encoding).decode(candidate))
            except (UnicodeError, LookupError):
                fixed.append(None)
        if any(m in fixed for m in missing):
            return (f" The file's header reads correctly as {candidate!r}: is "
                    f"`{section}.encoding` wrong (it is {encoding!r})?")
    return ""


def _resolve_roles(config: SourceConfig, raw: pd.DataFrame) -> tuple[tuple[ColumnSpec, ...],
                                                                     tuple[str, ...]]:
    """A ColumnSpec with its interim name for every kept non-contract column; the ignored."""
    used = set(_configured_lead_columns(config))
    specs: list[ColumnSpec] = []
    unlisted = []
    for column in raw.columns:
        column = str(column)
        if column in used - {s.column for s in config.leads.roles}:
            continue
        spec = config.role_of(column)
        if spec is None:
            unlisted.append(column)
            spec = ColumnSpec(column=column, role=config.leads.default_role)
        specs.append(spec)
    if unlisted and config.leads.default_role == "error":
        raise ConfigError(
            f"{config.file}: `leads.default_role` is error, and {len(unlisted)} column(s) of "
            f"{config.leads.path} have no role in `leads.roles`: "
            f"{', '.join(repr(c) for c in unlisted[:20])}. Give each a role "
            f"({', '.join(ROLES)}).")
    kept, ignored, names = [], [], {}
    for spec in specs:
        if spec.role == "ignore":
            ignored.append(spec.column)
            continue
        name = spec.name or column_name(spec.column)
        if not name:
            raise ConfigError(f"{config.file}: {spec.column!r} has no letters or digits to name "
                              f"it by; give it a name: `leads.roles.{spec.column}.name`")
        if spec.role == "pass":  # stored as _pass_<name>: never a feature, never audited
            name = f"{PASS_PREFIX}{name.removeprefix(PASS_PREFIX)}"
        if name in KNOWN_COLUMNS or name in REJECT_COLUMNS or name == "converted":
            raise ConfigError(
                f"{config.file}: the column {spec.column!r} would be stored as {name!r}, a "
                f"column the data contract gives a meaning to. If it is that, map it in "
                f"`leads.map` ({name}: {spec.column}); otherwise name it: "
                f"`leads.roles.{spec.column}: {{role: {spec.role}, name: <other name>}}`.")
        if name in names:
            raise ConfigError(
                f"{config.file}: the columns {names[name]!r} and {spec.column!r} would both be "
                f"stored as {name!r}; give one of them a `name:` in `leads.roles`.")
        names[name] = spec.column
        kept.append(ColumnSpec(spec.column, spec.role, spec.type, name, spec.reason, spec.safe))
    return tuple(kept), tuple(ignored)


def column_name(column: str) -> str:
    """The interim name of an export column: lower-case ASCII, [a-z0-9_], Cyrillic
    transliterated (`Кол-во визитов` -> `kol_vo_vizitov`); '' when nothing is left."""
    text = "".join(_TRANSLIT.get(ch, ch) for ch in str(column).strip().lower())
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _outcome_codes(config: SourceConfig, values: pd.Series, file: str
                   ) -> tuple[pd.Series, dict[str, int]]:
    """'1' / '0' per row (NA where missing and `outcome.missing` is reject); DataError
    naming every value that is neither positive nor negative."""
    outcome = config.outcome
    text = values.astype("str").str.strip()
    present = values.notna() & (text != "")
    key = text.str.casefold()
    pos, neg = key.isin(_fold(outcome.positive)), key.isin(_fold(outcome.negative))
    other = present & ~pos & ~neg
    if other.any():
        counts = text[other].value_counts()
        shown = ", ".join(f"{v!r} ({n} row{'s' if n != 1 else ''})"
                          for v, n in counts.head(8).items())
        more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
        raise DataError(
            f"{file}: the outcome column {outcome.column!r} has {int(other.sum())} row(s) with "
            f"values that are neither in `outcome.positive` ({list(outcome.positive)}) nor in "
            f"`outcome.negative` ({list(outcome.negative)}): {shown}{more}. Add each value to "
            f"one of the two lists in {config.file}.",
            file=file, column=outcome.column, n_rows=int(other.sum()),
            example=str(counts.index[0]))
    n_missing = int((~present).sum())
    if n_missing and outcome.missing == "error":
        rows = ", ".join(str(r) for r in values.index[~present][:3])
        raise DataError(
            f"{file}: the outcome column {outcome.column!r} is empty in {n_missing} row(s) "
            f"(e.g. row {rows}). Set `outcome.missing` in {config.file} to negative (an empty "
            "outcome means not converted) or reject (set those rows aside).",
            file=file, column=outcome.column, n_rows=n_missing)
    if not pos.any():
        counts = text[present].value_counts()
        raise DataError(
            f"{file}: no row of {outcome.column!r} holds a value of `outcome.positive` "
            f"({list(outcome.positive)}), so there are no conversions to learn from. Its values "
            f"are: {', '.join(repr(v) for v in counts.index[:10])}.",
            file=file, column=outcome.column)
    codes = pd.Series(np.where(pos, "1", np.where(neg, "0", None)), index=values.index,
                      dtype="str")
    if outcome.missing == "negative":
        codes = codes.where(present, "0")
    return codes, {"positive": int(pos.sum()), "negative": int(neg.sum()),
                   "missing": n_missing}


def _map_events(config: SourceConfig, raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    ev = config.events
    assert ev is not None
    frame = pd.DataFrame({c: raw[col] for c, col in ev.map.items()}, index=raw.index)
    types = frame["event_type"].astype("str").str.strip()
    mapped = types.map(dict(ev.event_types)).astype(object)
    unmapped = types.where(mapped.isna())
    readable = unmapped.map(_ascii_type, na_action="ignore")
    frame["event_type"] = mapped.fillna(readable).where(frame["event_type"].notna())
    counts = frame["event_type"].value_counts()
    return frame, {str(k): int(v) for k, v in counts.items()}


def _ascii_type(value: str) -> str:
    """An unmapped event type with non-ASCII letters, transliterated (`Звонок` -> `zvonok`)."""
    return column_name(value) or value if not value.isascii() else value


def _outcome_from_events(config: SourceConfig, lead_ids: pd.Series, events: pd.DataFrame | None
                         ) -> tuple[pd.Series, pd.Series, dict[str, int]]:
    outcome, ev = config.outcome, config.events
    assert ev is not None and events is not None
    is_won = events["event_type"] == outcome.event
    if not is_won.any():
        counts = events["event_type"].value_counts()
        close = difflib.get_close_matches(str(outcome.event), [str(c) for c in counts.index], 3)
        raise DataError(
            f"{ev.path}: no event has the type {outcome.event!r} that `outcome.event` names"
            + (f" (close: {', '.join(repr(c) for c in close)})" if close else "")
            + f". The most common types are: {', '.join(repr(c) for c in counts.index[:10])}."
            " Check `outcome.event` and `events.event_types`.",
            file=str(ev.path), column=ev.map["event_type"])
    won = events.loc[is_won, ["lead_id", "timestamp"]].copy()
    won["lead_id"] = won["lead_id"].astype("str").str.strip()
    won["at"] = parse_dates(won["timestamp"], ev.read)
    first = won.groupby("lead_id")["at"].min()
    ids = lead_ids.astype("str").str.strip()
    converted = pd.Series(np.where(ids.isin(first.index), "1", "0"), index=lead_ids.index,
                          dtype="str")
    converted_at = ids.map(first).astype(DATETIME)
    n_pos = int((converted == "1").sum())
    return converted, converted_at, {"positive": n_pos, "negative": len(ids) - n_pos,
                                     "missing": 0}


# ---------------------------------------------------------------------------- typing


def type_columns(config: SourceConfig, leads: pd.DataFrame, columns: Sequence[ColumnSpec]
                 ) -> tuple[pd.DataFrame, list[ColumnSpec], list[str]]:
    """The validated leads with each role column typed: `number` -> float64 (the export's
    decimal mark, space/apostrophe thousands separators), `flag` -> 1.0/0.0 (yes/no, true/
    false, 1/0, да/нет), `date` -> datetime64, `category` -> text; `auto` picks number when
    every value is one, else category.

    Returns (leads, the specs with their resolved type, notes). DataError when a column's
    values do not parse with the configured options (naming the option), or a kept column
    looks like personal data.
    """
    options, file = config.leads.read, str(config.leads.path)
    out = leads.copy()
    resolved, notes = [], []
    for spec in columns:
        if spec.name not in out.columns:
            continue
        text = out[spec.name].astype("str").str.strip().where(out[spec.name].notna())
        kind = spec.type
        if spec.role == "pass":  # shown as exported in the scored table; may be personal
            out[spec.name] = text.astype("str")
            resolved.append(ColumnSpec(spec.column, spec.role, "text", spec.name, spec.reason,
                                       spec.safe))
            continue
        if kind in ("auto", "category"):  # by content, before digits turn into numbers
            _refuse_personal(text, spec, config, file)  # excluded ones stay in the interim too
        if kind == "auto":
            kind = _auto_type(text, options, spec, config, file)
        if kind == "number":
            out[spec.name] = _numbers(text, options, spec, config, file, notes)
        elif kind == "flag":
            out[spec.name] = _flags(text, options, spec, config, file, notes)
        elif kind == "date":
            out[spec.name] = _dates(text, options, spec, config, file, notes)
        else:
            out[spec.name] = text.astype("str")
            if (spec.role != "exclude" and text.notna().sum() >= 50
                    and text.dropna().is_unique):
                notes.append(f"{spec.column!r}: every value is different (an id or free "
                             "text?); consider role ignore")
        resolved.append(ColumnSpec(spec.column, spec.role, kind, spec.name, spec.reason,
                                   spec.safe))
    out.attrs = dict(leads.attrs)
    return out, resolved, notes


def parse_numbers(text: pd.Series, decimal: str = ".") -> pd.Series:
    """Numbers written with `decimal` as the decimal mark (spaces, non-breaking spaces and
    apostrophes as thousands separators) as float64; NaN where missing or not a number."""
    s = text.astype("str").str.replace(_THOUSANDS, "", regex=True)
    if decimal != ".":
        s = s.where(~s.str.contains(".", regex=False)).str.replace(decimal, ".", regex=False)
    return pd.to_numeric(s.where(text.notna()), errors="coerce").astype("float64")


def _auto_type(text: pd.Series, options: ReadOptions, spec: ColumnSpec,
               config: SourceConfig, file: str) -> str:
    present = text.dropna()
    if present.empty:
        return "category"
    if parse_numbers(present, options.decimal).notna().all():
        return "number"
    other = "," if options.decimal == "." else "."
    ok_other = parse_numbers(present, other).notna().mean()
    ok_here = parse_numbers(present, options.decimal).notna().mean()
    if ok_other >= 0.95 and ok_other > ok_here:
        example = present[parse_numbers(present, options.decimal).isna()].iloc[0]
        raise DataError(
            f"{file}: column {spec.column!r} looks numeric with {other!r} as the decimal mark "
            f"(e.g. {_show(example)}), but `leads.read.decimal` is {options.decimal!r}. Set "
            f"`leads.read.decimal: {other!r}` in {config.file}, or give the column "
            "`type: category` if it is not a number.",
            file=file, column=spec.column, example=str(example))
    return "category"


def _show(value: Any) -> str:
    """A cell value quoted for a message (non-breaking spaces shown as spaces)."""
    return "'" + str(value).replace("\u00a0", " ").replace("\u202f", " ") + "'"


def _too_many(bad: pd.Series, present: pd.Series, options: ReadOptions) -> bool:
    return bool(bad.sum() > options.max_bad_share * max(int(present.sum()), 1))


def _numbers(text: pd.Series, options: ReadOptions, spec: ColumnSpec, config: SourceConfig,
             file: str, notes: list[str]) -> pd.Series:
    values = parse_numbers(text, options.decimal)
    bad = text.notna() & values.isna()
    if _too_many(bad, text.notna(), options):
        examples = ", ".join(_show(v) for v in text[bad].head(3))
        raise DataError(
            f"{file}: column {spec.column!r} (type number) has {int(bad.sum())} of "
            f"{int(text.notna().sum())} values that are not numbers with the decimal mark "
            f"{options.decimal!r} (e.g. {examples}). Is `leads.read.decimal` right, or should "
            f"`na_values` list a marker such as 'N/A'? Both are in {config.file}; or give the "
            "column `type: category`.",
            file=file, column=spec.column, n_rows=int(bad.sum()),
            example=str(text[bad].iloc[0]))
    if bad.any():
        notes.append(f"{spec.column!r}: {int(bad.sum())} value(s) that are not numbers read "
                     "as missing")
    return values


def _flags(text: pd.Series, options: ReadOptions, spec: ColumnSpec, config: SourceConfig,
           file: str, notes: list[str]) -> pd.Series:
    key = text.str.casefold()
    values = pd.Series(np.where(key.isin(_FLAG_TRUE), 1.0, np.where(key.isin(_FLAG_FALSE),
                                                                    0.0, np.nan)),
                       index=text.index, dtype="float64")
    bad = text.notna() & values.isna()
    if _too_many(bad, text.notna(), options):
        counts = text[bad].value_counts()
        raise DataError(
            f"{file}: column {spec.column!r} (type flag) holds values that are not yes/no "
            f"(1/0, true/false, да/нет): {', '.join(repr(v) for v in counts.index[:5])}. Give it "
            f"`type: category` in {config.file}, or add the markers for 'missing' to "
            "`leads.read.na_values`.",
            file=file, column=spec.column, n_rows=int(bad.sum()), example=str(counts.index[0]))
    if bad.any():
        notes.append(f"{spec.column!r}: {int(bad.sum())} value(s) that are not yes/no read as "
                     "missing")
    return values


def _dates(text: pd.Series, options: ReadOptions, spec: ColumnSpec, config: SourceConfig,
           file: str, notes: list[str]) -> pd.Series:
    values = parse_dates(text, options)
    bad = text.notna() & values.isna()
    if _too_many(bad, text.notna(), options):
        examples = ", ".join(repr(v) for v in text[bad].head(2))
        fmt = options.date_format or ("day-first" if options.dayfirst else "ISO YYYY-MM-DD")
        raise DataError(
            f"{file}: column {spec.column!r} (type date) has {int(bad.sum())} values that are "
            f"not dates as read ({fmt}; e.g. {examples}). Set `leads.read.date_format` (e.g. "
            f"'%d.%m.%Y') in {config.file}.",
            file=file, column=spec.column, n_rows=int(bad.sum()),
            example=str(text[bad].iloc[0]))
    if bad.any():
        notes.append(f"{spec.column!r}: {int(bad.sum())} value(s) that are not dates read as "
                     "missing")
    # Implausible dates (typos such as 2062) would skew "days before exported_at".
    end = config.exported_at if config.exported_at is not None else utc_now()
    odd = (values > end) | (values < to_naive_utc(options.min_date))
    if odd.any():
        notes.append(f"{spec.column!r}: {int(odd.sum())} date(s) after the export moment "
                     f"{end:%Y-%m-%d} or before {options.min_date} read as missing (e.g. "
                     f"{_show(text[odd].iloc[0])})")
        values = values.mask(odd)
    return values


def _refuse_personal(text: pd.Series, spec: ColumnSpec, config: SourceConfig, file: str) -> None:
    hit = personal_kind(text, str(spec.column))  # by content: emails, phones, person names
    if hit is None:
        return
    what = {"email": "email addresses", "phone": "phone numbers", "name": "person names"}
    field_ = hit.kind if hit.kind != "name" else "first_name / last_name"
    raise DataError(
        f"{file}: column {spec.column!r} (role {spec.role}) holds {what[hit.kind]} "
        f"({hit.share:.0%} of the values looked at; e.g. {hit.example}). Personal data never "
        f"becomes a feature: map it in `leads.map` ({field_}: {spec.column}) or set its role "
        f"to ignore in {config.file}.",
        file=file, column=spec.column, n_rows=int(text.notna().sum()), example=hit.example)


# ----------------------------------------------------------------------------- report


def file_digest(path: Path) -> str | None:
    """sha256 of a file (first 16 hex characters); None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def exported_at(config: SourceConfig) -> pd.Timestamp:
    """The export moment: `exported_at` from the config, else the leads file's modification
    time (UTC, to the second)."""
    if config.exported_at is not None:
        return config.exported_at
    stamp = pd.Timestamp(Path(config.leads.path).stat().st_mtime, unit="s")
    return stamp.floor("s").as_unit("us")


def source_report(config: SourceConfig, mapped: Mapped, columns: Sequence[ColumnSpec],
                  notes: Sequence[str], end: pd.Timestamp | None) -> dict[str, Any]:
    """JSON-able record of what ingest did with the export (written to
    `paths.interim/source.json`): the export files and their digests, mode, the role, type
    and interim name of every column, the decisions with their reasons, the outcome counts,
    the config's params overrides, notes. The config file's own digest is left out: a
    comment edit must not retrain, while any change of meaning shows here."""
    files = {"config": {"path": config.file},
             "leads": {"path": str(config.leads.path),
                       "sha256": file_digest(config.leads.path)}}
    if config.events is not None:
        files["events"] = {"path": str(config.events.path),
                           "sha256": file_digest(config.events.path)}
    outcome = ({"event": config.outcome.event} if config.outcome.event else
               {"column": config.outcome.column, "positive": list(config.outcome.positive),
                "negative": list(config.outcome.negative)})
    return {
        "name": config.name,
        "mode": "lead_level" if mapped.lead_level else "time_aware",
        "exported_at": end.isoformat() if end is not None else None,
        "files": files,
        "map": dict(config.leads.map),
        "events_map": dict(config.events.map) if config.events else None,
        "outcome": {**outcome, "counts": mapped.outcome_counts},
        "columns": [{"column": s.column, "name": s.name,
                     "feature": None if s.role == "pass" else f"extra_{s.name}",
                     "role": s.role, "type": s.type, "safe": s.safe, "reason": s.reason}
                    for s in columns],
        "ignored": list(mapped.ignored),
        "exclude": list(config.exclude),
        "safe": list(config.safe),
        "event_types": mapped.event_type_counts,
        "params": _plain(config.params),
        "notes": list(notes),
    }


def _plain(value: Any) -> Any:
    """Read-only mappings as plain dicts (JSON-able)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
