"""Reason codes: turn a lead's largest per-feature contributions into words a salesperson
understands ("viewed the pricing page 4 times in the last 30 days", "free-mail address").

Contributions come from the model itself (path attribution over its trees, in log-odds; see
`models.contrib`); this module only picks the top ones and phrases them. Feature names
follow `features/` conventions.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

EVENT_PHRASES = {
    "site_visit": ("visited the site", "visits"),
    "blog_read": ("read a blog article", "blog reads"),
    "case_study_view": ("viewed a case study", "case-study views"),
    "lead_magnet_download": ("downloaded a lead magnet", "lead-magnet downloads"),
    "newsletter_signup": ("subscribed to the newsletter", "newsletter sign-ups"),
    "webinar_registration": ("registered for a webinar", "webinar registrations"),
    "webinar_attended": ("attended a webinar", "webinars attended"),
    "retargeting_click": ("came back from a retargeting ad", "retargeting clicks"),
    "pricing_view": ("viewed the pricing page", "pricing-page views"),
    "price_list_download": ("downloaded the price list", "price-list downloads"),
    "demo_request": ("requested a demo", "demo requests"),
    "quote_request": ("requested a quote", "quote requests"),
    "consultation_request": ("asked for a consultation", "consultation requests"),
    "chat_started": ("started a chat", "chats"),
    "email_sent": ("was sent a marketing email", "emails sent"),
    "email_open": ("opened a marketing email", "email opens"),
    "email_click": ("clicked a marketing email", "email clicks"),
    "unsubscribe": ("unsubscribed from emails", "unsubscribes"),
    "careers_view": ("looked at the careers page", "careers-page views"),
}
GROUP_PHRASES = {
    "research": "research actions",
    "pricing": "pricing actions",
    "ready_to_buy": "ready-to-buy actions (demo, quote, consultation, chat)",
    "email": "email interactions",
    "negative": "negative signals (unsubscribe, careers page)",
}
FIT_LABELS = {
    "fit_seniority": "seniority",
    "fit_function": "job function",
    "fit_company_size_bucket": "company size",
    "fit_industry": "industry",
    "fit_country": "country",
    "fit_region": "region",
    "fit_source": "lead source",
    "fit_budget": "stated budget",
    "fit_need": "stated need",
    "fit_timeframe": "purchase timeframe",
    "fit_email_local_kind": "email address shape",
}
DOMAIN_PHRASES = {
    "free_mail": "free-mail address",
    "corporate": "corporate email address",
    "disposable": "disposable email address",
    "invalid": "invalid email address",
    "unknown": "no email address",
}
_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<w>\d+d|all)$")


def _window_words(w: str) -> str:
    return "so far" if w == "all" else f"in the last {int(w[:-1])} days"


def _times(n: float) -> str:
    n = int(round(n))
    return "once" if n == 1 else f"{n} times"


def describe(feature: str, value: object) -> str:
    """One feature value in plain words."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return _phraser(feature).words(value, missing)


class _Phraser(NamedTuple):
    """How `describe` words a feature's values: `words(value, missing)`; and, where the
    words depend on a number only through something coarser (its sign, its rounding),
    `key(values)` of non-missing values: equal keys, equal words."""

    words: Callable[[object, bool], str]
    key: Callable[[np.ndarray], np.ndarray] | None = None


