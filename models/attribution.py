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

Against a published batch (`old_scores`: the scores the previous batch wrote), the change is
new score - published score; a published score that differs from the old model on the
rebuilt old features (the export's lead details or past events were revised since) is its
own part, `data_part[revised]`, so the parts still add up. `explain_changes` does this for
one chunk of a batch: it rebuilds each lead's features at the previous batch's as_of from
this batch's leads and events (`models.scoring.features_at`: only events before that
moment) and adds `score_change` / `change_reasons`; `change_summary` gives the batch's
metrics and its biggest movers.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.build import feature_groups

__all__ = ["PreviousBatch", "attribute_changes", "change_summary", "describe_feature",
           "explain_changes"]

#: The part of a change the export's revision explains (`old_scores`).
REVISED = "revised"
REVISED_WORDS = "lead details or past events revised in the export since the last batch"

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


def _points(x: float, signs: tuple[str, str] = ("+", "-")) -> str:
    return f"{signs[0] if x >= 0 else signs[1]}{abs(x):.0f}"


def _changed(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Rows where a feature's value moved (missing == missing)."""
    a, b = old.astype(object).to_numpy(), new.astype(object).to_numpy()
    miss_a, miss_b = pd.isna(a), pd.isna(b)
    same = (miss_a & miss_b) | (~miss_a & ~miss_b & (a == b))
    return ~same


def _log_odds(bundle: _Bundle, frame: pd.DataFrame) -> np.ndarray:
    p = np.clip(bundle.raw_proba(frame), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


#: Rows of one stacked model call in `_family_shapley` (leads x coalitions), for memory.
STACK_ROWS = 200_000


def _stack(old: pd.DataFrame, new: pd.DataFrame, swapped: list[set[str]]) -> pd.DataFrame:
    """One frame of len(swapped) blocks: block k is `old` with the columns in `swapped[k]`
    taken from `new` (dtypes kept; categoricals by their codes)."""
    out: dict[str, Any] = {}
    for col in old.columns:
        a, b = old[col], new[col]
        if isinstance(a.dtype, pd.CategoricalDtype) and a.dtype == b.dtype:
            ca, cb = a.cat.codes.to_numpy(), b.cat.codes.to_numpy()
            codes = np.concatenate([cb if col in s else ca for s in swapped])
            out[col] = pd.Categorical.from_codes(codes, dtype=a.dtype)
        else:
            va, vb = a.to_numpy(), b.to_numpy()
            if va.dtype != vb.dtype:
                va, vb = va.astype(object), vb.astype(object)
            out[col] = np.concatenate([vb if col in s else va for s in swapped])
    return pd.DataFrame(out)


def _coalitions(m: int, exact: bool, orders: list[np.ndarray]) -> list[frozenset[int]]:
    """Every coalition the Shapley sum reads: all subsets of m families (exact), or the
    prefixes of the sampled orders."""
    if exact:
        return [frozenset(c) for size in range(m + 1)
                for c in itertools.combinations(range(m), size)]
    seen: dict[frozenset[int], None] = {frozenset(): None}
    for order in orders:
        step: frozenset[int] = frozenset()
        for j in order:
            step = step | {int(j)}
            seen[step] = None
    return list(seen)


def _family_shapley(bundle: _Bundle, old: pd.DataFrame, new: pd.DataFrame,
                    members: list[list[str]], moved: np.ndarray, max_exact: int,
                    n_orders: int) -> np.ndarray:
    """(leads, families) Shapley values of the move from old to new features in the model's
    log-odds, over the families that moved for each lead (the others get 0 exactly).
    Exact up to `max_exact` moved families, else the mean over `n_orders` fixed random
    orders (still adding up exactly). Leads whose same families moved share one stacked
    model call over all the coalitions needed (at most `STACK_ROWS` rows at once)."""
    phi = np.zeros(moved.shape, dtype=np.float64)
    keys = [tuple(np.flatnonzero(row)) for row in moved]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            groups.setdefault(key, []).append(i)
    rng = np.random.default_rng(0)
    for key, all_rows in groups.items():
        m = len(key)
        exact = m <= max_exact
        orders = [] if exact else [rng.permutation(m) for _ in range(n_orders)]
        subsets = _coalitions(m, exact, orders)
        swapped = [{c for j in sub for c in members[key[j]]} for sub in subsets]
        step = max(1, STACK_ROWS // len(subsets))
        for lo in range(0, len(all_rows), step):
            rows = all_rows[lo:lo + step]
            o, n = old.iloc[rows], new.iloc[rows]
            values = _log_odds(bundle, _stack(o, n, swapped)).reshape(len(subsets), len(rows))
            v = dict(zip(subsets, values, strict=True))
            if exact:
                weights = [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                           for s in range(m)]
                for j in range(m):
                    others = [k for k in range(m) if k != j]
                    for size in range(m):
                        for subset in itertools.combinations(others, size):
                            base = frozenset(subset)
                            phi[rows, key[j]] += weights[size] * (v[base | {j}] - v[base])
            else:
                for order in orders:
                    seen: frozenset[int] = frozenset()
                    for j in order:
                        nxt = seen | {int(j)}
                        phi[rows, key[int(j)]] += (v[nxt] - v[seen]) / n_orders
                        seen = nxt
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
    old_scores: Sequence[float] | np.ndarray | None = None,
    revised_words: str = REVISED_WORDS,
    signs: tuple[str, str] = ("+", "-"),
) -> pd.DataFrame:
    """Per lead (the index shared by both feature frames): `score_change`, `model_part`,
    one `data_part[<family>]` column per family that moved, and `change_reasons`.
    Families are the report groups of `features.build.feature_groups` (`families`, e.g.
    the bundle's `groups`, overrides them feature by feature).

    `same_model` (default: the two bundles are the same object) skips the model part.
    `old_scores` (the published old scores, in frame order): the change is measured from
    them, and any gap to the old model's score on `old_features` is `data_part[revised]`
    (words `revised_words`). `signs`: the marks of a cause's points (up, down), e.g.
    ("▲ +", "▼ −") so that no cell starts like a spreadsheet formula.
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
    revised = (np.zeros_like(s_old) if old_scores is None
               else s_old - np.asarray(old_scores, dtype=np.float64))
    out = pd.DataFrame({"score_change": s_new - s_old + revised,
                        "model_part": s_mid - s_old}, index=new_features.index)
    shown = np.abs(parts).max(axis=0) > 1e-9 if len(parts) else np.zeros(len(uniq), bool)
    for j in np.flatnonzero(shown):
        out[f"data_part[{uniq[j]}]"] = parts[:, j]
    if np.abs(stray).max(initial=0.0) > 0:
        out["data_part[other]"] = stray
    if np.abs(revised).max(initial=0.0) > 1e-9:
        out[f"data_part[{REVISED}]"] = revised
    delta = (new_bundle.contributions(new_features)[features]
             - new_bundle.contributions(old_features)[features])
    out["change_reasons"] = _reasons(out, parts, uniq, members, delta, col_moved,
                                     old_features, new_features, model_words, describe,
                                     n_causes, [(revised, revised_words)], signs)
    return out


def _reasons(out: pd.DataFrame, parts: np.ndarray, uniq: list[str],
             members: list[list[str]], delta: pd.DataFrame,
             col_moved: Mapping[str, np.ndarray], old: pd.DataFrame, new: pd.DataFrame,
             model_words: str, describe: Callable[[str, Any, Any], str],
             n_causes: int, extra: Sequence[tuple[np.ndarray, str]] = (),
             signs: tuple[str, str] = ("+", "-")) -> list[str]:
    """The top causes in words; a family is described by its moved feature whose own
    contribution moved most; `extra` parts (points per lead, words) compete with them."""
    model = out["model_part"].to_numpy()
    d = delta.to_numpy(np.float64)
    pos = {c: k for k, c in enumerate(delta.columns)}
    texts: list[str] = []
    for i in range(len(out)):
        causes: list[tuple[float, str]] = []
        if abs(model[i]) >= 0.5:
            causes.append((model[i], f"{_points(model[i], signs)}: {model_words}"))
        for j in np.flatnonzero(np.abs(parts[i]) >= 0.5):
            cols = [c for c in members[j] if col_moved[c][i]]
            name = max(cols, key=lambda c: abs(d[i, pos[c]]))
            causes.append((parts[i, j], f"{_points(parts[i, j], signs)}: "
                           f"{describe(name, old[name].iloc[i], new[name].iloc[i])}"))
        for points, words in extra:
            if abs(points[i]) >= 0.5:
                causes.append((points[i], f"{_points(points[i], signs)}: {words}"))
        causes.sort(key=lambda c: -abs(c[0]))
        texts.append("; ".join(text for _, text in causes[:n_causes]))
    return texts


# ------------------------------------------------------------------ one batch against the last

#: Working columns `explain_changes` adds next to `score_change` / `change_reasons` (the
#: scored table leaves them out): points from the model, from the data (all families), from
#: the export's revision, and the per-family parts of the chunk's biggest movers.
MODEL_PART, DATA_PART, REVISED_PART, FAMILY_PARTS = (
    "_model_part", "_data_part", "_revised_part", "_family_parts")


@dataclass(frozen=True)
class PreviousBatch:
    """What a batch needs of the one before it to explain its score changes: each lead's
    published `scores` (lead_id -> points), the batch's `as_of` and model version.

    `old_bundle` is that model (None when it is this batch's own, `old_version ==
    new_version`: no second model). `not_attributed` (words) when the changes cannot be
    explained (the old model cannot be loaded): the change in points is still given, the
    words say why there is no split; with `compare` False (another model lineage) not even
    the points. `movers`: how many of the biggest movers keep their per-family parts;
    `chunk_size`: leads attributed at once; `signs`: the marks of a cause's points."""

    scores: pd.Series
    as_of: pd.Timestamp
    old_version: str
    new_version: str
    old_bundle: Any = None
    not_attributed: str = ""
    compare: bool = True
    movers: int = 50
    chunk_size: int = 100_000
    signs: tuple[str, str] = ("+", "-")

    def __post_init__(self) -> None:
        if not self.same_model and self.old_bundle is None and not self.not_attributed:
            raise ValueError(f"model {self.old_version} scored the previous batch: pass it as "
                             "`old_bundle`, or say in `not_attributed` why it cannot be")
        if self.chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1; got {self.chunk_size}")

    @property
    def same_model(self) -> bool:
        return str(self.old_version) == str(self.new_version)

    @property
    def model_words(self) -> str:
        return f"model retrained (v{self.old_version} → v{self.new_version})"


def _moment(as_of: Any) -> pd.Timestamp:
    """A naive UTC moment, as `features.snapshots.scoring_spine` uses it."""
    at = pd.Timestamp(as_of)
    return at.tz_convert("UTC").tz_localize(None) if at.tzinfo is not None else at


def _attribute(ids: pd.Series, before: np.ndarray, leads: pd.DataFrame,
               events: pd.DataFrame | None, bundle: Any, fs: Any, as_of: pd.Timestamp,
               previous: PreviousBatch) -> pd.DataFrame:
    """`attribute_changes` for these leads: their features at this batch's as_of and, from
    the same leads and events, at the previous batch's as_of (only events before it)."""
    from features.snapshots import is_lead_level
    from models.scoring import features_at

    lead_level = is_lead_level(leads)   # no as_of: nothing ages, only the model can move

    def spine(at: pd.Timestamp) -> pd.DataFrame:
        moment = pd.NaT if lead_level else _moment(at)
        return pd.DataFrame({"lead_id": ids.to_numpy(),
                             "as_of": pd.Series([moment] * len(ids), dtype="datetime64[us]")})

    old_model = bundle if previous.old_bundle is None else previous.old_bundle
    bundles = [bundle] if old_model is bundle else [bundle, old_model]
    new_x = features_at(spine(as_of), leads, events, fs, bundles)
    old_x = features_at(spine(previous.as_of), leads, events, fs, bundles)
    return attribute_changes(old_model, bundle, old_x, new_x,
                             families=getattr(bundle, "groups", None) or None,
                             model_words=previous.model_words,
                             same_model=previous.same_model, old_scores=before,
                             signs=previous.signs)


def _by_size(change: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`rows` ordered biggest |change| first, then lead_id (the same order in any chunk)."""
    return rows[np.lexsort((ids[rows], -np.abs(change[rows])))]


def explain_changes(scored: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame | None,
                    bundle: Any, fs: Any, as_of: pd.Timestamp,
                    previous: PreviousBatch) -> pd.DataFrame:
    """`scored` (the scoring core's table for some leads) plus `score_change` (points, this
    score - the published previous one; NaN for a lead new in this batch) and
    `change_reasons` (the top one or two causes in words; empty for a new or unmoved lead),
    and the working columns `MODEL_PART`, `DATA_PART`, `REVISED_PART` (points; NaN where not
    attributed) and `FAMILY_PARTS` ({family: points} for this call's `previous.movers`
    biggest movers, else None). For every attributed lead model + data + revised part =
    score_change to float rounding. `leads` / `events`: what this batch scored them from
    (typing the extra columns as the core did)."""
    out = scored.copy()
    n = len(out)
    ids = out["lead_id"].astype(str).to_numpy(dtype=object)
    before = previous.scores.reindex(ids).to_numpy(dtype=np.float64, na_value=np.nan) \
        if len(previous.scores) else np.full(n, np.nan)
    found = ~np.isnan(before)
    now = out["score"].to_numpy(dtype=np.float64)
    change = np.where(found, now - before, np.nan)
    reasons = np.full(n, "", dtype=object)
    parts = {k: np.full(n, np.nan) for k in (MODEL_PART, DATA_PART, REVISED_PART)}
    families: list[Any] = [None] * n
    rows = np.flatnonzero(found)
    if previous.not_attributed:
        reasons[rows] = previous.not_attributed
        if not previous.compare:
            change[:] = np.nan
        rows = rows[:0]
    kept: list[tuple[int, dict[str, float]]] = []
    for start in range(0, len(rows), previous.chunk_size):
        take = rows[start:start + previous.chunk_size]
        got = _attribute(pd.Series(ids[take]), before[take], leads, events, bundle, fs,
                         as_of, previous)
        fam = got.filter(like="data_part[")
        revised_col = f"data_part[{REVISED}]"
        revised = fam[revised_col].to_numpy() if revised_col in fam else np.zeros(len(take))
        # the published score is the truth: any gap to the rebuilt new score is revision too
        revised = revised + (change[take] - got["score_change"].to_numpy())
        parts[MODEL_PART][take] = got["model_part"].to_numpy()
        parts[DATA_PART][take] = fam.drop(columns=[revised_col], errors="ignore").sum(
            axis=1).to_numpy()
        parts[REVISED_PART][take] = revised
        reasons[take] = got["change_reasons"].to_numpy(dtype=object)
        top = _by_size(change, ids, take)[:previous.movers]
        where = {r: k for k, r in enumerate(take)}
        for r in top:
            row = fam.iloc[where[r]]
            kept.append((r, {c[len("data_part["):-1]: float(v) for c, v in row.items()
                             if c != revised_col and abs(v) > 1e-12}))
    if kept:
        best = set(_by_size(change, ids, np.array([r for r, _ in kept]))[:previous.movers])
        for r, fam_parts in kept:
            if r in best:
                families[r] = fam_parts
    out["score_change"] = change
    out["change_reasons"] = pd.Series(reasons, index=out.index, dtype="str")
    for key, values in parts.items():
        out[key] = values
    out[FAMILY_PARTS] = pd.Series(families, index=out.index, dtype=object)
    return out


def change_summary(table: pd.DataFrame, movers: int) -> tuple[dict[str, float], pd.DataFrame]:
    """(metrics, movers) of a batch's table with `explain_changes`' columns.

    Metrics: `leads_compared` (in both batches), `leads_attributed`, `leads_changed` (score
    moved), `mean_abs_change` (points, over compared leads), and the shares of the movement
    from the model, the data and the export's revision (`share_model`, `share_data`,
    `share_revised`: each part's sum of |points| over the sum for all three; a lead whose
    model part and data part cancel still counts both).
    Movers: the `movers` leads with the biggest |score_change| (ties: lead_id) with
    `lead_id`, `score`, `previous_score`, `score_change`, `model_part`, one
    `data_part[<family>]` per family, `data_part[revised]`, `change_reasons`: ids, numbers
    and words only. A lead_id column that holds personal data (emails, phones:
    `features.pii`) is masked."""
    from features.pii import detect_personal, mask_frame

    change = table["score_change"].to_numpy(dtype=np.float64) if len(table) else np.zeros(0)
    compared = ~np.isnan(change)
    have = {k: (table[k].to_numpy(dtype=np.float64) if k in table else np.full(len(table),
                                                                                np.nan))
            for k in (MODEL_PART, DATA_PART, REVISED_PART)}
    attributed = compared & ~np.isnan(have[MODEL_PART])
    size = {k: float(np.abs(v[attributed]).sum()) for k, v in have.items()}
    total = sum(size.values())
    metrics = {
        "leads_compared": float(compared.sum()),
        "leads_attributed": float(attributed.sum()),
        "leads_changed": float((compared & (np.nan_to_num(change) != 0)).sum()),
        "mean_abs_change": float(np.abs(change[compared]).mean()) if compared.any() else 0.0,
        "share_model": size[MODEL_PART] / total if total else 0.0,
        "share_data": size[DATA_PART] / total if total else 0.0,
        "share_revised": size[REVISED_PART] / total if total else 0.0,
    }
    ids = table["lead_id"].astype(str).to_numpy(dtype=object) if len(table) else np.zeros(0, object)
    rows = np.flatnonzero(compared & (np.nan_to_num(change) != 0))
    top = _by_size(change, ids, rows)[:movers]
    fam = table[FAMILY_PARTS].to_numpy(dtype=object)[top] if FAMILY_PARTS in table else \
        [None] * len(top)
    names = sorted({f for d in fam if d for f in d})
    moved = pd.DataFrame({
        "lead_id": pd.Series(ids[top], dtype="str"),
        "score": table["score"].to_numpy()[top] if len(table) else np.zeros(0, np.int64),
        "previous_score": table["score"].to_numpy(dtype=np.float64)[top] - change[top],
        "score_change": change[top],
        "model_part": have[MODEL_PART][top],
    })
    for f in names:
        moved[f"data_part[{f}]"] = [float((d or {}).get(f, 0.0)) if d is not None else np.nan
                                    for d in fam]
    moved[f"data_part[{REVISED}]"] = have[REVISED_PART][top]
    moved["change_reasons"] = pd.Series(
        table["change_reasons"].to_numpy(dtype=object)[top] if "change_reasons" in table
        else [""] * len(top), dtype="str")
    found = detect_personal(moved[["lead_id"]])
    if found:
        moved = mask_frame(moved, {p.column: p.kind for p in found})
    return metrics, moved
