"""Reason codes: turn a lead's largest per-feature contributions into words a salesperson
understands ("viewed the pricing page 4 times in the last 30 days", "free-mail address").

Contributions come from the model itself (path attribution over its trees, in log-odds; see
`models.contrib`); this module only picks the top ones and phrases them. Feature names
follow `features/` conventions; the words come from a phrase file marketing can edit
(`models/resources/phrases.yaml`, or a copy given by path: `load_phrases`), one entry per
feature family with singular and plural forms ("1 day ago", "3 days ago").

Rules every phrase follows, whatever the file says:

- a reason *for* never rests on a missing or unknown value (no "industry: unknown" for);
  as a reason *against* such a value reads "no industry given";
- a reason *against* that rests on an old event says how old it is: "asked for a demo 20
  days ago; interest has faded since"; a count of events against is given with the age of
  the last one when the model also has that age (`days_since_last_<group>`), else left out.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

PHRASES_FILE = Path(__file__).parent / "resources" / "phrases.yaml"
#: Top-level keys every phrase file must have.
PHRASE_KEYS = ("plural", "window", "stale", "count_with_age", "missing", "events", "groups",
               "counts", "templates", "journey", "fit_labels", "email_domains", "unknown_values")
_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<w>\d+d|all)$")
_FIELD = re.compile(r"{(\w+)}")


class PhraseError(ValueError):
    """A phrase file that cannot be used (names the file and the entry)."""


@dataclass(frozen=True, eq=False)
class Phrases:
    """A parsed phrase file (see `models/resources/phrases.yaml`); hashed by identity."""

    data: Mapping[str, Any]
    source: str = "phrases.yaml"

    def entry(self, *keys: str, default: Any = None) -> Any:
        node: Any = self.data
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                return default
            node = node[key]
        return node

    def text(self, *keys: str) -> Any:
        """A required entry (a string or one/other forms); PhraseError when absent."""
        value = self.entry(*keys)
        if value is None:
            raise PhraseError(f"{self.source}: the entry `{'.'.join(keys)}` is missing; copy it "
                              f"from {PHRASES_FILE}")
        return value

    @functools.cached_property
    def unknown(self) -> frozenset[str]:
        return frozenset(str(v).strip().lower() for v in self.entry("unknown_values",
                                                                    default=()) or ())


def parse_phrases(raw: Any, source: str = "phrases.yaml") -> Phrases:
    """Check a phrase mapping (as read from YAML): every top-level key present, every
    one/other entry with both forms. PhraseError names the file and the entry."""
    if not isinstance(raw, Mapping):
        raise PhraseError(f"{source}: a phrase file is a mapping of families (see {PHRASES_FILE})")
    missing = [k for k in PHRASE_KEYS if k not in raw]
    if missing:
        raise PhraseError(f"{source}: missing section(s) {', '.join(missing)}; copy them from "
                          f"{PHRASES_FILE}")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            if ("one" in node) != ("other" in node):
                raise PhraseError(f"{source}: `{path}` needs both `one:` and `other:` forms")
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif node is not None and not isinstance(node, str | list | int | float):
            raise PhraseError(f"{source}: `{path}` must be text; got {node!r}")

    walk(raw, "")
    return Phrases(raw, source)


@functools.cache
def _load(path: str, mtime_ns: int) -> Phrases:  # noqa: ARG001 - the key sees edits
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise PhraseError(f"{path}: the phrase file cannot be read ({err})") from None
    return parse_phrases(raw, path)


def load_phrases(path: Path | str | None = None) -> Phrases:
    """The phrase file at `path` (default: the shipped `models/resources/phrases.yaml`);
    read again when the file changed."""
    path = Path(path) if path is not None else PHRASES_FILE
    if not path.is_file():
        raise PhraseError(f"{path}: phrase file not found (`score.phrases`); copy "
                          f"{PHRASES_FILE} and edit the copy")
    return _load(str(path), path.stat().st_mtime_ns)


def _fill(template: str, **fields: Any) -> str:
    """`template` with its {fields} filled (a field not given stays as written)."""
    return _FIELD.sub(lambda m: str(fields[m[1]]) if m[1] in fields else m[0], template)


def _form(entry: Any, n: int, **fields: Any) -> str:
    """The one/other form of `entry` for the count `n` (a plain string: itself), filled."""
    if isinstance(entry, Mapping):
        entry = entry["one"] if abs(n) == 1 else entry["other"]
    return _fill(str(entry), n=n, **fields)


class _Words:
    """The phrase file's families as small functions."""

    def __init__(self, phrases: Phrases) -> None:
        self.p = phrases

    def times(self, n: int) -> str:
        return _form(self.p.text("plural", "times"), n)

    def days(self, value: float) -> str:
        shown = f"{value:.0f}"  # "-0" stays "-0": equal keys, equal words (`_whole`)
        return _fill(str(self.p.text("plural", "days")["one" if shown in ("1", "-1")
                                                         else "other"]), n=shown)

    def window(self, w: str) -> str:
        if w == "all":
            return str(self.p.text("window", "all"))
        return _form(self.p.text("window", "days"), int(w[:-1]))

    def event(self, slug: str) -> tuple[str, Any]:
        entry = self.p.entry("events", slug) or self.p.text("events", "default")
        return _fill(entry["done"], slug=slug), _fill_forms(entry["noun"], slug=slug)

    def group(self, group: str) -> tuple[str, Any]:
        """(done, noun forms) of an intent group; an event type's words when `group` is
        one (`days_since_last_demo_request`), else the `default` entry."""
        entry = self.p.entry("groups", group)
        if entry is None and self.p.entry("events", group) is not None:
            done, noun = self.event(group)
            return done, noun
        entry = entry or self.p.text("groups", "default")
        name = group.replace("_", " ")
        return _fill(entry["done"], group=name), _fill_forms(entry["noun"], group=name)

    def group_entry(self, group: str, key: str) -> str:
        """Another word of a group (`never`, `page`); "" when it has none."""
        entry = self.p.entry("groups", group) or self.p.entry("groups", "default") or {}
        return _fill(str(entry.get(key, "")), group=group.replace("_", " "))

    def template(self, key: str) -> Any:
        return self.p.text("templates", key)

    def stale(self, text: str) -> str:
        return f"{text}{self.p.text('stale')}" if text else text

    def missing(self, label: str) -> str:
        return _fill(str(self.p.text("missing")), label=label)