@functools.cache
def _phraser(feature: str) -> _Phraser:
    """The phraser of `feature`: the name is read once, not once per value (reasons phrase
    many values)."""
    m = _WINDOW.match(feature)
    if m and feature.startswith("evt_"):
        slug, window = m["stem"][4:], _window_words(m["w"])
        verb, noun = EVENT_PHRASES.get(slug, (f"had '{slug}' events", f"'{slug}' events"))

        def events(value: object, missing: bool) -> str:
            n = 0 if missing else float(value)
            return f"{verb} {_times(n)} {window}" if n > 0 else f"no {noun} {window}"

        return _Phraser(events, lambda x: np.where(x > 0, np.rint(x), -1.0))
    if m and feature.startswith("grp_"):
        group, window = m["stem"][4:], _window_words(m["w"])
        return _count_phraser(f"{GROUP_PHRASES.get(group, group + ' actions')} {window}")
    if m and feature.startswith(("events_", "sessions_", "active_days_")):
        kind = {"events": "activities", "sessions": "visits", "active": "active days"}[
            feature.split("_")[0]
        ]
        return _count_phraser(f"{kind} {_window_words(m['w'])}")
    if feature.startswith("days_since_last_"):
        what = feature[len("days_since_last_") :]
        what = GROUP_PHRASES.get(what, what.replace("_", " "))
        return _Phraser(
            lambda value, missing: (
                f"no {what} yet" if missing else f"last {what} {float(value):.0f} days ago"
            ),
            _whole,
        )
    if feature == "days_since_first_activity":
        return _Phraser(
            lambda value, missing: (
                "no activity yet" if missing else f"first active {float(value):.0f} days ago"
            ),
            _whole,
        )
    if feature == "lead_age_days":
        return _Phraser(
            lambda value, missing: "" if missing else f"lead is {float(value):.0f} days old",
            _whole,
        )
    if feature.startswith("decay_"):
        return _Phraser(
            lambda value, missing: (
                "recent engagement" if not missing and float(value) > 0 else "no recent engagement"
            ),
            _positive,
        )
    if feature.startswith("trend_"):

        def trend(value: object, missing: bool) -> str:
            if missing:
                return "no recent trend"
            return "activity picking up" if float(value) > 0 else "activity fading"

        return _Phraser(trend, _positive)
    journey = _journey_phraser(feature, m)
    if journey is not None:
        return journey
    if feature.startswith("email_") and feature.endswith("_rate"):
        what = feature[len("email_") : -len("_rate")].replace("_", "-")
        return _Phraser(
            lambda value, missing: (
                "no marketing emails yet" if missing else f"email {what} rate {float(value):.0%}"
            )
        )
    if feature == "fit_email_domain_type":
        return _Phraser(
            lambda value, missing: DOMAIN_PHRASES.get(str(value), f"email domain: {value}")
        )
    if feature == "fit_bant_answered":
        return _Phraser(
            lambda value, missing: (
                "" if missing else f"answered {int(float(value))} of 3 qualifying questions"
            ),
            np.trunc,
        )
    if feature == "fit_log_company_size":
        return _Phraser(
            lambda value, missing: (
                "company size unknown"
                if missing
                else f"company of about {math.expm1(float(value)):,.0f} employees"
            )
        )
    if feature.endswith("_rank") and feature.startswith("fit_"):
        # the category itself is described by its own column
        return _Phraser(lambda value, missing: "", lambda x: np.zeros_like(x))
    if feature in FIT_LABELS:
        label = FIT_LABELS[feature]
        return _Phraser(
            lambda value, missing: (
                f"{label}: {'unknown' if missing else str(value).replace('_', ' ')}"
            )
        )
    name = feature.removeprefix("extra_").removeprefix("fit_").replace("_", " ")
    return _Phraser(lambda value, missing: f"{name}: {'unknown' if missing else value}")


def _journey_phraser(feature: str, m: re.Match[str] | None) -> _Phraser | None:
    """Words for the journey features (`features.journey`), None for other features."""
    if feature == "streak_unopened_emails":
        return _Phraser(
            lambda value, missing: (
                "no unopened marketing emails" if missing or float(value) < 1
                else f"left the last {int(round(float(value)))} marketing emails unopened"
            ),
            np.rint,
        )
    if feature == "days_since_email_open":
        return _Phraser(
            lambda value, missing: (
                "never opened a marketing email" if missing
                else f"last opened a marketing email {float(value):.0f} days ago"
            ),
            _whole,
        )
    if m and feature.startswith("seq_"):
        what = m["stem"][len("seq_"):].replace("_", " ")
        return _count_phraser(f"× {what} {_window_words(m['w'])}")
    if feature.startswith("days_since_seq_"):
        what = feature[len("days_since_seq_"):].replace("_", " ")
        return _Phraser(
            lambda value, missing: (
                f"no {what} yet" if missing else f"last {what} {float(value):.0f} days ago"
            ),
            _whole,
        )
    if m and feature.startswith("landing_"):
        group = m["stem"][len("landing_"):]
        what = GROUP_PHRASES.get(group, group.replace("_", " "))
        return _count_phraser(f"visits that started with {what} {_window_words(m['w'])}")
    if feature == "bursts_all":
        return _count_phraser("bursts of activity so far")
    if feature == "bursts_current_events":
        return _count_phraser("activities since the lead last came back")
    if feature == "burst_age_days":
        return _Phraser(
            lambda value, missing: (
                "no activity yet" if missing
                else f"current burst of activity began {float(value):.0f} days ago"
            ),
            _whole,
        )
    if feature == "burst_gap_days":
        return _Phraser(
            lambda value, missing: (
                "active without a long break" if missing
                else f"came back after {float(value):.0f} days of silence"
            ),
            _whole,
        )
    return None


