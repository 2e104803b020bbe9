"""Manual point rules: scoring them point-in-time, the points the data would give them, verdicts.

Marketing scores leads with hand-set rules (+20 for a price-list download, -10 for a free-mail
address, -5 per month of silence ...). This module answers "which of our rules are wrong, by
how much, and what should the points be?". It never reads a file: `pipeline.rules_config`
reads `rules.yaml` (with line numbers in its errors) and calls `parse_ruleset`.

Rules (the format of `rules.yaml`, see that file for a commented example). Every rule has a
unique `name` and `points`, and turns a snapshot (lead_id, as_of) into one raw input x >= 0;
its points are `points * x` and the rule total is the sum over rules:

- event rule (`event: <type>` or a list of types, optional `window_days`, optional `cap`):
  x = number of the lead's events of those types with `as_of - window_days <= timestamp <
  as_of` (no window: every event before as_of), capped at `cap`. Counting is the feature
  code's (`features.behaviour.behaviour_features`), so an event at exactly as_of is never
  seen and the rule's count is literally the model's `evt_<type>_<w>` feature.
  With `half_life_days: H` instead of a window, every event counts 2^(-age / H) (age in
  days before as_of: a demo request worth 30 points is worth 15 after H days), summed and
  capped at `cap`: interest that fades, still one additive column
  (`features.behaviour.group_decay_sums`).
- field rule (`field:` a lead column or a fit/feature column such as
  `fit_email_domain_type`, `fit_seniority`, with one of `equals`, `in`, `range: [lo, hi]`):
  x = 1 when the value matches, else 0 (missing never matches). Text is compared stripped
  and case-insensitively; numeric columns numerically; `range` is inclusive at both ends and
  `null` leaves a side open. A field is looked up in the fit/feature frame first, then in the
  leads table. Personal and outcome columns (email, converted, ...) are refused.
- decay rule (`decay: {after_days: A, per_days: P, max_steps: M}`): inactivity d = days from
  the last activity event before as_of (every event but `email_sent`, as in the features) to
  as_of, or the lead's age when it had none. x = 0 while d < A, then 1 + floor((d - A) / P),
  at most M. With `points: -5` and A = P = 30 that is "-5 per 30 days of silence after 30
  days". Additive on purpose (no floor at 0, no multiplicative half-life): every rule stays a
  column of a linear score, so its points can be learned and compared one by one.

Bands on the rule total (`bands: {temperature: {warm: 30, hot: 70}}`): a set maps band names
to the minimum total, lowest first, strictly increasing; total >= threshold goes to the higher
band. The band below the first threshold is named by a leading `name: null` entry, else
`cold` (temperature), `lead` (lifecycle) or `below_<first band>`.

Learned points. A logistic regression with an L2 penalty (`LearnSettings.C`, on standardised
inputs) is fitted on the rules' raw inputs x of the training split; coefficient b_r is the
change in log-odds per unit of x_r. Points are log-odds times a factor:
`learned_points_r = factor * b_r`. The factor is chosen so that the learned total
sum_r factor * b_r * x_r has the same spread as the manual total on the training snapshots
(`spread_factor`): spread = the interdecile range (90th minus 10th percentile), which the
few leads with hundreds of site visits cannot inflate the way they inflate a standard
deviation (the standard deviation is the fallback when 80 % of snapshots tie). The two
point systems then live on the same scale, and a lead with nothing going for it has 0
points in both. Equivalently, `PDO = factor * ln 2` points double the odds of converting
(reported; `LearnSettings.pdo` fixes it instead).
Intervals: `n_bootstrap` resamples of leads (all snapshots of a drawn lead go together),
seeded, refitted, same factor; percentile interval at `ci_level`. `support` is the share of
training snapshots where the rule fires (x > 0); `lift` the conversion of those snapshots
over the conversion of the others. Learned points are conditional on the other rules: two
rules on overlapping signals (all-time and last-7-days pricing views) share the credit, and
one of them may even flip sign; `lift` is the one-rule-at-a-time view next to it.

Verdict per rule (m = manual points, l = learned, [lo, hi] its interval; defaults
`min_support` 0.01, `wide_ci_ratio` 2, `tolerance` 0.25), first match wins:

1. `no evidence`: the rule cannot be learned (never or always fires), or lo <= 0 <= hi and
   (support < `min_support` or hi - lo > `wide_ci_ratio` * max(|m|, 1)).
2. `wrong sign`: m > 0 and hi < 0, or m < 0 and lo > 0 (the data says the opposite).
3. `about right`: lo <= m <= hi, or |l - m| <= `tolerance` * |m|.
4. `underweighted` when the data gives the rule more weight in its own direction than m
   (l > m for a bonus, l < m for a penalty; any l for m = 0), else `overweighted`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression

from features.behaviour import (
    DAY_US,
    as_datetime_us,
    behaviour_features,
    group_decay_sums,
    type_slugs,
)
from features.behaviour import window_label as _window_label
from features.fit import (
    DOMAIN_TYPES,
    FUNCTIONS,
    LOCAL_KINDS,
    OUTCOME_COLUMNS,
    PERSONAL_COLUMNS,
    REGIONS,
    SENIORITIES,
    SIZE_BUCKETS,
    fit_features,
)
from features.settings import FeatureSettings
from models.bands import FittedBands, fit_bands
from models.calibration import fit_calibrator
from models.settings import (
    BandSet,
    CalibrationSettings,
    InputError,
    InsufficientDataError,
    SettingsError,
)

__all__ = [
    "VERDICTS",
    "DecayRule",
    "EventRule",
    "FieldRule",
    "LearnSettings",
    "LearnedPoints",
    "PointBands",
    "RuleError",
    "RuleSet",
    "RuleVocabulary",
    "check_ruleset",
    "comparison_table",
    "factor_of_pdo",
    "learn_points",
    "learned_ruleset",
    "parse_ruleset",
    "pdo_of",
    "point_bands",
    "rule_features",
    "rule_verdict",
    "ruleset_to_dict",
    "scale_points",
    "score_rules",
    "spread",
    "spread_factor",
    "vocabulary",
]

ABOUT_RIGHT = "about right"
OVERWEIGHTED = "overweighted"
UNDERWEIGHTED = "underweighted"
WRONG_SIGN = "wrong sign"
NO_EVIDENCE = "no evidence"
VERDICTS = (ABOUT_RIGHT, OVERWEIGHTED, UNDERWEIGHTED, WRONG_SIGN, NO_EVIDENCE)

COMPARISON_COLUMNS = (
    "rule", "manual_points", "learned_points", "ci_low", "ci_high", "support", "lift", "verdict",
)
RESERVED_NAMES = frozenset({"lead_id", "as_of", "total"})
#: Columns a field rule may never use: personal data, and the outcome itself (leakage).
FORBIDDEN_FIELDS = frozenset(PERSONAL_COLUMNS) | frozenset(OUTCOME_COLUMNS) | {"label"}
#: Fit columns with a fixed vocabulary: `equals` / `in` values are checked against it.
FIXED_LEVELS: Mapping[str, tuple[str, ...]] = {
    "fit_email_domain_type": DOMAIN_TYPES,
    "fit_email_local_kind": LOCAL_KINDS,
    "fit_seniority": SENIORITIES,
    "fit_function": FUNCTIONS,
    "fit_company_size_bucket": SIZE_BUCKETS,
    "fit_region": REGIONS,
}
DEFAULT_LOWEST = {"temperature": "cold", "lifecycle": "lead"}
_SPINE_SKIP = frozenset({"lead_id", "as_of", "age_days", "created_at", "label"})

Loc = tuple[Any, ...]


class RuleError(SettingsError):
    """A rule set problem; `path` locates it in the rules document, e.g. ("rules", 3, "cap"),
    so the reader of rules.yaml can point at the line."""

    def __init__(self, path: Loc, message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RuleError, (self.path, str(self)))


# --------------------------------------------------------------------------- the rule set


@dataclass(frozen=True)
class EventRule:
    """`points` per event of `events` before as_of (in the last `window_days`, at most `cap`)."""

    name: str
    points: float
    events: tuple[str, ...]
    window_days: int | None = None
    cap: int | None = None
    half_life_days: float | None = None
    kind: Literal["event"] = "event"


@dataclass(frozen=True)
class FieldRule:
    """`points` once when `field` matches: `op` is equals / in / range, `value` its operand
    (a scalar, a tuple of values, or (lo, hi) with None for an open side)."""

    name: str
    points: float
    field: str
    op: Literal["equals", "in", "range"]
    value: Any
    kind: Literal["field"] = "field"


@dataclass(frozen=True)
class DecayRule:
    """`points` per `per_days` of inactivity once it reaches `after_days` (at most `max_steps`)."""

    name: str
    points: float
    after_days: float
    per_days: float
    max_steps: int | None = None
    kind: Literal["decay"] = "decay"


Rule = EventRule | FieldRule | DecayRule


@dataclass(frozen=True)
class PointBands:
    """A band set on the rule total: `names` lowest first, `thresholds[k]` the minimum total
    of `names[k + 1]` (strictly increasing). `fitted` / `note` say how learned thresholds were
    chosen (not part of equality)."""

    set_name: str
    names: tuple[str, ...]
    thresholds: tuple[float, ...]
    fitted: FittedBands | None = field(default=None, compare=False, repr=False)
    note: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.thresholds) + 1 or len(self.names) < 2:
            raise SettingsError(
                f"band set `{self.set_name}` needs one threshold per band above the lowest; "
                f"got names {list(self.names)} and thresholds {list(self.thresholds)}"
            )
        t = np.asarray(self.thresholds, dtype=float)
        if not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
            raise SettingsError(
                f"band set `{self.set_name}`: thresholds must be finite and strictly "
                f"increasing; got {list(self.thresholds)}"
            )


@dataclass(frozen=True)
class RuleSet:
    """Rules in file order (names unique) and band sets on their total."""

    rules: tuple[Rule, ...]
    bands: tuple[PointBands, ...] = ()

    @property
    def names(self) -> list[str]:
        """Rule names, in order (the column names of `rule_features` / `score_rules`)."""
        return [r.name for r in self.rules]

    @property
    def points(self) -> np.ndarray:
        """Points per rule, in order."""
        return np.array([float(r.points) for r in self.rules], dtype=float)

    @property
    def event_types(self) -> list[str]:
        """Every event type a rule names, first mention first."""
        return list(dict.fromkeys(t for r in self.rules if isinstance(r, EventRule)
                                  for t in r.events))

    def with_points(self, points: Mapping[str, float]) -> RuleSet:
        """A copy with new points for the named rules."""
        unknown = sorted(set(points) - set(self.names))
        if unknown:
            raise SettingsError(f"no rule named {unknown}")
        return replace(self, rules=tuple(
            replace(r, points=float(points[r.name])) if r.name in points else r
            for r in self.rules))


# --------------------------------------------------------------------------- parsing

_COMMON_KEYS = ("name", "points")
_KIND_KEYS = {
    "event": ("event", "window_days", "cap", "half_life_days"),
    "field": ("field", "equals", "in", "range"),
    "decay": ("decay",),
}


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _pos_int(path: Loc, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(path, f"{what} must be a positive integer; got {value!r}")
    return int(value)


def _scalar(path: Loc, what: str, value: Any) -> Any:
    if isinstance(value, bool):
        raise RuleError(path, (
            f"{what} is the boolean {value!r}: YAML reads unquoted yes/no/on/off/true/false "
            "as booleans; quote the value (e.g. 'no')"))
    if isinstance(value, str) and value.strip():
        return value.strip()
    if _is_number(value):
        return value
    raise RuleError(path, f"{what} must be a text or a number; got {value!r}")


def parse_ruleset(raw: Any) -> RuleSet:
    """A `RuleSet` from the mapping loaded from rules.yaml (keys `rules`, optional `bands`).

    Raises `RuleError` (with the path of the bad value) on any malformed entry.
    """
    if not isinstance(raw, Mapping):
        raise RuleError((), "the rules file must hold a mapping with a `rules:` list; "
                            f"got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"rules", "bands"}, key=str)
    if unknown:
        raise RuleError((unknown[0],), f"unknown top-level key `{unknown[0]}`; "
                                       "allowed: rules, bands")
    items = raw.get("rules")
    if not isinstance(items, list) or not items:
        raise RuleError(("rules",), "`rules` must be a non-empty list of rules; "
                                    f"got {items!r}")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        rule = _parse_rule(i, item)
        key = rule.name.casefold()
        if key in seen:
            raise RuleError(("rules", i, "name"), (
                f"rule name {rule.name!r} is used twice (rule {seen[key] + 1} and "
                f"rule {i + 1}); names must be unique"))
        seen[key] = i
        rules.append(rule)
    bands = _parse_bands(raw.get("bands"))
    return RuleSet(rules=tuple(rules), bands=bands)


def _parse_rule(i: int, item: Any) -> Rule:
    at: Loc = ("rules", i)
    if not isinstance(item, Mapping):
        raise RuleError(at, f"rule {i + 1} must be a mapping with name, points and one of "
                            f"event / field / decay; got {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(at + ("name",) if "name" in item else at,
                        f"rule {i + 1} needs a `name` (a non-empty text); got {name!r}")
    name = name.strip()
    if name in RESERVED_NAMES:
        raise RuleError(at + ("name",), f"rule name {name!r} is reserved; pick another")
    label = f"rule {name!r}"
    kinds = [k for k in _KIND_KEYS if k in item]
    if len(kinds) != 1:
        raise RuleError(at, f"{label} must have exactly one of `event`, `field` or `decay`; "
                            f"got {kinds or 'none'}")
    kind = kinds[0]
    allowed = _COMMON_KEYS + _KIND_KEYS[kind]
    for key in item:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise RuleError(at + (key,), f"{label}: unknown key `{key}`{hint}; a {kind} rule "
                                         f"takes {', '.join(allowed)}")
    if "points" not in item:
        raise RuleError(at, f"{label} needs `points`")
    points = item["points"]
    if not _is_number(points):
        raise RuleError(at + ("points",), f"{label}: `points` must be a number; got {points!r}")
    points = float(points)
    if kind == "event":
        return _parse_event(at, label, name, points, item)
    if kind == "field":
        return _parse_field(at, label, name, points, item)
    return _parse_decay(at, label, name, points, item["decay"])


def _parse_event(at: Loc, label: str, name: str, points: float,
                 item: Mapping[str, Any]) -> EventRule:
    raw = item["event"]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise RuleError(at + ("event",), f"{label}: `event` must name at least one event type")
    events: list[str] = []
    for j, v in enumerate(values):
        where = at + ("event", j) if isinstance(raw, list) else at + ("event",)
        if not isinstance(v, str) or not v.strip():
            raise RuleError(where, f"{label}: event types must be non-empty texts; got {v!r}")
        if v.strip() in events:
            raise RuleError(where, f"{label} names event type {v.strip()!r} twice")
        events.append(v.strip())
    window = item.get("window_days")
    if window is not None:
        window = _pos_int(at + ("window_days",), f"{label}: `window_days`", window)
    cap = item.get("cap")
    if cap is not None:
        cap = _pos_int(at + ("cap",), f"{label}: `cap`", cap)
    half_life = item.get("half_life_days")
    if half_life is not None:
        if not _is_number(half_life) or not half_life > 0:
            raise RuleError(at + ("half_life_days",), f"{label}: `half_life_days` must be a "
                                                      f"number of days > 0; got {half_life!r}")
        if window is not None:
            raise RuleError(at, f"{label}: use `window_days` or `half_life_days`, not both")
        half_life = float(half_life)
    return EventRule(name=name, points=points, events=tuple(events), window_days=window, cap=cap,
                     half_life_days=half_life)


def _parse_field(at: Loc, label: str, name: str, points: float,
                 item: Mapping[str, Any]) -> FieldRule:
    col = item["field"]
    if not isinstance(col, str) or not col.strip():
        raise RuleError(at + ("field",), f"{label}: `field` must be a column name; got {col!r}")
    col = col.strip()
    if col in FORBIDDEN_FIELDS:
        why = ("is personal data; use the derived fit_email_domain_type / "
               "fit_email_local_kind instead" if col in PERSONAL_COLUMNS
               else "is the outcome; a rule on it would leak the answer")
        raise RuleError(at + ("field",), f"{label}: field {col!r} {why}")
    ops = [k for k in ("equals", "in", "range") if k in item]
    if len(ops) != 1:
        raise RuleError(at, f"{label} must have exactly one of `equals`, `in` or `range`; "
                            f"got {ops or 'none'}")
    op = ops[0]
    raw = item[op]
    where = at + (op,)
    if op == "equals":
        value: Any = _scalar(where, f"{label}: `equals`", raw)
    elif op == "in":
        if not isinstance(raw, list) or not raw:
            raise RuleError(where, f"{label}: `in` must be a non-empty list; got {raw!r}")
        value = tuple(_scalar(where + (j,), f"{label}: `in` value", v)
                      for j, v in enumerate(raw))
    else:
        if not isinstance(raw, list) or len(raw) != 2:
            raise RuleError(where, f"{label}: `range` must be [lo, hi] (null for an open side); "
                                   f"got {raw!r}")
        for j, v in enumerate(raw):
            if v is not None and not _is_number(v):
                raise RuleError(where + (j,), f"{label}: `range` bounds must be numbers or "
                                              f"null; got {v!r}")
        lo, hi = raw
        if lo is None and hi is None:
            raise RuleError(where, f"{label}: `range` needs at least one bound; got [null, null]")
        if lo is not None and hi is not None and lo > hi:
            raise RuleError(where, f"{label}: `range` must be [lo, hi] with lo <= hi; "
                                   f"got [{lo}, {hi}]")
        value = (lo, hi)
    return FieldRule(name=name, points=points, field=col, op=op, value=value)


def _parse_decay(at: Loc, label: str, name: str, points: float, raw: Any) -> DecayRule:
    where = at + ("decay",)
    if not isinstance(raw, Mapping):
        raise RuleError(where, f"{label}: `decay` must be a mapping "
                               f"{{after_days, per_days[, max_steps]}}; got {raw!r}")
    allowed = ("after_days", "per_days", "max_steps")
    for key in raw:
        if key not in allowed:
            raise RuleError(where + (key,), f"{label}: unknown `decay` key `{key}`; "
                                            f"allowed: {', '.join(allowed)}")
    for key in ("after_days", "per_days"):
        if key not in raw:
            raise RuleError(where, f"{label}: `decay` needs `{key}`")
    after, per = raw["after_days"], raw["per_days"]
    if not _is_number(after) or after < 0:
        raise RuleError(where + ("after_days",), f"{label}: `decay.after_days` must be a "
                                                 f"number >= 0; got {after!r}")
    if not _is_number(per) or per <= 0:
        raise RuleError(where + ("per_days",), f"{label}: `decay.per_days` must be a number "
                                               f"> 0; got {per!r}")
    steps = raw.get("max_steps")
    if steps is not None:
        steps = _pos_int(where + ("max_steps",), f"{label}: `decay.max_steps`", steps)
    return DecayRule(name=name, points=points, after_days=float(after), per_days=float(per),
                     max_steps=steps)


def _parse_bands(raw: Any) -> tuple[PointBands, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise RuleError(("bands",), (
            "`bands` must map band-set names to {band: minimum points}, e.g. temperature: "
            f"{{warm: 30, hot: 70}}; got {raw!r}"))
    out = []
    for set_name, spec in raw.items():
        at: Loc = ("bands", set_name)
        if not isinstance(spec, Mapping) or not spec:
            raise RuleError(at, f"band set `{set_name}` must map band names to minimum points, "
                                f"lowest first, e.g. {{warm: 30, hot: 70}}; got {spec!r}")
        entries = list(spec.items())
        lowest = None
        if entries[0][1] is None:
            lowest = str(entries[0][0])
            entries = entries[1:]
        if not entries:
            raise RuleError(at, f"band set `{set_name}` needs at least one threshold")
        names, thresholds = [], []
        for band, value in entries:
            where = at + (band,)
            if value is None:
                raise RuleError(where, (
                    f"band `{band}` of `{set_name}` has no threshold; only the first entry may "
                    "be null (it names the band below the first threshold)"))
            if not _is_number(value):
                raise RuleError(where, f"band `{band}` of `{set_name}`: the threshold must be a "
                                       f"number of points; got {value!r}")
            if thresholds and not value > thresholds[-1]:
                raise RuleError(where, (
                    f"band `{band}` of `{set_name}` starts at {value:g} points, which is not "
                    f"above `{names[-1]}` ({thresholds[-1]:g}); list bands from lowest to "
                    "highest with strictly increasing thresholds"))
            names.append(str(band))
            thresholds.append(float(value))
        if lowest is None:
            lowest = DEFAULT_LOWEST.get(str(set_name), f"below_{names[0]}")
        if lowest in names:
            raise RuleError(at, f"band set `{set_name}` uses the name `{lowest}` twice")
        out.append(PointBands(set_name=str(set_name), names=(lowest, *names),
                              thresholds=tuple(thresholds)))
    return tuple(out)


def ruleset_to_dict(ruleset: RuleSet) -> dict[str, Any]:
    """The rules.yaml mapping of a rule set (what `parse_ruleset` reads back). Whole-number
    points and thresholds come out as ints; the lowest band is written as `name: null`."""
    rules = []
    for r in ruleset.rules:
        d: dict[str, Any] = {"name": r.name}
        if isinstance(r, EventRule):
            d["event"] = r.events[0] if len(r.events) == 1 else list(r.events)
            if r.window_days is not None:
                d["window_days"] = r.window_days
            if r.cap is not None:
                d["cap"] = r.cap
            if r.half_life_days is not None:
                d["half_life_days"] = _plain(r.half_life_days)
        elif isinstance(r, FieldRule):
            d["field"] = r.field
            d[r.op] = list(r.value) if r.op in ("in", "range") else r.value
        else:
            d["decay"] = {"after_days": _plain(r.after_days), "per_days": _plain(r.per_days)}
            if r.max_steps is not None:
                d["decay"]["max_steps"] = r.max_steps
        d["points"] = _plain(r.points)
        rules.append(d)
    out: dict[str, Any] = {"rules": rules}
    if ruleset.bands:
        out["bands"] = {
            b.set_name: {b.names[0]: None, **{n: _plain(t) for n, t in
                                               zip(b.names[1:], b.thresholds, strict=True)}}
            for b in ruleset.bands
        }
    return out


def _plain(x: float) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else round(x, 6)


# --------------------------------------------------------------------------- checks vs data


@dataclass(frozen=True)
class RuleVocabulary:
    """What the data offers rules: event types (those in the events plus those in the
    configured event groups) and fields (name -> True when numeric). None = not checked."""

    event_types: frozenset[str] | None = None
    fields: Mapping[str, bool] | None = None


def vocabulary(
    leads: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    event_groups: Mapping[str, Iterable[str]] | None = None,
) -> RuleVocabulary:
    """The vocabulary of these tables. Without `features`, the fit columns that
    `features.fit.fit_features` would derive from `leads` count as fields."""
    types: set[str] | None = None
    if events is not None or event_groups:
        types = set()
        if events is not None and "event_type" in events.columns:
            types |= {str(t) for t in events["event_type"].dropna().unique()}
        for members in (event_groups or {}).values():
            types |= {str(t) for t in members}
    fields: dict[str, bool] | None = None
    if leads is not None or features is not None:
        fields = {}
        if leads is not None:
            fields.update({str(c): _numeric(leads[c]) for c in leads.columns})
            if features is None and "lead_id" in leads.columns:
                fit = fit_features(leads.head(0), FeatureSettings())
                fields.update({str(c): _numeric(fit[c]) for c in fit.columns})
        if features is not None:
            fields.update({str(c): _numeric(features[c]) for c in features.columns})
        for name in FORBIDDEN_FIELDS | _SPINE_SKIP:
            fields.pop(name, None)
    return RuleVocabulary(event_types=None if types is None else frozenset(types),
                          fields=fields)


def _numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _close(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=3, cutoff=0.6)
    return f"; close matches: {', '.join(close)}" if close else ""


def check_ruleset(ruleset: RuleSet, vocab: RuleVocabulary) -> None:
    """Raise `RuleError` for the first rule naming an event type or field the data does not
    have, a `range` on a text field, or a value a fixed-vocabulary fit column never takes."""
    for i, r in enumerate(ruleset.rules):
        at: Loc = ("rules", i)
        if isinstance(r, EventRule) and vocab.event_types is not None:
            for j, t in enumerate(r.events):
                if t not in vocab.event_types:
                    raise RuleError(at + ("event", j), (
                        f"rule {r.name!r} names event type {t!r}, which the events never "
                        f"contain{_close(t, vocab.event_types)}"))
        if isinstance(r, FieldRule) and vocab.fields is not None:
            if r.field not in vocab.fields:
                raise RuleError(at + ("field",), (
                    f"rule {r.name!r} names field {r.field!r}, which neither the leads nor the "
                    f"fit features have{_close(r.field, vocab.fields)}"))
            numeric = vocab.fields[r.field]
            if r.op == "range" and not numeric:
                raise RuleError(at + ("range",), (
                    f"rule {r.name!r}: `range` needs a numeric field, but {r.field!r} holds "
                    "text; use `equals` or `in`"))
            if r.op in ("equals", "in") and numeric:
                values = r.value if r.op == "in" else (r.value,)
                for j, v in enumerate(values):
                    if not _is_number(v):
                        where = at + ("in", j) if r.op == "in" else at + ("equals",)
                        raise RuleError(where, (
                            f"rule {r.name!r}: field {r.field!r} is numeric, so `{r.op}` "
                            f"needs numbers; got {v!r}"))
        if isinstance(r, FieldRule) and r.field in FIXED_LEVELS and r.op in ("equals", "in"):
            levels = FIXED_LEVELS[r.field]
            values = r.value if r.op == "in" else (r.value,)
            for j, v in enumerate(values):
                if str(v).strip().casefold() not in levels:
                    where = at + ("in", j) if r.op == "in" else at + ("equals",)
                    raise RuleError(where, (
                        f"rule {r.name!r}: {r.field} is never {v!r}; its values are "
                        f"{', '.join(levels)}{_close(str(v).casefold(), levels)}"))


def applicable_rules(ruleset: RuleSet, vocab: RuleVocabulary
                     ) -> tuple[RuleSet, list[RuleError]]:
    """The rules this data can score, and a `RuleError` for each one it cannot (an event
    type or field the export lacks, a type mismatch): a rules file written for one export
    still applies in part to another."""
    kept: list[Rule] = []
    skipped: list[RuleError] = []
    for i, rule in enumerate(ruleset.rules):
        try:
            check_ruleset(RuleSet(rules=(rule,)), vocab)
        except RuleError as err:
            skipped.append(RuleError(("rules", i, *err.path[2:]), str(err)))
            continue
        kept.append(rule)
    return replace(ruleset, rules=tuple(kept)), skipped


# --------------------------------------------------------------------------- scoring


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {missing}")


def rule_features(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    features: pd.DataFrame | None,
    ruleset: RuleSet,
) -> pd.DataFrame:
    """The rules' raw inputs per spine row (same index and order as `spine`): `lead_id`,
    `as_of`, then one float column per rule (named by the rule): capped event counts, 0/1
    field matches, decay steps. Only events with timestamp < as_of are used.

    `features` supplies derived fields: a frame row-aligned with the spine (a
    `features.build.build_features` frame, same lead_id order) or one row per lead with
    `lead_id` (a `features.fit.fit_features` frame); None derives the fit columns from
    `leads`. `events` may be None (no activity data: counts are 0).
    """
    _require(spine, ("lead_id", "as_of"), "spine")
    if spine["as_of"].isna().any():
        raise InputError("spine: `as_of` must not be missing")
    _require(leads, ("lead_id",), "leads")
    lead_index = pd.Index(leads["lead_id"].astype(str))
    if not lead_index.is_unique:
        raise InputError("leads: `lead_id` must be unique")
    spine_ids = spine["lead_id"].astype(str)
    rows = lead_index.get_indexer(spine_ids)
    if (rows < 0).any():
        raise InputError(f"spine: {(rows < 0).sum()} row(s) name a lead_id missing from leads")
    n = len(spine)
    out: dict[str, np.ndarray] = {}

    event_rules = [r for r in ruleset.rules if isinstance(r, EventRule)]
    decay_rules = [r for r in ruleset.rules if isinstance(r, DecayRule)]
    behaviour = _behaviour(spine, events, event_rules, bool(decay_rules))
    slugs = behaviour.attrs.get("slugs", {}) if behaviour is not None else {}
    for r in event_rules:
        if r.half_life_days is not None:
            count = _decayed_count(spine, events, r)
        else:
            count = np.zeros(n)
            lab = _window_label(r.window_days)
            for t in r.events:
                if t in slugs:
                    count += behaviour[f"evt_{slugs[t]}_{lab}"].to_numpy(dtype=float)
        out[r.name] = np.minimum(count, r.cap) if r.cap is not None else count

    field_rules = [r for r in ruleset.rules if isinstance(r, FieldRule)]
    if field_rules:
        lookup = _field_lookup(spine, leads, features, rows, field_rules)
        for r in field_rules:
            out[r.name] = _match(r, lookup[r.field])

    if decay_rules:
        inactive = behaviour["days_since_last_activity"].to_numpy(dtype=float)
        created = spine["created_at"] if "created_at" in spine.columns else (
            leads["created_at"].take(rows) if "created_at" in leads.columns else None)
        if created is not None:
            q = as_datetime_us(spine["as_of"]).to_numpy().view(np.int64)
            c = as_datetime_us(pd.Series(np.asarray(created))).to_numpy()
            age = np.where(np.isnat(c), np.nan, (q - c.view(np.int64)) / DAY_US)
            inactive = np.where(np.isnan(inactive), age, inactive)
        for r in decay_rules:
            out[r.name] = decay_steps(inactive, r.after_days, r.per_days, r.max_steps)

    frame = pd.DataFrame({"lead_id": spine["lead_id"].to_numpy(),
                          "as_of": spine["as_of"].to_numpy()}, index=spine.index)
    values = pd.DataFrame({name: out[name] for name in ruleset.names}, index=spine.index,
                          dtype=float)
    return pd.concat([frame, values], axis=1)


def _decayed_count(spine: pd.DataFrame, events: pd.DataFrame | None,
                   rule: EventRule) -> np.ndarray:
    """Sum of 2^(-age / half-life) over the rule's events before as_of (the feature code's
    decay, so an event at as_of never counts)."""
    if events is None or not len(events):
        return np.zeros(len(spine))
    ev = events.loc[events["event_type"].isin(rule.events), ["lead_id", "timestamp",
                                                             "event_type"]]
    ev = ev.assign(event_type=ev["event_type"].astype("str"))
    settings = FeatureSettings(event_groups={"rule": rule.events})
    h = float(rule.half_life_days)  # type: ignore[arg-type]
    sums = group_decay_sums(spine[["lead_id", "as_of"]], ev, settings, [h])
    return sums[h]["decay_rule"].to_numpy(dtype=float)


def decay_steps(inactive_days: ArrayLike, after_days: float, per_days: float,
                max_steps: int | None = None) -> np.ndarray:
    """Decay steps per inactivity: 0 below `after_days`, then 1 + floor((d - after) / per),
    at most `max_steps`; NaN inactivity (unknown) gives 0."""
    d = np.asarray(inactive_days, dtype=float)
    with np.errstate(invalid="ignore"):
        steps = np.where(d >= after_days, np.floor((d - after_days) / per_days) + 1, 0.0)
    steps = np.nan_to_num(steps, nan=0.0)
    return np.minimum(steps, max_steps) if max_steps is not None else steps


def _behaviour(spine: pd.DataFrame, events: pd.DataFrame | None, rules: list[EventRule],
               need_activity: bool) -> pd.DataFrame | None:
    """Per-type window counts (and days since last activity) from the feature code, for the
    event types the rules name (every type when decay needs the activity)."""
    if not rules and not need_activity:
        return None
    windows = sorted({r.window_days for r in rules if r.window_days is not None})
    if events is not None and len(events):
        _require(events, ("lead_id", "timestamp", "event_type"), "events")
        ev = events[["lead_id", "timestamp", "event_type"]]
        if not need_activity:
            ev = ev[ev["event_type"].isin({t for r in rules for t in r.events})]
        ev = ev.assign(event_type=ev["event_type"].astype("str"))
    else:
        ev = None
    settings = FeatureSettings(windows_days=tuple(windows) or (1,))
    beh = behaviour_features(spine[["lead_id", "as_of"]], ev, settings)
    types = sorted(ev["event_type"].dropna().unique()) if ev is not None else []
    beh.attrs["slugs"] = dict(zip(types, type_slugs(types), strict=True))
    return beh


def _field_lookup(spine: pd.DataFrame, leads: pd.DataFrame, features: pd.DataFrame | None,
                  rows: np.ndarray, rules: list[FieldRule]) -> dict[str, pd.Series]:
    """Field name -> values aligned with the spine (positional)."""
    needed = list(dict.fromkeys(r.field for r in rules))
    derived: pd.DataFrame | None = None
    if features is not None:
        if "as_of" in features.columns:  # row-aligned feature frame
            if len(features) != len(spine) or not np.array_equal(
                    features["lead_id"].astype(str).to_numpy(),
                    spine["lead_id"].astype(str).to_numpy()):
                raise InputError("features: a frame with `as_of` must be row-aligned with the "
                                 "spine (same length and lead_id order)")
            derived = features.reset_index(drop=True)
        else:
            _require(features, ("lead_id",), "features")
            ix = pd.Index(features["lead_id"].astype(str))
            if not ix.is_unique:
                raise InputError("features: one row per lead expected (`lead_id` repeats); "
                                 "pass a frame with `as_of` for per-snapshot features")
            pos = ix.get_indexer(spine["lead_id"].astype(str))
            if (pos < 0).any():
                raise InputError(f"features: {(pos < 0).sum()} spine row(s) have no row")
            derived = features.take(pos).reset_index(drop=True)
    elif any(f not in leads.columns for f in needed):
        derived = fit_features(leads, FeatureSettings()).take(rows).reset_index(drop=True)
    out = {}
    for name in needed:
        if derived is not None and name in derived.columns and name not in _SPINE_SKIP:
            out[name] = derived[name]
        elif name in leads.columns:
            out[name] = leads[name].take(rows).reset_index(drop=True)
        else:
            have = set(leads.columns) | (set(derived.columns) if derived is not None else set())
            raise InputError(f"rules: field {name!r} is in neither the leads nor the features"
                             f"{_close(name, map(str, have))}")
    return out


def _match(rule: FieldRule, values: pd.Series) -> np.ndarray:
    """0/1 per value: does the field rule fire?"""
    present = values.notna().to_numpy()
    if rule.op == "range":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        lo, hi = rule.value
        ok = np.isfinite(x)
        if lo is not None:
            ok &= x >= lo
        if hi is not None:
            ok &= x <= hi
        return (ok & present).astype(float)
    wanted = rule.value if rule.op == "in" else (rule.value,)
    if _numeric(values):
        nums = [float(v) for v in wanted if _is_number(v)]
        x = values.to_numpy(dtype=float, na_value=np.nan)
        return (np.isin(x, nums) & present).astype(float)
    text = values.astype("str").str.strip().str.casefold()
    keys = {str(v).strip().casefold() for v in wanted}
    return (text.isin(keys).to_numpy(dtype=bool, na_value=False) & present).astype(float)


def score_rules(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    features: pd.DataFrame | None,
    ruleset: RuleSet,
) -> pd.DataFrame:
    """Manual points per spine row (same index and order): `lead_id`, `as_of`, one column per
    rule (its points: rule points x raw input) and `total`. See `rule_features` for inputs."""
    x = rule_features(spine, leads, events, features, ruleset)
    pts = x[ruleset.names].to_numpy(dtype=float) * ruleset.points
    out = x[["lead_id", "as_of"]].copy()
    for j, name in enumerate(ruleset.names):
        out[name] = pts[:, j]
    out["total"] = pts.sum(axis=1)
    return out


def point_bands(total: ArrayLike, bands: PointBands) -> np.ndarray:
    """Band name per rule total; a total equal to a threshold goes to the higher band."""
    t = np.asarray(total, dtype=float)
    idx = np.searchsorted(np.asarray(bands.thresholds, dtype=float), t, side="right")
    return np.asarray(bands.names, dtype=object)[idx]


# --------------------------------------------------------------------------- scaling


def spread(values: ArrayLike) -> float:
    """The spread used for scaling: 90th minus 10th percentile (linear interpolation), or
    the population standard deviation when that range is 0."""
    v = np.asarray(values, dtype=float)
    q10, q90 = np.percentile(v, [10, 90])
    width = float(q90 - q10)
    return width if width > 0 else float(v.std())


def spread_factor(manual_total: ArrayLike, learned_log_odds: ArrayLike) -> float:
    """Points per unit of log-odds so that the learned total has the manual total's spread:
    spread(manual_total) / spread(learned_log_odds), over the same snapshots."""
    m = np.asarray(manual_total, dtype=float)
    lo = np.asarray(learned_log_odds, dtype=float)
    if m.size != lo.size or m.size < 2:
        raise InputError(f"spread_factor needs two equal-length arrays of >= 2 values; got "
                         f"{m.size} and {lo.size}")
    sm, sl = spread(m), spread(lo)
    if not sm > 0:
        raise InsufficientDataError(
            "the manual total does not vary on the training snapshots, so there is no scale to "
            "match; fix the scale with `rules.pdo` instead")
    if not sl > 0:
        raise InsufficientDataError("the learned log-odds do not vary: no rule carries signal")
    return sm / sl


def pdo_of(factor: float) -> float:
    """Points to double the odds for a points-per-log-odds factor: factor * ln 2."""
    return float(factor) * math.log(2.0)


def factor_of_pdo(pdo: float) -> float:
    """Points per unit of log-odds for a points-to-double-the-odds value: pdo / ln 2."""
    if not _is_number(pdo) or pdo <= 0:
        raise SettingsError(f"`rules.pdo` must be > 0; got {pdo!r}")
    return float(pdo) / math.log(2.0)


def scale_points(coef: ArrayLike, factor: float) -> np.ndarray:
    """Learned points from log-odds coefficients: factor * coef."""
    return float(factor) * np.asarray(coef, dtype=float)


# --------------------------------------------------------------------------- learning


@dataclass(frozen=True)
class LearnSettings:
    """Knobs of the learned points (params section `rules`, see the module docstring).

    `C`: inverse L2 strength on standardised inputs. `n_bootstrap`, `seed`, `ci_level`: the
    lead bootstrap. `pdo`: fix points-to-double-the-odds instead of matching the manual
    spread. `tolerance`, `min_support`, `wide_ci_ratio`: verdict thresholds. `round_to`: the
    suggested rule set's points are multiples of this. `max_iter`: solver iterations.
    """

    C: float = 1.0
    n_bootstrap: int = 200
    seed: int = 42
    ci_level: float = 0.95
    pdo: float | None = None
    tolerance: float = 0.25
    min_support: float = 0.01
    wide_ci_ratio: float = 2.0
    round_to: float = 1.0
    max_iter: int = 1000

    def __post_init__(self) -> None:
        def bad(key: str, rule: str) -> SettingsError:
            return SettingsError(f"`rules.{key}` must be {rule}; got {getattr(self, key)!r}")

        for key in ("C", "wide_ci_ratio", "round_to"):
            if not _is_number(getattr(self, key)) or getattr(self, key) <= 0:
                raise bad(key, "> 0")
        for key in ("n_bootstrap", "seed", "max_iter"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise bad(key, "a non-negative integer" if key == "seed" else "an integer >= 1")
        if not _is_number(self.ci_level) or not 0 < self.ci_level < 1:
            raise bad("ci_level", "in (0, 1)")
        for key in ("tolerance", "min_support"):
            if not _is_number(getattr(self, key)) or not 0 <= getattr(self, key) < 1:
                raise bad(key, "in [0, 1)")
        if self.pdo is not None:
            factor_of_pdo(self.pdo)

    @classmethod
    def from_params(cls, raw: Mapping[str, Any] | None) -> LearnSettings:
        """From the raw `rules` params section (unknown keys are an error)."""
        raw = dict(raw or {})
        known = tuple(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - set(known), key=str)
        if unknown:
            raise SettingsError(f"`rules.{unknown[0]}` is not a known setting; known: "
                                f"{', '.join(known)}")
        return cls(**raw)


@dataclass(frozen=True)
class LearnedPoints:
    """Learned points per rule (arrays in rule order) and how they were obtained.

    `coef` is log-odds per unit of raw input (NaN where the rule cannot be learned),
    `points = factor * coef`, `ci_low`/`ci_high` its bootstrap interval, `support`/`lift` on
    the training snapshots, `verdict` per the module docstring.
    """

    rules: tuple[str, ...]
    manual: np.ndarray
    coef: np.ndarray
    intercept: float
    factor: float
    points: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    support: np.ndarray
    lift: np.ndarray
    verdict: tuple[str, ...]
    n_rows: int
    n_leads: int
    positives: int
    n_bootstrap: int
    scaling: str

    @property
    def pdo(self) -> float:
        """Points to double the odds on the learned scale."""
        return pdo_of(self.factor)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts about the fit (no per-rule arrays)."""
        return {"factor": self.factor, "pdo": self.pdo, "intercept": self.intercept,
                "scaling": self.scaling, "n_rows": self.n_rows, "n_leads": self.n_leads,
                "positives": self.positives, "n_bootstrap": self.n_bootstrap,
                "verdicts": {v: self.verdict.count(v) for v in VERDICTS}}