def _fill_forms(entry: Any, **fields: Any) -> Any:
    if isinstance(entry, Mapping):
        return {k: _fill(str(v), **fields) for k, v in entry.items()}
    return _fill(str(entry), **fields)


def _plural(entry: Any) -> str:
    return str(entry["other"]) if isinstance(entry, Mapping) else str(entry)


def describe(feature: str, value: object, against: bool = False,
             phrases: Phrases | None = None) -> str:
    """One feature value in plain words; `against`: worded as a reason against (a missing
    value names what is missing, an old event says its age and that interest faded).
    As a reason for, a missing or unknown value gives "" (never a reason)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    phrase = _phraser(feature, phrases or load_phrases())
    if missing:
        return phrase.against(None, True) if against else ""
    if not against and phrase.unknown is not None and phrase.unknown(value):
        return ""
    return (phrase.against if against else phrase.words)(value, False)


class _Phraser(NamedTuple):
    """How `describe` words a feature's values: `words(value, missing)` as a reason for and
    `against(value, missing)` as one against; where the words depend on a number only
    through something coarser (its sign, its rounding), `key(values)` of non-missing values:
    equal keys, equal words. `unknown(value)`: the value means "not known" (never a reason
    for). `age`: the feature holding the age of the last event a count > 0 counts
    (`happened(values)`), needed to give such a count as a reason against."""

    words: Callable[[object, bool], str]
    key: Callable[[np.ndarray], np.ndarray] | None = None
    against_words: Callable[[object, bool], str] | None = None
    unknown: Callable[[object], bool] | None = None
    age: str | None = None
    happened: Callable[[np.ndarray], np.ndarray] | None = None

    def against(self, value: object, missing: bool) -> str:
        return (self.against_words or self.words)(value, missing)


def _with(phraser: _Phraser, **changes: Any) -> _Phraser:
    return phraser._replace(**changes)


@functools.cache
def _phraser(feature: str, phrases: Phrases) -> _Phraser:
    """The phraser of `feature` with `phrases`: the name is read once, not once per value
    (reasons phrase many values)."""
    w = _Words(phrases)
    t = w.template
    m = _WINDOW.match(feature)
    if m and feature.startswith("evt_"):
        slug, window = m["stem"][4:], w.window(m["w"])
        done, noun = w.event(slug)

        def events(value: object, missing: bool) -> str:
            n = 0 if missing else int(round(float(value)))
            if n > 0:
                return _fill(t("event_done"), done=done, times=w.times(n), window=window)
            return _fill(t("event_none"), noun=_plural(noun), window=window)

        return _Phraser(events, lambda x: np.where(x > 0, np.rint(x), -1.0),
                        happened=_happened)
    if m and feature.startswith("grp_"):
        group, window = m["stem"][4:], w.window(m["w"])
        _, noun = w.group(group)

        def groups(value: object, missing: bool) -> str:
            n = 0 if missing else int(round(float(value)))
            if n == 0:
                return _fill(t("group_none"), noun=_plural(noun), window=window)
            return _fill(t("group_count"), n=n, noun=_form(noun, n), window=window)

        return _Phraser(groups, np.rint, age=f"days_since_last_{group}", happened=_happened)
    if m and feature.startswith(("events_", "sessions_", "active_days_")):
        kind = "active_days" if feature.startswith("active_days_") else feature.split("_")[0]
        return _count_phraser(phrases.text("counts", kind), window=w.window(m["w"]))
    if feature.startswith("days_since_last_"):
        group = feature[len("days_since_last_"):]
        done, noun = w.group(group)
        never = w.group_entry(group, "never") or _fill("no {noun} yet", noun=_plural(noun))

        def last(value: object, missing: bool) -> str:
            if missing:
                return _fill(t("last_none"), noun=_plural(noun), never=never)
            return _fill(t("last_done"), done=done, days=w.days(float(value)))

        return _Phraser(last, _whole, lambda value, missing: (
            last(value, missing) if missing else w.stale(last(value, missing))))
    if feature == "days_since_first_activity":
        return _Phraser(lambda value, missing: (
            t("no_activity") if missing
            else _fill(t("first_active"), days=w.days(float(value)))), _whole)
    if feature == "lead_age_days":
        return _Phraser(lambda value, missing: (
            "" if missing else _fill(t("lead_age"), days=w.days(float(value)))), _whole)
    if feature.startswith("decay_"):
        return _Phraser(lambda value, missing: (
            t("decay_recent") if not missing and float(value) > 0 else t("decay_none")),
            _positive)
    if feature.startswith("trend_"):

        def trend(value: object, missing: bool) -> str:
            if missing:
                return t("trend_none")
            return t("trend_up") if float(value) > 0 else t("trend_down")

        return _Phraser(trend, _positive)
    journey = _journey_phraser(feature, m, phrases)
    if journey is not None:
        return journey
    if feature.startswith("email_") and feature.endswith("_rate"):
        what = feature[len("email_"):-len("_rate")].replace("_", "-")
        return _Phraser(lambda value, missing: (
            t("email_rate_none") if missing
            else _fill(t("email_rate"), what=what, rate=f"{float(value):.0%}")))
    labels = phrases.entry("fit_labels", default={}) or {}
    unknown = _unknown_test(phrases)
    if feature == "fit_email_domain_type":
        domains = phrases.text("email_domains")

        def domain(value: object, missing: bool) -> str:
            key = "unknown" if missing else str(value)
            return _fill(str(domains.get(key) or domains.get("default") or "{value}"),
                         value=key)

        return _Phraser(domain, unknown=unknown)
    if feature == "fit_bant_answered":
        label = labels.get(feature, "qualifying questions")
        return _Phraser(lambda value, missing: (
            w.missing(label) if missing
            else _form(t("bant"), int(float(value)))), np.trunc)
    if feature == "fit_log_company_size":
        label = labels.get(feature, "company size")
        return _Phraser(lambda value, missing: (
            w.missing(label) if missing
            else _fill(t("company_size"), size=f"{math.expm1(float(value)):,.0f}")))
    if feature.endswith("_rank") and feature.startswith("fit_"):
        # the category itself is described by its own column
        return _Phraser(lambda value, missing: "", lambda x: np.zeros_like(x))
    if feature in labels:
        label = str(labels[feature])
        return _Phraser(lambda value, missing: (
            w.missing(label) if missing or unknown(value)
            else _fill(t("category"), label=label, value=str(value).replace("_", " "))),
            unknown=unknown)
    label = feature.removeprefix("extra_").removeprefix("fit_").replace("_", " ")
    return _Phraser(lambda value, missing: (
        w.missing(label) if missing or unknown(value)
        else _fill(t("generic"), label=label, value=value)), unknown=unknown)


def _unknown_test(phrases: Phrases) -> Callable[[object], bool]:
    words = phrases.unknown
    return lambda value: str(value).strip().lower() in words


def _happened(x: np.ndarray) -> np.ndarray:
    """Count levels that stand for at least one event (as the words round them)."""
    return np.rint(x) > 0


def _journey_phraser(feature: str, m: re.Match[str] | None,
                     phrases: Phrases | None = None) -> _Phraser | None:
    """Words for the journey features (`features.journey`), None for other features."""
    phrases = phrases or load_phrases()
    w = _Words(phrases)

    def j(key: str) -> Any:
        return phrases.text("journey", key)

    def sequence_name(name: str) -> str:
        return str(phrases.entry("journey", "sequences", name) or name.replace("_", " "))

    if feature == "streak_unopened_emails":
        return _Phraser(lambda value, missing: (
            j("unopened_none") if missing or float(value) < 1
            else _form(j("unopened"), int(round(float(value))))), np.rint)
    if feature == "days_since_email_open":

        def opened(value: object, missing: bool) -> str:
            return j("email_open_never") if missing else _fill(j("email_open_ago"),
                                                               days=w.days(float(value)))

        return _Phraser(opened, _whole, lambda value, missing: (
            opened(value, missing) if missing else w.stale(opened(value, missing))))
    if m and feature.startswith("seq_"):
        name = m["stem"][len("seq_"):]
        what, window = sequence_name(name), w.window(m["w"])
        return _Phraser(lambda value, missing: _form(
            j("sequence"), 0 if missing else int(round(float(value))), what=what,
            window=window), np.rint, age=f"days_since_seq_{name}", happened=_happened)
    if feature.startswith("days_since_seq_"):
        what = sequence_name(feature[len("days_since_seq_"):])

        def seq_ago(value: object, missing: bool) -> str:
            return _fill(j("sequence_none"), what=what) if missing else _fill(
                j("sequence_ago"), what=what, days=w.days(float(value)))

        return _Phraser(seq_ago, _whole, lambda value, missing: (
            seq_ago(value, missing) if missing else w.stale(seq_ago(value, missing))))
    if m and feature.startswith("landing_"):
        group = m["stem"][len("landing_"):]
        what, window = w.group_entry(group, "page") or group.replace("_", " "), w.window(m["w"])
        return _Phraser(lambda value, missing: _form(
            j("landing"), 0 if missing else int(round(float(value))), what=what,
            window=window), np.rint)
    if feature == "bursts_all":
        return _count_phraser(j("bursts"))
    if feature == "bursts_current_events":
        return _count_phraser(j("burst_events"))
    if feature == "burst_age_days":
        return _Phraser(lambda value, missing: (
            phrases.text("templates", "no_activity") if missing
            else _fill(j("burst_age"), days=w.days(float(value)))), _whole)
    if feature == "burst_gap_days":
        return _Phraser(lambda value, missing: (
            j("burst_gap_none") if missing
            else _fill(j("burst_gap"), days=w.days(float(value)))), _whole)
    return None


def _count_phraser(entry: Any, **fields: Any) -> _Phraser:
    """A count rounded to a whole number (0 when missing), worded by the one/other `entry`."""
    return _Phraser(lambda value, missing: _form(
        entry, 0 if missing else int(round(float(value))), **fields), np.rint)


def _whole(x: np.ndarray) -> np.ndarray:
    """The key of f"{x:.0f}": x rounded half to even, and -0 apart from 0 (it prints "-0")."""
    r = np.rint(x)
    return np.where(r == 0, np.copysign(0.5, r), r)


def _positive(x: np.ndarray) -> np.ndarray:
    """The key of words that only tell whether x > 0."""
    return (x > 0).astype(np.float64)


def top_reasons(
    contrib: np.ndarray,
    values: pd.DataFrame | Mapping[str, pd.Series],
    features: Sequence[str],
    n_for: int = 3,
    n_against: int = 2,
    min_abs: float = 0.05,
    marks: tuple[str, str] = ("+ ", "− "),
    phrases: Phrases | None = None,
) -> list[str]:
    """Per row, the `n_for` largest positive and `n_against` most negative contributions as
    "+ reason; + reason; − reason" (contributions below `min_abs` log-odds are skipped;
    `marks` are the for/against prefixes; `phrases`: the phrase file, default the shipped
    one). A reason for that rests on a missing or unknown value, and a count against whose
    last event's age is not in `values`, are left out (see the module doc).

    `contrib` is (rows, features) in log-odds, columns aligned with `features`; `values`
    holds those features' values by name (and may hold more, e.g. the ages of events).
    Columns that are zero everywhere can be left out (with `min_abs` > 0 they are never a
    reason).
    """
    phrases = phrases or load_phrases()
    n, k = contrib.shape
    if k != len(features):
        raise ValueError(f"contrib has {k} columns but {len(features)} feature names were given")
    columns = np.asfortranarray(contrib)  # each feature's column contiguous
    slots = [(idx, ok, marks[0], True) for idx, ok in _top_k(columns, n_for, min_abs, 1.0)]
    slots += [(idx, ok, marks[1], False) for idx, ok in _top_k(columns, n_against, min_abs, -1.0)]
    if not slots:
        return [""] * n
    # every (slot, row) that gets a reason, grouped by feature: each feature is read and
    # its distinct values phrased once
    slot_of = np.concatenate([np.full(ok.sum(), s) for s, (_, ok, _, _) in enumerate(slots)])
    row_of = np.concatenate([np.flatnonzero(ok) for _, ok, _, _ in slots])
    feature_of = np.concatenate([idx[ok] for idx, ok, _, _ in slots])
    if not feature_of.size:  # a weak model: no contribution clears `min_abs` in any row
        return [""] * n
    order = np.argsort(feature_of, kind="stable")
    slot_of, row_of, feature_of = slot_of[order], row_of[order], feature_of[order]
    starts = np.flatnonzero(np.diff(feature_of, prepend=-1))
    texts = [np.full(n, "", dtype=object) for _ in slots]
    words = _Words(phrases)
    for lo, hi in zip(starts, [*starts[1:], len(feature_of)], strict=True):
        name = features[feature_of[lo]]
        rows, in_slot = row_of[lo:hi], slot_of[lo:hi]
        all_codes, levels = _coded(values[name])
        codes = all_codes[rows]
        phrase = _phraser(name, phrases)  # `describe`; the levels are never missing
        numeric = levels is None
        if numeric:  # numeric: phrase each distinct value (or key) once
            codes, levels = _distinct(codes)
            if phrase.key is not None:
                group, first = _first_of_each(phrase.key(levels))
                codes, levels = np.append(group, -1)[codes], levels[first]
        unknown = phrase.unknown or (lambda value: False)
        # code -1 (missing) picks the last entry: never a reason for
        pro = [("" if unknown(u) else phrase.words(u, False)) for u in levels] + [""]
        con = [phrase.against(u, False) for u in levels] + [phrase.against(None, True)]
        said: dict[bool, np.ndarray] = {}  # for? -> marked phrases ("" stays "")
        for s in np.unique(in_slot):
            _, _, mark, is_for = slots[s]
            if is_for not in said:
                phrases_ = np.array(pro if is_for else con, dtype=object)
                said[is_for] = np.where(phrases_ == "", "", mark + phrases_)
            pick = in_slot == s
            texts[s][rows[pick]] = said[is_for][codes[pick]]
            if not is_for and phrase.age is not None and numeric:
                _age_counts(texts[s], rows[pick], codes[pick], levels, phrase, values, words,
                            mark)
    return ["; ".join(filter(None, parts)) for parts in zip(*texts, strict=True)]


def _age_counts(text: np.ndarray, rows: np.ndarray, codes: np.ndarray, levels: np.ndarray,
                phrase: _Phraser, values: pd.DataFrame | Mapping[str, pd.Series],
                words: _Words, mark: str) -> None:
    """A count of events as a reason against: with the age of the last one ("3 requests for
    a demo, quote or consultation in the last 90 days, the last 40 days ago; interest has
    faded since"), or left out when the age is unknown."""
    assert phrase.happened is not None and phrase.age is not None
    happened = np.append(phrase.happened(levels), False)[codes]
    if not happened.any():
        return
    at = rows[happened]
    if phrase.age not in values:
        text[at] = ""
        return
    age = pd.to_numeric(pd.Series(values[phrase.age]), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan)[at]
    template = str(words.p.text("count_with_age"))
    for i, r in enumerate(at):
        if math.isnan(age[i]):
            text[r] = ""
            continue
        count = str(text[r])[len(mark):]
        text[r] = mark + words.stale(_fill(template, count=count, days=words.days(age[i])))


def _top_k(
    columns: np.ndarray, k: int, floor: float, sign: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ranks 1..k of each row's largest `sign` * column values that are >= `floor`: per rank
    (column index, whether a value qualified). Ties go to the lower column index.

    Column by column, only the rows whose k-th best the value beats are updated (few: most
    contributions are below `floor`)."""
    n, m = columns.shape
    best = [np.full(n, np.nextafter(floor, -np.inf)) for _ in range(min(k, m))]
    index = [np.zeros(n, dtype=np.min_scalar_type(m)) for _ in best]
    for j in range(m if best else 0):
        x = columns[:, j] if sign > 0 else np.negative(columns[:, j])
        rows = np.flatnonzero(x > best[-1])  # strict: an equal, earlier column keeps its rank
        if not rows.size:
            continue
        value = x[rows]
        b = [r[rows] for r in best]
        i = [r[rows] for r in index]
        beats = [value > r for r in b]
        for r in range(len(b) - 1, 0, -1):  # shift down the ranks the value beats, insert it
            b[r] = np.where(beats[r - 1], b[r - 1], np.where(beats[r], value, b[r]))
            i[r] = np.where(beats[r - 1], i[r - 1], np.where(beats[r], j, i[r]))
        b[0] = np.where(beats[0], value, b[0])
        i[0] = np.where(beats[0], j, i[0])
        for r, (new_b, new_i) in enumerate(zip(b, i, strict=True)):
            best[r][rows] = new_b
            index[r][rows] = new_i
    return [(i.astype(np.intp), b >= floor) for i, b in zip(index, best, strict=True)]


def _distinct(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of float values (-1: NaN) and the distinct values; -0.0 apart from 0.0, as
    `describe` words them apart ("-0 days ago")."""
    present = ~np.isnan(x)
    codes = np.full(len(x), -1, dtype=np.intp)
    codes[present], bits = pd.factorize(x[present].view(np.int64))
    return codes, bits.view(np.float64)


def _first_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each key's group (0, 1, ... in order of appearance) and each group's first index."""
    group, _ = pd.factorize(keys)
    return group, np.unique(group, return_index=True)[1]


def _coded(values: pd.Series) -> tuple[np.ndarray, list | None]:
    """(codes, levels) for a categorical column (code -1 = missing); (values, None) else."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), [str(c) for c in values.cat.categories]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan), None
    codes, levels = pd.factorize(values, use_na_sentinel=True)
    return codes, [str(v) for v in levels]
