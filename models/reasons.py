"""Reason codes: turn a lead's largest per-feature contributions into words a salesperson
understands ("viewed the pricing page 4 times in the last 30 days", "free-mail address").

Contributions come from the model itself (LightGBM `pred_contrib`, in log-odds); this module
only picks the top ones and phrases them. Feature names follow `features/` conventions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

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
    m = _WINDOW.match(feature)
    if m and feature.startswith("evt_"):
        slug, w = m["stem"][4:], m["w"]
        verb, noun = EVENT_PHRASES.get(slug, (f"had '{slug}' events", f"'{slug}' events"))
        n = 0 if missing else float(value)
        return (
            f"{verb} {_times(n)} {_window_words(w)}" if n > 0 else f"no {noun} {_window_words(w)}"
        )
    if m and feature.startswith("grp_"):
        group, w = m["stem"][4:], m["w"]
        n = 0 if missing else int(round(float(value)))
        return f"{n} {GROUP_PHRASES.get(group, group + ' actions')} {_window_words(w)}"
    if m and feature.startswith(("events_", "sessions_", "active_days_")):
        kind = {"events": "activities", "sessions": "visits", "active": "active days"}[
            feature.split("_")[0]
        ]
        n = 0 if missing else int(round(float(value)))
        return f"{n} {kind} {_window_words(m['w'])}"
    if feature.startswith("days_since_last_"):
        what = feature[len("days_since_last_") :]
        what = GROUP_PHRASES.get(what, what.replace("_", " "))
        return f"no {what} yet" if missing else f"last {what} {float(value):.0f} days ago"
    if feature == "days_since_first_activity":
        return "no activity yet" if missing else f"first active {float(value):.0f} days ago"
    if feature == "lead_age_days":
        return "" if missing else f"lead is {float(value):.0f} days old"
    if feature.startswith("decay_"):
        return "recent engagement" if not missing and float(value) > 0 else "no recent engagement"
    if feature.startswith("trend_"):
        if missing:
            return "no recent trend"
        return "activity picking up" if float(value) > 0 else "activity fading"
    if feature.startswith("email_") and feature.endswith("_rate"):
        what = feature[len("email_") : -len("_rate")].replace("_", "-")
        return "no marketing emails yet" if missing else f"email {what} rate {float(value):.0%}"
    if feature == "fit_email_domain_type":
        return DOMAIN_PHRASES.get(str(value), f"email domain: {value}")
    if feature == "fit_bant_answered":
        return "" if missing else f"answered {int(float(value))} of 3 qualifying questions"
    if feature == "fit_log_company_size":
        return (
            "company size unknown"
            if missing
            else f"company of about {math.expm1(float(value)):,.0f} employees"
        )
    if feature.endswith("_rank") and feature.startswith("fit_"):
        return ""  # the category itself is described by its own column
    if feature in FIT_LABELS:
        return f"{FIT_LABELS[feature]}: {'unknown' if missing else str(value).replace('_', ' ')}"
    name = feature.removeprefix("extra_").removeprefix("fit_").replace("_", " ")
    return f"{name}: {'unknown' if missing else value}"


def top_reasons(
    contrib: np.ndarray,
    values: pd.DataFrame,
    features: Sequence[str],
    n_for: int = 3,
    n_against: int = 2,
    min_abs: float = 0.05,
    marks: tuple[str, str] = ("+ ", "− "),
) -> list[str]:
    """Per row, the `n_for` largest positive and `n_against` most negative contributions as
    "+ reason; + reason; − reason" (contributions below `min_abs` log-odds are skipped;
    `marks` are the for/against prefixes).

    `contrib` is (rows, features) in log-odds, columns aligned with `features`.
    """
    n, k = contrib.shape
    if k != len(features):
        raise ValueError(f"contrib has {k} columns but {len(features)} feature names were given")
    pos_idx = _top_k(contrib, n_for)
    neg_idx = _top_k(-contrib, n_against)
    rows = np.arange(n)[:, None]
    pos_ok = contrib[rows, pos_idx] >= min_abs
    neg_ok = contrib[rows, neg_idx] <= -min_abs
    slots = [(pos_idx[:, k], pos_ok[:, k], marks[0]) for k in range(pos_idx.shape[1])]
    slots += [(neg_idx[:, k], neg_ok[:, k], marks[1]) for k in range(neg_idx.shape[1])]
    texts = []
    columns: dict[int, tuple[np.ndarray, list | None]] = {}
    for idx, ok, mark in slots:
        text = np.full(n, "", dtype=object)
        for j in np.unique(idx[ok]):
            rows_j = np.flatnonzero(ok & (idx == j))
            if j not in columns:
                columns[j] = _coded(values[features[j]])
            all_codes, levels = columns[j]
            codes = all_codes[rows_j]
            if levels is None:  # numeric: phrase each distinct value once
                codes, levels = pd.factorize(codes, use_na_sentinel=True)
            phrases = np.array(
                [describe(features[j], u) for u in levels] + [describe(features[j], None)],
                dtype=object,
            )
            said = phrases[codes]  # code -1 (missing) picks the last entry
            text[rows_j] = np.where(said != "", mark + said.astype(str), "")
        texts.append(text)
    return ["; ".join(t for t in parts if t) for parts in zip(*texts, strict=True)]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest scores, largest first (ties: lower index)."""
    n, m = scores.shape
    k = min(k, m)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    )
    part = np.sort(part, axis=1)  # stable tie-break by column index
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _coded(values: pd.Series) -> tuple[np.ndarray, list | None]:
    """(codes, levels) for a categorical column (code -1 = missing); (values, None) else."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), [str(c) for c in values.cat.categories]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan), None
    codes, levels = pd.factorize(values, use_na_sentinel=True)
    return codes, [str(v) for v in levels]