def rule_verdict(manual: float, learned: float, ci_low: float, ci_high: float,
                 support: float, settings: LearnSettings | None = None) -> str:
    """The verdict on one rule (definitions in the module docstring)."""
    s = settings or LearnSettings()
    m, lr, lo, hi = float(manual), float(learned), float(ci_low), float(ci_high)
    if not (math.isfinite(lr) and math.isfinite(lo) and math.isfinite(hi)):
        return NO_EVIDENCE
    if lo <= 0 <= hi and (support < s.min_support
                          or hi - lo > s.wide_ci_ratio * max(abs(m), 1.0)):
        return NO_EVIDENCE
    if (m > 0 and hi < 0) or (m < 0 and lo > 0):
        return WRONG_SIGN
    if lo <= m <= hi or abs(lr - m) <= s.tolerance * abs(m):
        return ABOUT_RIGHT
    if m == 0:
        return UNDERWEIGHTED
    return UNDERWEIGHTED if (lr - m) * math.copysign(1.0, m) > 0 else OVERWEIGHTED


def _binary(y: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size != n:
        raise InputError(f"`y` has {arr.size} values for {n} rows")
    if np.isnan(arr).any() or not np.isin(arr, (0.0, 1.0)).all():
        raise InputError("`y` must contain only 0 and 1")
    return arr


def learn_points(
    rule_x: pd.DataFrame,
    y: ArrayLike,
    ruleset: RuleSet,
    settings: LearnSettings | None = None,
) -> LearnedPoints:
    """Fit the points the data would give each rule, on the training split.

    `rule_x`: `rule_features` rows of the training snapshots (needs `lead_id` and a column
    per rule); `y`: their 0/1 labels. Raises `InsufficientDataError` with fewer than 2
    positives or negatives, or when no rule varies.
    """
    s = settings or LearnSettings()
    names = ruleset.names
    _require(rule_x, ["lead_id", *names], "rule_x")
    X = rule_x[names].to_numpy(dtype=float)
    if not np.isfinite(X).all():
        raise InputError("rule_x: rule inputs must be finite")
    yy = _binary(y, len(X))
    pos = int(yy.sum())
    if min(pos, len(yy) - pos) < 2:
        raise InsufficientDataError(f"learning points needs >= 2 positives and 2 negatives; "
                                    f"got {pos} of {len(yy)}")
    mu, sd = X.mean(axis=0), X.std(axis=0)
    ok = sd > 0
    if not ok.any():
        raise InsufficientDataError("no rule fires on some but not all training snapshots")
    Z = (X[:, ok] - mu[ok]) / sd[ok]
    model = LogisticRegression(C=s.C, l1_ratio=0.0, solver="newton-cholesky",
                               max_iter=s.max_iter, warm_start=True)
    model.fit(Z, yy)
    coef = np.full(len(names), np.nan)
    coef[ok] = model.coef_[0] / sd[ok]
    intercept = float(model.intercept_[0] - np.sum(model.coef_[0] * mu[ok] / sd[ok]))

    manual = ruleset.points
    if s.pdo is not None:
        factor, scaling = factor_of_pdo(s.pdo), f"fixed: {s.pdo:g} points double the odds"
    else:
        factor = spread_factor(X @ manual, X[:, ok] @ coef[ok])
        scaling = "spread: learned total spans the manual total's 10th-90th percentile range"
    points = scale_points(coef, factor)

    codes, uniques = pd.factorize(rule_x["lead_id"].astype(str))
    n_leads = len(uniques)
    rng = np.random.default_rng(s.seed)
    draws = np.full((s.n_bootstrap, len(names)), np.nan)
    for b in range(s.n_bootstrap):
        w = np.bincount(rng.integers(0, n_leads, n_leads), minlength=n_leads)[codes]
        wp = float(w @ yy)
        if wp == 0 or wp == w.sum():
            continue
        model.fit(Z, yy, sample_weight=w.astype(float))
        draws[b, ok] = scale_points(model.coef_[0] / sd[ok], factor)
    alpha = (1 - s.ci_level) / 2
    with np.errstate(all="ignore"):
        ci_low = np.where(ok, np.nanquantile(np.where(ok, draws, 0.0), alpha, axis=0), np.nan)
        ci_high = np.where(ok, np.nanquantile(np.where(ok, draws, 0.0), 1 - alpha, axis=0),
                           np.nan)

    fires = X > 0
    support = fires.mean(axis=0)
    lift = np.full(len(names), np.nan)
    for j in range(len(names)):
        f = fires[:, j]
        if f.any() and (~f).any():
            rate_off = yy[~f].mean()
            lift[j] = yy[f].mean() / rate_off if rate_off > 0 else np.nan
    verdicts = tuple(rule_verdict(m, p, lo, hi, sup, s) for m, p, lo, hi, sup
                     in zip(manual, points, ci_low, ci_high, support, strict=True))
    return LearnedPoints(
        rules=tuple(names), manual=manual, coef=coef, intercept=intercept, factor=factor,
        points=points, ci_low=ci_low, ci_high=ci_high, support=support, lift=lift,
        verdict=verdicts, n_rows=len(yy), n_leads=n_leads, positives=pos,
        n_bootstrap=s.n_bootstrap, scaling=scaling,
    )


def comparison_table(learned: LearnedPoints) -> pd.DataFrame:
    """One row per rule with exactly the columns `rule, manual_points, learned_points, ci_low,
    ci_high, support, lift, verdict` (points unrounded; NaN where not learnable)."""
    return pd.DataFrame({
        "rule": list(learned.rules),
        "manual_points": learned.manual.astype(float),
        "learned_points": learned.points.astype(float),
        "ci_low": learned.ci_low.astype(float),
        "ci_high": learned.ci_high.astype(float),
        "support": learned.support.astype(float),
        "lift": learned.lift.astype(float),
        "verdict": list(learned.verdict),
    }, columns=list(COMPARISON_COLUMNS))


# --------------------------------------------------------------------------- suggested rules


def with_half_lives(ruleset: RuleSet, half_lives: Mapping[str, float],
                    groups: Mapping[str, Sequence[str]]) -> tuple[RuleSet, list[str]]:
    """The rule set with every window-less event rule whose event types all belong to one
    group of `half_lives` (group -> learned half-life in days) made to fade at that
    half-life; (new rule set, the names of the rules changed). Points are unchanged: they
    were learned on counts that do not fade, so relearn them with the new file."""
    type_group = {t: g for g, types in groups.items() for t in types}
    rules, changed = [], []
    for r in ruleset.rules:
        gs = {type_group.get(t) for t in r.events} if isinstance(r, EventRule) else set()
        if (isinstance(r, EventRule) and r.window_days is None and r.half_life_days is None
                and len(gs) == 1 and (g := next(iter(gs))) in half_lives):
            rules.append(replace(r, half_life_days=float(round(half_lives[g], 1))))
            changed.append(r.name)
        else:
            rules.append(r)
    return RuleSet(rules=tuple(rules), bands=ruleset.bands), changed


def _round(points: np.ndarray, step: float) -> np.ndarray:
    out = np.round(points / step) * step
    return out + 0.0  # no negative zeros


def learned_ruleset(
    ruleset: RuleSet,
    learned: LearnedPoints,
    rule_x_cal: pd.DataFrame,
    y_cal: ArrayLike,
    band_sets: Mapping[str, BandSet] | None = None,
    *,
    calibration: CalibrationSettings | None = None,
    leads_per_week: float | None = None,
    settings: LearnSettings | None = None,
) -> RuleSet:
    """The suggested rule set: the same rules with the learned points (rounded to
    `settings.round_to`; rules that could not be learned keep their manual points) and
    thresholds for every band set of `ruleset` in learned points.

    A band set named in `band_sets` (the model's `bands` params) gets the thresholds that
    hit the model's targets: the learned totals of the calibration rows are calibrated
    (`models.calibration.fit_calibrator`, input_kind="score"), `models.bands.fit_bands`
    picks the probability cutoffs, and each threshold is the lowest calibration total whose
    calibrated probability reaches its cutoff. Pass the rows and `leads_per_week` the model's
    bands are fitted with. Any other band set keeps the share of calibration snapshots
    above each manual threshold.
    """
    s = settings or LearnSettings()
    if tuple(learned.rules) != tuple(ruleset.names):
        raise InputError("learned points belong to another rule set (rule names differ)")
    pts = np.where(np.isfinite(learned.points), _round(learned.points, s.round_to),
                   ruleset.points)
    new = ruleset.with_points(dict(zip(ruleset.names, pts.tolist(), strict=True)))
    _require(rule_x_cal, ruleset.names, "rule_x_cal")
    X = rule_x_cal[ruleset.names].to_numpy(dtype=float)
    y = _binary(y_cal, len(X))
    if len(X) == 0:
        raise InsufficientDataError("learned_ruleset needs calibration rows; got none")
    total = X @ pts
    manual_total = X @ ruleset.points
    bands = []
    for pb in ruleset.bands:
        if band_sets and pb.set_name in band_sets:
            bands.append(_fit_point_bands(total, y, band_sets[pb.set_name], calibration,
                                          leads_per_week, s.seed))
        else:
            bands.append(_share_matched(pb, manual_total, total, s.round_to))
    return replace(new, bands=tuple(bands))


def _fit_point_bands(total: np.ndarray, y: np.ndarray, band_set: BandSet,
                     calibration: CalibrationSettings | None, leads_per_week: float | None,
                     seed: int) -> PointBands:
    calibrator = fit_calibrator(total, y, calibration, seed=seed, input_kind="score")
    p = calibrator.predict(total)
    order = np.argsort(total, kind="stable")
    if np.any(np.diff(p[order]) < -1e-12):
        raise InsufficientDataError(
            f"band set `{band_set.name}`: calibrated probability falls as the learned total "
            "rises on the calibration split; the learned points do not rank these leads")
    fitted = fit_bands(p, y, band_set, leads_per_week=leads_per_week)
    thresholds = tuple(float(total[p >= c].min()) for c in fitted.cutoffs)
    notes = []
    for band, t in zip(fitted.bands[1:], thresholds, strict=True):
        rate = "n/a" if band.rate is None else f"{100 * band.rate:.1f}%"
        flag = "" if band.feasible else ", target not reachable"
        notes.append(f"{band.name} from {t:g} points ({band.target_kind} {band.target:g}): "
                     f"calibration leads in the band convert {rate} (n={band.n}{flag})")
    return PointBands(set_name=band_set.name, names=fitted.names, thresholds=thresholds,
                      fitted=fitted, note="; ".join(notes))


def _share_matched(pb: PointBands, manual_total: np.ndarray, total: np.ndarray,
                   step: float) -> PointBands:
    values = np.unique(total)
    share_at = 1.0 - np.searchsorted(np.sort(total), values, side="left") / len(total)
    thresholds: list[float] = []
    for t in pb.thresholds:
        want = float(np.mean(manual_total >= t))
        above = values > thresholds[-1] if thresholds else np.ones(len(values), bool)
        if above.any():
            cand = np.flatnonzero(above)
            thresholds.append(float(values[cand[np.argmin(np.abs(share_at[cand] - want))]]))
        else:
            thresholds.append((thresholds[-1] if thresholds else float(values[-1])) + step)
    return PointBands(set_name=pb.set_name, names=pb.names, thresholds=tuple(thresholds),
                      note="thresholds keep the share of calibration snapshots above each "
                           "manual threshold")