def _count_phraser(what: str) -> _Phraser:
    """A count rounded to a whole number (0 when missing), then `what`."""
    return _Phraser(
        lambda value, missing: f"{0 if missing else int(round(float(value)))} {what}", np.rint
    )


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
) -> list[str]:
    """Per row, the `n_for` largest positive and `n_against` most negative contributions as
    "+ reason; + reason; − reason" (contributions below `min_abs` log-odds are skipped;
    `marks` are the for/against prefixes).

    `contrib` is (rows, features) in log-odds, columns aligned with `features`; `values`
    holds those features' values by name. Columns that are zero everywhere can be left
    out (with `min_abs` > 0 they are never a reason).
    """
    n, k = contrib.shape
    if k != len(features):
        raise ValueError(f"contrib has {k} columns but {len(features)} feature names were given")
    columns = np.asfortranarray(contrib)  # each feature's column contiguous
    slots = [(idx, ok, marks[0]) for idx, ok in _top_k(columns, n_for, min_abs, 1.0)]
    slots += [(idx, ok, marks[1]) for idx, ok in _top_k(columns, n_against, min_abs, -1.0)]
    if not slots:
        return [""] * n
    # every (slot, row) that gets a reason, grouped by feature: each feature is read and
    # its distinct values phrased once
    slot_of = np.concatenate([np.full(ok.sum(), s) for s, (_, ok, _) in enumerate(slots)])
    row_of = np.concatenate([np.flatnonzero(ok) for _, ok, _ in slots])
    feature_of = np.concatenate([idx[ok] for idx, ok, _ in slots])
    if not feature_of.size:  # a weak model: no contribution clears `min_abs` in any row
        return [""] * n
    order = np.argsort(feature_of, kind="stable")
    slot_of, row_of, feature_of = slot_of[order], row_of[order], feature_of[order]
    starts = np.flatnonzero(np.diff(feature_of, prepend=-1))
    texts = [np.full(n, "", dtype=object) for _ in slots]
    for lo, hi in zip(starts, [*starts[1:], len(feature_of)], strict=True):
        name = features[feature_of[lo]]
        rows, in_slot = row_of[lo:hi], slot_of[lo:hi]
        all_codes, levels = _coded(values[name])
        codes = all_codes[rows]
        phrase = _phraser(name)  # `describe`; the levels are never missing
        if levels is None:  # numeric: phrase each distinct value (or key) once
            codes, levels = _distinct(codes)
            if phrase.key is not None:
                group, first = _first_of_each(phrase.key(levels))
                codes, levels = np.append(group, -1)[codes], levels[first]
        words = [phrase.words(u, False) for u in levels] + [phrase.words(None, True)]
        phrases = np.array(words, dtype=object)
        said: dict[str, np.ndarray] = {}  # mark -> marked phrases ("" stays "")
        for s in np.unique(in_slot):
            mark = slots[s][2]
            if mark not in said:
                said[mark] = np.where(phrases == "", "", mark + phrases)
            pick = in_slot == s
            texts[s][rows[pick]] = said[mark][codes[pick]]  # code -1 (missing): last entry
    return ["; ".join(filter(None, parts)) for parts in zip(*texts, strict=True)]


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
