"""Why did a lead's score change between two batches of the same source?

For every lead in both batches, with the old and the new bundle and the lead's features as of
each batch's `as_of`:

    change = score(new model, new features) - score(old model, old features)
           = [score(new model, old features) - score(old model, old features)]    model part
           + [score(new model, new features) - score(new model, old features)]    data part

The data part is split over feature families (the report groups of
`features.build.feature_groups`: an event group's counts, recency and decay; one fit
attribute; the journey patterns; overall activity) by exact Shapley values over the
families whose features moved for that lead, in the new model's log-odds (the mean over
fixed random orders when more than `max_exact` families moved). A family whose features did
not move gets 0, whatever the trees' interactions; the shares are mapped to score points by
the secant of the monotone calibration, so the families add up to the data part exactly and
keep their signs. Model part + family parts = the score change, to float rounding.

The words name the top one or two causes: "-18: pricing actions in the last 30 days 1 → 0",
"+9: demo requests in the last 7 days 0 → 1", "-4: model retrained (3 → 4)".
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.build import feature_groups

__all__ = ["attribute_changes", "describe_feature"]

_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<w>\d+d|all)$")
_ACTIVITY = ("events", "sessions", "active_days")


class _Bundle(Protocol):
    features: list[str]

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame: ...

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame: ...

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray: ...


def _window_words(w: str) -> str:
    return "ever" if w == "all" else f"in the last {w[:-1]} days"


def describe_feature(name: str, old: Any, new: Any) -> str:
    """Plain words for one feature's move: "pricing actions in the last 30 days 1 → 0"."""
    def show(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "none"
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        if isinstance(v, float | np.floating):
            return f"{v:.3g}"
        return str(v)

    m = _WINDOW.match(name)
    if name.startswith("days_since_last_"):
        label = f"days since the last {name[len('days_since_last_'):].replace('_', ' ')} action"
    elif m and name.startswith(("grp_", "evt_")):
        label = f"{m['stem'][4:].replace('_', ' ')} actions {_window_words(m['w'])}"
    elif m and m["stem"] in _ACTIVITY:
        label = f"{m['stem'].replace('_', ' ')} {_window_words(m['w'])}"
    elif name.startswith("fit_"):
        label = re.sub(r"_rank$", "", name[4:]).replace("_", " ")
    else:
        label = name.replace("_", " ")
    return f"{label} {show(old)} → {show(new)}"


def _points(x: float) -> str:
    return f"{x:+.0f}"


def _changed(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Rows where a feature's value moved (missing == missing)."""
    a, b = old.astype(object).to_numpy(), new.astype(object).to_numpy()
    miss_a, miss_b = pd.isna(a), pd.isna(b)
    same = (miss_a & miss_b) | (~miss_a & ~miss_b & (a == b))
    return ~same


def _log_odds(bundle: _Bundle, frame: pd.DataFrame) -> np.ndarray:
    p = np.clip(bundle.raw_proba(frame), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def _family_shapley(bundle: _Bundle, old: pd.DataFrame, new: pd.DataFrame,
                    members: list[list[str]], moved: np.ndarray, max_exact: int,
                    n_orders: int) -> np.ndarray:
    """(leads, families) Shapley values of the move from old to new features in the model's
    log-odds, over the families that moved for each lead (the others get 0 exactly).
    Exact up to `max_exact` moved families, else the mean over `n_orders` fixed random
    orders (still adding up exactly)."""
    phi = np.zeros(moved.shape, dtype=np.float64)
    keys = [tuple(np.flatnonzero(row)) for row in moved]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            groups.setdefault(key, []).append(i)
    rng = np.random.default_rng(0)
    for key, rows in groups.items():
        o, n = old.iloc[rows], new.iloc[rows]
        m = len(key)

        def value(subset: frozenset[int], o=o, n=n, key=key) -> np.ndarray:
            cols = [c for j in subset for c in members[key[j]]]
            frame = o.copy()
            if cols:
                frame[cols] = n[cols].to_numpy() if len(cols) > 1 else n[cols]
            return _log_odds(bundle, frame)

        cache: dict[frozenset[int], np.ndarray] = {}

        def v(subset: frozenset[int], value=value, cache=cache) -> np.ndarray:
            if subset not in cache:
                cache[subset] = value(subset)
            return cache[subset]

        if m <= max_exact:
            weights = [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                       for s in range(m)]
            for j in range(m):
                others = [k for k in range(m) if k != j]
                for size in range(m):
                    for subset in itertools.combinations(others, size):
                        base = frozenset(subset)
                        phi[rows, key[j]] += weights[size] * (v(base | {j}) - v(base))
        else:
            for _ in range(n_orders):
                seen: frozenset[int] = frozenset()
                for j in rng.permutation(m):
                    step = seen | {int(j)}
                    phi[rows, key[int(j)]] += (v(step) - v(seen)) / n_orders
                    seen = step
    return phi


def attribute_changes(
    old_bundle: _Bundle,
    new_bundle: _Bundle,
    old_features: pd.DataFrame,
    new_features: pd.DataFrame,
    *,
    model_words: str = "model retrained",
    families: Mapping[str, str] | None = None,
    describe: Callable[[str, Any, Any], str] = describe_feature,
    n_causes: int = 2,
    same_model: bool | None = None,
    max_exact: int = 6,
    n_orders: int = 16,
) -> pd.DataFrame:
    """Per lead (the index shared by both feature frames): `score_change`, `model_part`,
    one `data_part[<family>]` column per family that moved, and `change_reasons`.
    Families are the report groups of `features.build.feature_groups` (`families`, e.g.
    the bundle's `groups`, overrides them feature by feature).

    `same_model` (default: the two bundles are the same object) skips the model part.
    Raises ValueError when the two frames do not hold the same leads.
    """
    if not old_features.index.equals(new_features.index):
        raise ValueError("old and new features must hold the same leads in the same order")
    same = (old_bundle is new_bundle) if same_model is None else same_model
    features = list(new_bundle.features)
    s_old = old_bundle.predict_frame(old_features)["score"].to_numpy(np.float64)
    s_mid = s_old if same else new_bundle.predict_frame(old_features)["score"].to_numpy(
        np.float64)
    s_new = new_bundle.predict_frame(new_features)["score"].to_numpy(np.float64)
    groups = feature_groups(features) if families is None else {
        **feature_groups(features), **families}
    fam_of = [groups[c] for c in features]
    uniq = list(dict.fromkeys(fam_of))
    members = [[c for c, f in zip(features, fam_of, strict=True) if f == u] for u in uniq]
    col_moved = {c: _changed(old_features[c], new_features[c]) for c in features}
    moved = np.stack([np.any([col_moved[c] for c in cols], axis=0) for cols in members],
                     axis=1) if uniq else np.zeros((len(new_features), 0), bool)
    phi = _family_shapley(new_bundle, old_features, new_features, members, moved,
                          max_exact, n_orders)
    raw_move = phi.sum(axis=1)
    data_part = s_new - s_mid
    slope = np.divide(data_part, raw_move, out=np.zeros_like(data_part),
                      where=np.abs(raw_move) > 1e-12)
    parts = phi * slope[:, None]
    # a score move with no log-odds move (cannot happen with these bundles) stays visible
    stray = np.where(np.abs(raw_move) > 1e-12, 0.0, data_part)
    out = pd.DataFrame({"score_change": s_new - s_old, "model_part": s_mid - s_old},
                       index=new_features.index)
    shown = np.abs(parts).max(axis=0) > 1e-9 if len(parts) else np.zeros(len(uniq), bool)
    for j in np.flatnonzero(shown):
        out[f"data_part[{uniq[j]}]"] = parts[:, j]
    if np.abs(stray).max(initial=0.0) > 0:
        out["data_part[other]"] = stray
    delta = (new_bundle.contributions(new_features)[features]
             - new_bundle.contributions(old_features)[features])
    out["change_reasons"] = _reasons(out, parts, uniq, members, delta, col_moved,
                                     old_features, new_features, model_words, describe,
                                     n_causes)
    return out


def _reasons(out: pd.DataFrame, parts: np.ndarray, uniq: list[str],
             members: list[list[str]], delta: pd.DataFrame,
             col_moved: Mapping[str, np.ndarray], old: pd.DataFrame, new: pd.DataFrame,
             model_words: str, describe: Callable[[str, Any, Any], str],
             n_causes: int) -> list[str]:
    """The top causes in words; a family is described by its moved feature whose own
    contribution moved most."""
    model = out["model_part"].to_numpy()
    d = delta.to_numpy(np.float64)
    pos = {c: k for k, c in enumerate(delta.columns)}
    texts: list[str] = []
    for i in range(len(out)):
        causes: list[tuple[float, str]] = []
        if abs(model[i]) >= 0.5:
            causes.append((model[i], f"{_points(model[i])}: {model_words}"))
        for j in np.flatnonzero(np.abs(parts[i]) >= 0.5):
            cols = [c for c in members[j] if col_moved[c][i]]
            name = max(cols, key=lambda c: abs(d[i, pos[c]]))
            causes.append((parts[i, j], f"{_points(parts[i, j])}: "
                           f"{describe(name, old[name].iloc[i], new[name].iloc[i])}"))
        causes.sort(key=lambda c: -abs(c[0]))
        texts.append("; ".join(text for _, text in causes[:n_causes]))
    return texts
