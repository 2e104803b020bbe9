"""What the `rules` stage shows analysts: side-by-side performance of the manual rules, the
learned-point rules and the models, the model's weights next to the rules, plots, the
Markdown summary, the notebook's "what if I change these points?" helper, and one sentence
of why per verdict (`explain_verdicts`: the `why` column of rules_comparison.csv, shown by
the summary and the notebook alike).

Pure: frames, rule sets and fitted bands in; dicts, frames, PNG bytes and Markdown out.
Nothing here reads or writes a file or talks to MLflow (`pipeline.stages.rules` does).

Scorers, in display order (`SCORERS`): `manual_rules` (rules.yaml), `learned_rules` (the
suggested rules.learned.yaml: the same rules with learned, rounded points and thresholds
fitted to the model's band targets), `logreg`, `lightgbm`. Each is judged as it is used:
the rule sets by their point totals and point thresholds, the models by their calibrated
probability and the probability cutoffs fitted on the calibration split (`bundle.bands`;
the logistic regression gets the same cutoffs, its probabilities being calibrated too).

Plots follow `pipeline.report`: `matplotlib.figure.Figure` on the Agg canvas (no pyplot
state), matplotlib's default style whatever the user's rc says, PNG without the `Software`
metadata, so the same inputs give the same bytes. File names: `PLOT_POINTS`,
`band_plot_name(<band set>)` per band set, `PLOT_WEIGHTS` (when weights are given).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.behaviour import sanitize
from features.build import feature_groups
from features.settings import FeatureSettings
from models.bands import FittedBands, apply_bands
from models.metrics import pr_auc, roc_auc, wilson_interval
from models.rules import (
    ABOUT_RIGHT,
    NO_EVIDENCE,
    OVERWEIGHTED,
    UNDERWEIGHTED,
    WRONG_SIGN,
    DecayRule,
    EventRule,
    FieldRule,
    LearnSettings,
    PointBands,
    RuleSet,
    point_bands,
)
from models.settings import InputError, InsufficientDataError
from pipeline.console import finite, pct

__all__ = [
    "PLOT_POINTS",
    "PLOT_WEIGHTS",
    "SCORERS",
    "WEIGHT_COLUMNS",
    "Rescored",
    "assign_bands",
    "band_plot_name",
    "band_stats",
    "explain_verdict",
    "explain_verdicts",
    "most_wrong",
    "performance_report",
    "render_plots",
    "render_summary",
    "rescore_with_overrides",
    "rule_feature_map",
    "rule_overlaps",
    "weights_table",
]

SCORERS = ("manual_rules", "learned_rules", "logreg", "lightgbm")
LABELS = {
    "manual_rules": "Manual rules",
    "learned_rules": "Learned-point rules",
    "logreg": "Logistic regression",
    "lightgbm": "LightGBM model",
}
COLORS = {
    "manual_rules": "#b22222",
    "learned_rules": "#2e8b57",
    "logreg": "#e07b00",
    "lightgbm": "#1f5fa8",
}
VERDICT_COLORS = {
    ABOUT_RIGHT: "#2e8b57",
    OVERWEIGHTED: "#e07b00",
    UNDERWEIGHTED: "#1f5fa8",
    WRONG_SIGN: "#b22222",
    NO_EVIDENCE: "#999999",
}
#: Verdicts that say the manual points are wrong (the rest: fine, or the data cannot tell).
WRONG = (WRONG_SIGN, OVERWEIGHTED, UNDERWEIGHTED)
PLOT_POINTS = "points_manual_vs_learned.png"
PLOT_WEIGHTS = "weights_by_group.png"
PLOT_BACKTEST = "decision_backtest.png"
PLOT_DECAY = "decay_by_group.png"
WEIGHT_COLUMNS = (
    "level", "group", "feature", "model_mean_abs_log_odds", "model_share",
    "rules_mean_abs_log_odds", "rules", "rule_points",
)
HOT_SET = "temperature"
#: Rules whose inputs correlate at least this much (|Pearson r|, training snapshots) overlap:
#: they fire on the same leads and share the credit in the learned points.
OVERLAP_MIN = 0.3
#: Below this support the L2 shrinkage of the fit visibly pulls a rule's points toward 0.
LOW_SUPPORT = 0.05
_DPI = 110

Bands = PointBands | FittedBands


def band_plot_name(set_name: str) -> str:
    """File name of the conversion-by-band plot of one band set."""
    return f"conversion_by_band_{sanitize(set_name)}.png"


def _label(scorer: str) -> str:
    return LABELS.get(scorer, scorer)


_finite = finite  # a finite float, or None


# --------------------------------------------------------------------------- bands


def assign_bands(score: ArrayLike, bands: Bands) -> np.ndarray:
    """Band name per score: point totals for `PointBands` (`models.rules.point_bands`),
    calibrated probabilities for `FittedBands` (`models.bands.apply_bands`)."""
    if isinstance(bands, PointBands):
        return point_bands(score, bands)
    if isinstance(bands, FittedBands):
        return apply_bands(score, bands)
    raise InputError(f"bands must be PointBands or FittedBands; got {type(bands).__name__}")


def _band_starts(bands: Bands) -> tuple[tuple[str, ...], list[float | None], str]:
    if isinstance(bands, PointBands):
        return bands.names, [None, *map(float, bands.thresholds)], "points"
    return bands.names, [0.0, *map(float, bands.cutoffs)], "probability"


def band_stats(y: ArrayLike, score: ArrayLike, bands: Bands) -> dict[str, dict[str, Any]]:
    """Per band (lowest first): `from` (its minimum points or probability; None for the
    lowest point band), `n`, `conversions`, `rate`, `ci_low`, `ci_high` (Wilson 95 %) and
    `share` (of the rows). Rate and interval are None for an empty band."""
    yy = np.asarray(y, dtype=float).ravel()
    labels = assign_bands(score, bands)
    if labels.size != yy.size:
        raise InputError(f"`y` has {yy.size} values for {labels.size} scores")
    names, starts, _ = _band_starts(bands)
    out: dict[str, dict[str, Any]] = {}
    for name, start in zip(names, starts, strict=True):
        mask = labels == name
        n, conv = int(mask.sum()), int(yy[mask].sum())
        lo, hi = wilson_interval(conv, n)
        out[name] = {"from": start, "n": n, "conversions": conv,
                     "rate": conv / n if n else None,
                     "ci_low": lo if n else None, "ci_high": hi if n else None,
                     "share": n / yy.size if yy.size else 0.0}
    return out


def _auc(fn: Any, y: np.ndarray, score: np.ndarray) -> float | None:
    try:
        return float(fn(y, score))
    except InsufficientDataError:
        return None


def _hot(stats: Mapping[str, dict[str, Any]], positives: int) -> dict[str, Any]:
    name = list(stats)[-1]
    s = stats[name]
    return {"band": name, "from": s["from"], "n": s["n"], "conversions": s["conversions"],
            "rate": s["rate"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
            "share_of_leads": s["share"],
            "share_of_conversions": s["conversions"] / positives if positives else None}


def performance_report(
    y: ArrayLike,
    scores: Mapping[str, ArrayLike],
    bandings: Mapping[str, Mapping[str, Bands]],
    hot_set: str = HOT_SET,
) -> dict[str, Any]:
    """Side-by-side performance on one split (the stage passes the test snapshots).

    `scores`: scorer -> score per row (point totals or calibrated probabilities);
    `bandings`: scorer -> band set name -> its `PointBands` / `FittedBands`. Returns
    `{n, positives, base_rate, hot_band_set, scorers: {scorer: {label, score, roc_auc,
    pr_auc, bands: {set: band_stats}, hot}}}`; `hot` is the top band of `hot_set` (the first
    band set when a scorer has no `hot_set`), with n, conversions, rate, Wilson interval,
    share of the rows and share of all conversions.
    """
    yy = np.asarray(y, dtype=float).ravel()
    if yy.size == 0:
        raise InsufficientDataError("performance needs at least one row; got 0")
    positives = int(yy.sum())
    out: dict[str, Any] = {"n": int(yy.size), "positives": positives,
                           "base_rate": positives / yy.size, "hot_band_set": hot_set,
                           "scorers": {}}
    order = [s for s in SCORERS if s in scores] + [s for s in scores if s not in SCORERS]
    for scorer in order:
        score = np.asarray(scores[scorer], dtype=float).ravel()
        if score.size != yy.size:
            raise InputError(f"scores[{scorer!r}] has {score.size} values for {yy.size} rows")
        sets = bandings.get(scorer, {})
        bands = {name: band_stats(yy, score, b) for name, b in sets.items()}
        kinds = {_band_starts(b)[2] for b in sets.values()}
        entry: dict[str, Any] = {
            "label": _label(scorer),
            "score": kinds.pop() if len(kinds) == 1 else "score",
            "roc_auc": _auc(roc_auc, yy, score),
            "pr_auc": _auc(pr_auc, yy, score),
            "bands": bands,
        }
        if bands:
            entry["hot"] = _hot(bands[hot_set] if hot_set in bands else next(iter(bands.values())),
                                positives)
        out["scorers"][scorer] = entry
    return out


def flat_metrics(performance: Mapping[str, Any], prefix: str = "rules") -> dict[str, float]:
    """MLflow metrics from `performance_report`: `<prefix>.<scorer>.roc_auc`, `.pr_auc`,
    `.hot_n`, `.hot_conversions`, `.hot_rate`, `.<set>.<band>.n` / `.rate` (finite only)."""
    out: dict[str, float] = {}
    for scorer, e in performance["scorers"].items():
        base = f"{prefix}.{scorer}"
        for key in ("roc_auc", "pr_auc"):
            out[f"{base}.{key}"] = e.get(key)
        hot = e.get("hot") or {}
        for key in ("n", "conversions", "rate"):
            out[f"{base}.hot_{key}"] = hot.get(key)
        for set_name, bands in e["bands"].items():
            for band, s in bands.items():
                out[f"{base}.{sanitize(set_name)}.{sanitize(band)}.n"] = s["n"]
                out[f"{base}.{sanitize(set_name)}.{sanitize(band)}.rate"] = s["rate"]
    return {k: float(v) for k, v in out.items() if _finite(v) is not None}


# --------------------------------------------------------------------------- verdicts


def most_wrong(comparison: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """The rules whose manual points the data contradicts (verdict wrong sign, overweighted
    or underweighted), worst first: `miss` = how far the manual points lie outside the
    learned 95 % interval (points), `gap` = learned minus manual. Ties: by rule name."""
    c = comparison[comparison["verdict"].isin(WRONG)].copy()
    m, lo, hi = (c[k].astype(float) for k in ("manual_points", "ci_low", "ci_high"))
    c["miss"] = np.maximum(lo - m, 0.0) + np.maximum(m - hi, 0.0)
    c["gap"] = c["learned_points"].astype(float) - m
    c = c.sort_values(["miss", "rule"], ascending=[False, True], kind="mergesort")
    c = c.reset_index(drop=True)
    return c if n is None else c.head(n)


def rule_overlaps(rule_x: pd.DataFrame, names: Sequence[str], min_corr: float = OVERLAP_MIN,
                  top: int = 2) -> dict[str, list[tuple[str, float]]]:
    """Rule -> the (at most `top`) other rules whose inputs correlate with its own by at least
    `min_corr` in absolute value over the rows of `rule_x` (the stage passes the training
    snapshots), strongest first: `[(other rule, Pearson r)]`. A rule that never varies
    overlaps with nothing."""
    X = rule_x.loc[:, list(names)].to_numpy(dtype=float)
    sd = X.std(axis=0) if len(X) else np.zeros(len(names))
    varies = sd > 0
    corr = np.zeros((len(names), len(names)))
    if varies.sum() > 1:
        with np.errstate(all="ignore"):
            sub = np.corrcoef(X[:, varies], rowvar=False)
        idx = np.flatnonzero(varies)
        corr[np.ix_(idx, idx)] = np.nan_to_num(sub)
    out: dict[str, list[tuple[str, float]]] = {}
    for j, name in enumerate(names):
        others = [(names[k], float(corr[j, k])) for k in range(len(names))
                  if k != j and abs(corr[j, k]) >= min_corr]
        others.sort(key=lambda t: (-abs(t[1]), t[0]))
        out[name] = others[:top]
    return out


def _lift_words(lift: float | None) -> str:
    if lift is None:
        return "the leads it fires for cannot be compared with the rest"
    if lift < 0.005:
        return "none of the training snapshots it fires on converted"
    return f"the leads it fires for convert {lift:.2f} times as often as the rest"


def explain_verdict(
    row: Mapping[str, Any],
    *,
    overlaps: Sequence[tuple[str, float]] = (),
    unit: str = "per unit",
    pdo: float | None = None,
    settings: LearnSettings | None = None,
) -> str:
    """One sentence saying why a rule got its verdict, for marketing to read.

    `row`: a `comparison_table` row (manual_points, learned_points, ci_low, ci_high, support,
    lift, verdict); `overlaps`: `rule_overlaps` of the rule; `unit`: what the points are per
    ("per event", "per 30 days of silence"...); `pdo`: points to double the odds on the
    learned scale, to translate large learned points into odds. The reasons named: the
    rule's own lift against its conditional points (overlap with the named rules), low
    support (shrinkage, or too little data), a wide interval, or the size of the effect.
    """
    s = settings or LearnSettings()
    verdict = str(row["verdict"])
    m = float(row["manual_points"])
    lr, lo, hi = (_finite(row.get(k)) for k in ("learned_points", "ci_low", "ci_high"))
    sup, lift = _finite(row.get("support")), _finite(row.get("lift"))
    interval = f"{_pts(lo)} … {_pts(hi)}"
    manual = f"{_pts(m, 0)} points {unit}"
    named = [f"{name} (r = {r:+.2f})" for name, r in overlaps]
    shared = ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else "".join(named)

    if verdict == NO_EVIDENCE:
        if lr is None or lo is None or hi is None:
            return ("It fires on all or none of the training snapshots, so the data cannot "
                    "give it points.")
        if sup is not None and sup < s.min_support:
            return (f"It fires on only {_pct(sup)} of the training snapshots (below "
                    f"`rules.min_support` {_pct(s.min_support)}): too few to tell its worth.")
        return (f"Its 95 % interval ({interval} points) spans zero and is more than "
                f"{s.wide_ci_ratio:g} times the manual points wide: the data cannot tell "
                "whether it helps.")
    if lr is None:
        return f"The data gives it no points; the manual {manual} are unconfirmed."
    learned = f"{_pts(lr)} points {unit}"
    if verdict == ABOUT_RIGHT:
        if lo is not None and hi is not None and lo <= m <= hi:
            return f"The manual {manual} lie inside the data's 95 % interval ({interval})."
        return (f"The manual {manual} are within {100 * s.tolerance:.0f} % of the "
                f"{_pts(lr)} the data gives it.")
    if verdict == WRONG_SIGN:
        own_way = lift is not None and (lift > 1) == (m > 0) and lift != 1
        sign = "lowers" if lr < 0 else "raises"
        if own_way and shared:
            return (f"On its own it goes the manual way ({_lift_words(lift)}), but it "
                    f"fires on the same leads as {shared}: once they are counted it {sign} "
                    f"the odds, so the sign flips ({learned}, interval {interval}).")
        if own_way:
            return (f"On its own it goes the manual way ({_lift_words(lift)}), but "
                    f"next to all the other rules it {sign} the odds: {learned}, the whole "
                    f"95 % interval ({interval}) on the other side of zero.")
        return (f"Even on its own {_lift_words(lift)}: the data says the opposite of "
                f"the manual {manual} ({learned}, interval {interval}).")
    strength = ""
    if pdo is not None and pdo > 0 and abs(lr) >= pdo:
        strength = (f"; {_pts(lr, 0)} points {unit} means the odds "
                    f"{'double' if lr > 0 else 'halve'} about {abs(lr) / pdo:.1f} times "
                    f"({pdo:.0f} points double the odds on the learned scale)")
    if verdict == OVERWEIGHTED:
        if shared:
            return (f"It fires on the same leads as {shared}, which share its credit: next to "
                    f"them it is worth {learned}, not the manual {_pts(m, 0)}, although "
                    f"{_lift_words(lift)}.")
        if sup is not None and sup < LOW_SUPPORT:
            return (f"It fires on only {_pct(sup)} of the training snapshots, so the fit's "
                    f"shrinkage (`rules.C`) pulls its points toward 0: {learned} instead of "
                    f"the manual {_pts(m, 0)} (interval {interval}).")
        return (f"{_lift_words(lift).capitalize()}: worth {learned}, less than the "
                f"manual {_pts(m, 0)}.")
    # underweighted
    if m < 0 or (m == 0 and lr < 0):
        return (f"{_lift_words(lift).capitalize()}: the data gives {learned}, a harsher "
                f"penalty than the manual {_pts(m, 0)}{strength}.")
    return (f"{_lift_words(lift).capitalize()}: worth {learned}, more than the manual "
            f"{_pts(m, 0)}{strength}.")


def explain_verdicts(
    comparison: pd.DataFrame,
    *,
    overlaps: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ruleset: RuleSet | None = None,
    pdo: float | None = None,
    settings: LearnSettings | None = None,
) -> pd.Series:
    """`explain_verdict` for every row of a comparison table: a `why` Series on its index."""
    overlaps = overlaps or {}
    return pd.Series(
        [explain_verdict(row, overlaps=overlaps.get(row["rule"], ()),
                         unit=_unit(ruleset, row["rule"]), pdo=pdo, settings=settings)
         for row in comparison.to_dict("records")],
        index=comparison.index, name="why", dtype=object)


def _unit(ruleset: RuleSet | None, name: str) -> str:
    rule = next((r for r in ruleset.rules if r.name == name), None) if ruleset else None
    if isinstance(rule, EventRule):
        window = f" in the last {rule.window_days} days" if rule.window_days else ""
        if rule.half_life_days:
            window = f", worth half after {rule.half_life_days:g} days"
        return f"per event{window}"
    if isinstance(rule, FieldRule):
        return "when it matches"
    if isinstance(rule, DecayRule):
        return f"per {rule.per_days:g} days of silence"
    return "per unit"


def _pts(x: Any, digits: int = 1, ascii_only: bool = False) -> str:
    f = _finite(x)
    if f is None:
        return "n/a"
    text = f"{f:+.{digits}f}"
    return text if ascii_only else text.replace("-", "\u2212")


def _direction(row: Mapping[str, Any]) -> str:
    v = row["verdict"]
    if v == WRONG_SIGN:
        return "has the wrong sign: the data says the opposite"
    bonus = float(row["manual_points"]) >= 0
    if v == OVERWEIGHTED:
        return ("is overweighted: it is worth less than marketing gives it" if bonus else
                "is overweighted: the penalty is harsher than the data supports")
    return ("is underweighted: it is worth more than marketing gives it" if bonus else
            "is underweighted: the data penalises it harder")


# --------------------------------------------------------------------------- model weights


def rule_feature_map(
    ruleset: RuleSet,
    columns: Sequence[str],
    groups: Mapping[str, str],
    settings: FeatureSettings | None = None,
) -> pd.DataFrame:
    """Which model features and feature groups each rule touches. Columns: `rule`, `kind`,
    `features` (tuple of model feature columns), `groups` (tuple of groups).

    Event rule: the per-type counts `evt_<type>_<window>` of its event types (their group
    from `groups`, i.e. meta.json; for a type the model never saw, `feature_groups` on the
    configured event groups). Field rule: the column itself or the fit column derived from
    it (`fit_<field>`, `fit_<field>_bucket`, `fit_log_<field>`, `fit_<field>_rank`). Decay
    rule: `days_since_last_activity` (behaviour:activity).
    """
    cols = [str(c) for c in columns]
    settings = settings or FeatureSettings()
    rows = []
    for r in ruleset.rules:
        if isinstance(r, EventRule):
            feats: list[str] = []
            fallback: list[str] = []
            for t in r.events:
                pattern = re.compile(rf"evt_{re.escape(sanitize(t))}_(\d+d|all)")
                found = [c for c in cols if pattern.fullmatch(c)]
                feats += found
                if not found:
                    fallback.append(f"evt_{sanitize(t)}_all")
        elif isinstance(r, FieldRule):
            f = r.field
            cands = [f, f"fit_{f}", f"fit_{f}_bucket", f"fit_log_{f}", f"fit_{f}_rank"]
            feats = [c for c in cands if c in cols]
            fallback = [] if feats else cands
        else:
            feats = [c for c in ("days_since_last_activity",) if c in cols]
            fallback = [] if feats else ["days_since_last_activity"]
        found_groups = [groups.get(c) or feature_groups([c], settings)[c] for c in feats]
        guessed = [g for g in feature_groups(fallback, settings).values() if g != "other"]
        grp = tuple(dict.fromkeys(found_groups + guessed)) or ("other",)
        rows.append({"rule": r.name, "kind": r.kind, "features": tuple(dict.fromkeys(feats)),
                     "groups": grp})
    return pd.DataFrame(rows, columns=["rule", "kind", "features", "groups"])


def _rule_points_text(names: Sequence[str], comparison: pd.DataFrame) -> str:
    c = comparison.set_index("rule")
    parts = []
    for name in names:
        row = c.loc[name]
        parts.append(f"{name}: {_pts(row['manual_points'], 0, True)} -> "
                     f"{_pts(row['learned_points'], 1, True)} ({row['verdict']})")
    return "; ".join(parts)


def weights_table(
    contributions: pd.DataFrame,
    groups: Mapping[str, str],
    rule_map: pd.DataFrame,
    comparison: pd.DataFrame,
    rule_log_odds: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The model's own weights next to the rules, one row per feature group then one per
    feature (each block by decreasing weight), columns `WEIGHT_COLUMNS`:

    - `model_mean_abs_log_odds`: mean |LightGBM contribution| in log-odds over the rows of
      `contributions` (per-row, per-feature; no bias column); a group's is the sum of its
      features'. `model_share`: share of the total.
    - `rules_mean_abs_log_odds` (group rows): the same for the learned-point rules touching
      the group, from `rule_log_odds` (per-row, per-rule coefficient x centred input).
    - `rules` / `rule_points`: the rules touching the group or feature (`rule_feature_map`),
      with "manual -> learned (verdict)".
    """
    contrib = contributions.drop(columns=[c for c in ("bias",) if c in contributions.columns])
    mean_abs = contrib.abs().mean()
    total = float(mean_abs.sum())
    feat = pd.DataFrame({"feature": mean_abs.index.astype(str),
                         "model_mean_abs_log_odds": mean_abs.to_numpy(dtype=float)})
    feat["group"] = [groups.get(f, "other") for f in feat["feature"]]
    rules_of_feature: dict[str, list[str]] = {}
    rules_of_group: dict[str, list[str]] = {}
    for row in rule_map.itertuples(index=False):
        for f in row.features:
            rules_of_feature.setdefault(f, []).append(row.rule)
        for g in row.groups:
            rules_of_group.setdefault(g, []).append(row.rule)
    grp = feat.groupby("group", sort=False)["model_mean_abs_log_odds"].sum()
    for g in rules_of_group:
        if g not in grp.index:
            grp.loc[g] = 0.0
    rule_abs = (rule_log_odds.abs().mean() if rule_log_odds is not None and len(rule_log_odds)
                else pd.Series(dtype=float))

    group_rows = []
    for g, w in grp.items():
        names = rules_of_group.get(g, [])
        rw = [float(rule_abs[n]) for n in names if n in rule_abs.index and np.isfinite(rule_abs[n])]
        group_rows.append({
            "level": "group", "group": g, "feature": "", "model_mean_abs_log_odds": float(w),
            "model_share": float(w) / total if total > 0 else np.nan,
            "rules_mean_abs_log_odds": float(sum(rw)) if rw else np.nan,
            "rules": "; ".join(names), "rule_points": _rule_points_text(names, comparison),
        })
    feat_rows = []
    for f, w, g in feat[["feature", "model_mean_abs_log_odds", "group"]].itertuples(index=False):
        names = rules_of_feature.get(f, [])
        feat_rows.append({
            "level": "feature", "group": g, "feature": f, "model_mean_abs_log_odds": float(w),
            "model_share": float(w) / total if total > 0 else np.nan,
            "rules_mean_abs_log_odds": np.nan,
            "rules": "; ".join(names), "rule_points": _rule_points_text(names, comparison),
        })

    def block(rows: list[dict]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=list(WEIGHT_COLUMNS))
        return frame.sort_values(["model_mean_abs_log_odds", "group", "feature"],
                                 ascending=[False, True, True], kind="mergesort")

    return pd.concat([block(group_rows), block(feat_rows)], ignore_index=True)


# --------------------------------------------------------------------------- what-if


@dataclass(frozen=True)
class Rescored:
    """`rescore_with_overrides` result: `changes` (rule, manual_points, new_points),
    `metrics` (one row per version `manual` / `edited`: roc_auc, pr_auc, hot_n,
    hot_conversions, hot_rate, hot_ci_low, hot_ci_high), `bands` (band_set, band, version,
    n, conversions, rate, ci_low, ci_high; long format, bands lowest first)."""

    changes: pd.DataFrame
    metrics: pd.DataFrame
    bands: pd.DataFrame

    def compare_bands(self) -> pd.DataFrame:
        """`bands` side by side: index (band_set, band), columns `n_manual`, `n_edited`,
        `rate_manual`, `rate_edited`, `ci_low_*`, `ci_high_*` (bands in their order)."""
        key = ["band_set", "band"]
        b = self.bands.drop(columns="conversions")
        wide = (b[b["version"] == "manual"].drop(columns="version")
                .merge(b[b["version"] == "edited"].drop(columns="version"), on=key,
                       how="left", suffixes=("_manual", "_edited")))
        cols = [f"{k}_{v}" for k in ("n", "rate", "ci_low", "ci_high")
                for v in ("manual", "edited")]
        return wide.set_index(key)[cols]


def rescore_with_overrides(
    rule_x: pd.DataFrame,
    y: ArrayLike,
    ruleset: RuleSet,
    overrides: Mapping[str, float],
    hot_set: str = HOT_SET,
) -> Rescored:
    """Score `rule_x` (the rules' raw inputs, `models.rules.rule_features`, e.g. of the test
    snapshots) with the manual points and with `overrides` (rule name -> new points), and
    compare ROC/PR AUC and conversion per band (the rule set's own point thresholds)."""
    unknown = [k for k in overrides if k not in ruleset.names]
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(k, ruleset.names, n=1) for k in unknown]
        shown = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                          for k, h in zip(unknown, hints, strict=True))
        raise InputError(f"overrides name no rule: {shown}")
    for k, v in overrides.items():
        if _finite(v) is None or isinstance(v, bool):
            raise InputError(f"override for {k!r} must be a finite number; got {v!r}")
    missing = [n for n in ruleset.names if n not in rule_x.columns]
    if missing:
        raise InputError(f"rule_x lacks the rule column(s) {missing}")
    edited = ruleset.with_points({k: float(v) for k, v in overrides.items()})
    if not ruleset.bands:
        raise InputError("the rule set has no `bands`, so there is no band to compare")
    X = rule_x[ruleset.names].to_numpy(dtype=float)
    yy = np.asarray(y, dtype=float).ravel()
    versions = {"manual": X @ ruleset.points, "edited": X @ edited.points}
    bandings = {v: {b.set_name: b for b in ruleset.bands} for v in versions}
    perf = performance_report(yy, versions, bandings, hot_set=hot_set)
    metrics, bands = [], []
    for version, e in perf["scorers"].items():
        hot = e.get("hot") or {}
        metrics.append({"version": version, "roc_auc": e["roc_auc"], "pr_auc": e["pr_auc"],
                        "hot_n": hot.get("n"), "hot_conversions": hot.get("conversions"),
                        "hot_rate": hot.get("rate"), "hot_ci_low": hot.get("ci_low"),
                        "hot_ci_high": hot.get("ci_high")})
        for set_name, stats in e["bands"].items():
            for band, s in stats.items():
                bands.append({"band_set": set_name, "band": band, "version": version,
                              **{k: s[k] for k in ("n", "conversions", "rate", "ci_low",
                                                   "ci_high")}})
    changes = pd.DataFrame(
        [{"rule": k, "manual_points": float(dict(zip(ruleset.names, ruleset.points,
                                                      strict=True))[k]),
          "new_points": float(v)} for k, v in overrides.items()],
        columns=["rule", "manual_points", "new_points"])
    return Rescored(changes=changes, metrics=pd.DataFrame(metrics).set_index("version"),
                    bands=pd.DataFrame(bands))


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _plot_points(comparison: pd.DataFrame) -> bytes:
    from matplotlib.lines import Line2D

    c = comparison.reset_index(drop=True)
    n = len(c)
    fig, ax = _figure(7.6, 1.4 + 0.32 * n)
    y = np.arange(n)[::-1]
    values = np.concatenate([c[k].to_numpy(dtype=float) for k in
                             ("manual_points", "learned_points", "ci_low", "ci_high")])
    values = values[np.isfinite(values)]
    big = values.size and np.max(np.abs(values)) > 100
    for yi, row in zip(y, c.itertuples(index=False), strict=True):
        color = VERDICT_COLORS.get(row.verdict, "#555555")
        lo, hi, lp = _finite(row.ci_low), _finite(row.ci_high), _finite(row.learned_points)
        if lo is not None and hi is not None:
            ax.hlines(yi, lo, hi, color=color, lw=2, alpha=0.7)
        if lp is not None:
            ax.plot([lp], [yi], "o", color=color, ms=6)
        ax.plot([row.manual_points], [yi], marker="D", mfc="none", mec="black", ms=6, ls="none")
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_yticks(y, c["rule"].tolist(), fontsize="small")
    ax.set_ylim(-0.8, n - 0.2)
    if big:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("Points per unit of the rule" + (" (symmetric log scale)" if big else ""))
    ax.set_title("Manual points vs what the data gives each rule (95 % interval)")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="D", mfc="none", mec="black", ls="none", label="manual")]
    handles += [Line2D([], [], marker="o", color=col, label=f"learned: {v}")
                for v, col in VERDICT_COLORS.items() if v in set(c["verdict"])]
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncols=3)
    return _png(fig)


_BACKTEST_STYLE = {"served_model": ("#1f77b4", "-", "model"),
                   "manual_rules": ("#d62728", "--", "manual rules"),
                   "random": ("#7f7f7f", ":", "at random")}


def plot_backtest(backtest: pd.DataFrame) -> bytes:
    """Conversions reached per week's calls, one line per scorer (random with its 5-95 %
    band), from `models.backtest.capacity_backtest`."""
    fig, ax = _figure(6.4, 3.6)
    for scorer, part in backtest.groupby("scorer", sort=False):
        color, dash, label = _BACKTEST_STYLE.get(str(scorer), ("#2ca02c", "-.", str(scorer)))
        part = part.sort_values("capacity")
        ax.plot(part["capacity"], part["reached"], dash, color=color, marker="o", ms=3,
                label=label)
        if scorer == "random" and "reached_p05" in part:
            ax.fill_between(part["capacity"], part["reached_p05"], part["reached_p95"],
                            color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("Calls per week (capacity)")
    ax.set_ylabel("Conversions reached")
    weeks, total = backtest.attrs.get("weeks"), backtest.attrs.get("converted_leads")
    ax.set_title(f"Who to call: {weeks} weeks of the test period, {total} leads converted")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def backtest_section(backtest: pd.DataFrame, plots_dir: str) -> str:
    """The rules_summary.md section of the decision backtest."""
    wide = backtest.pivot_table(index="capacity", columns="scorer", values="reached",
                                aggfunc="first")
    cols = [c for c in ("served_model", "manual_rules", "random") if c in wide.columns]
    names = {c: _BACKTEST_STYLE[c][2] for c in cols}
    lines = [
        "", "## Backtest of the decision: who sales would have reached", "",
        f"Each week of the test period ({backtest.attrs.get('weeks')} weeks), sales call the N "
        "best-scored open leads not called before; a call reaches a conversion when that lead "
        "converts within the outcome horizon. "
        f"{backtest.attrs.get('converted_leads')} test leads converted while open. Random is "
        "the mean of 20 seeded orders.", "",
        "| calls per week | " + " | ".join(names[c] for c in cols) + " |",
        "|---:|" + "---:|" * len(cols),
    ]
    for cap, row in wide.iterrows():
        lines.append(f"| {int(cap):,} | " + " | ".join(f"{row[c]:,.1f}" for c in cols) + " |")
    lines += ["", f"![decision backtest]({plots_dir}/{PLOT_BACKTEST})", ""]
    return "\n".join(lines)


def _plot_bands(set_name: str, performance: Mapping[str, Any]) -> bytes | None:
    from matplotlib.ticker import PercentFormatter

    scorers = [s for s, e in performance["scorers"].items() if set_name in e["bands"]]
    if not scorers:
        return None
    bands = list(dict.fromkeys(b for s in scorers
                               for b in performance["scorers"][s]["bands"][set_name]))
    fig, ax = _figure(7.6, 4.4)
    width = 0.8 / len(scorers)
    x = np.arange(len(bands))
    top = 0.0
    for i, s in enumerate(scorers):
        stats = performance["scorers"][s]["bands"][set_name]
        pos = x - 0.4 + width * (i + 0.5)
        rates = np.array([(stats.get(b) or {}).get("rate") or 0.0 for b in bands], dtype=float)
        low = np.array([(stats.get(b) or {}).get("ci_low") or r for b, r in zip(bands, rates,
                                                                                   strict=True)])
        high = np.array([(stats.get(b) or {}).get("ci_high") or r for b, r in zip(bands, rates,
                                                                                     strict=True)])
        ax.bar(pos, rates, width=width * 0.92, color=COLORS.get(s, "#7b4ea3"), alpha=0.85,
               label=_label(s))
        err = [np.clip(rates - low, 0, None), np.clip(high - rates, 0, None)]
        ax.errorbar(pos, rates, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
        for p, b, h in zip(pos, bands, high, strict=True):
            ax.annotate(f"n={(stats.get(b) or {}).get('n', 0):,}", (p, h), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=6,
                        rotation=90)
        top = max(top, float(np.max(high)) if high.size else 0.0)
    base = performance.get("base_rate")
    if base is not None:
        ax.axhline(base, ls=":", color="#777777", label=f"average {100 * base:.1f} %")
    ax.set_xticks(x, bands)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, min(1.0, top * 1.3 + 0.04))
    ax.set_ylabel("Conversion rate (95 % Wilson interval)")
    ax.set_title(f"Conversion by band: {set_name} (test split)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return _png(fig)


def _plot_weights(weights: pd.DataFrame) -> bytes | None:
    g = weights[weights["level"] == "group"].reset_index(drop=True)
    if g.empty:
        return None
    fig, ax = _figure(7.6, 1.4 + 0.36 * len(g))
    y = np.arange(len(g))[::-1]
    model = g["model_mean_abs_log_odds"].to_numpy(dtype=float)
    rules = np.nan_to_num(g["rules_mean_abs_log_odds"].to_numpy(dtype=float))
    ax.barh(y + 0.2, model, height=0.38, color=COLORS["lightgbm"], label=LABELS["lightgbm"])
    ax.barh(y - 0.2, rules, height=0.38, color=COLORS["learned_rules"],
            label="Learned-point rules touching the group")
    ax.set_yticks(y, g["group"].tolist(), fontsize="small")
    ax.set_xlabel("Mean |contribution| per lead (log-odds, test split)")
    ax.set_title("Where the model puts its weight, next to the rules")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return _png(fig)


def render_plots(
    comparison: pd.DataFrame,
    performance: Mapping[str, Any],
    weights: pd.DataFrame | None = None,
) -> dict[str, bytes]:
    """PNG bytes by file name: `PLOT_POINTS`, one `band_plot_name(set)` per band set in
    `performance`, `PLOT_WEIGHTS` when `weights` has group rows, `PLOT_BACKTEST` when
    `performance` has a decision backtest. Deterministic."""
    import matplotlib
    import matplotlib.style

    plots: dict[str, bytes] = {}
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context({"font.size": 9, "axes.titlesize": 10, "savefig.dpi": _DPI}),
    ):
        if len(comparison):
            plots[PLOT_POINTS] = _plot_points(comparison)
        sets = list(dict.fromkeys(s for e in performance["scorers"].values() for s in e["bands"]))
        for set_name in sets:
            png = _plot_bands(set_name, performance)
            if png is not None:
                plots[band_plot_name(set_name)] = png
        if weights is not None:
            png = _plot_weights(weights)
            if png is not None:
                plots[PLOT_WEIGHTS] = png
        if performance.get("decision_backtest"):
            plots[PLOT_BACKTEST] = plot_backtest(backtest_frame(performance))
        groups = (performance.get("decay") or {}).get("groups") or []
        if groups:
            plots[PLOT_DECAY] = plot_decay(groups)
    return plots


def plot_decay(groups: Sequence[Mapping[str, Any]]) -> bytes:
    """Weight of an action by its age per intent group: learned half-life with its interval,
    and the feature code's configured half-life (`decay_<group>` features)."""
    n = len(groups)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, _ = _figure(3.0 * cols, 2.4 * rows + 0.4)
    fig.clear()
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    age = np.linspace(0, 120, 200)
    for ax, g in zip(axes, groups, strict=False):
        h, lo, hi = g["half_life_days"], g["ci_low"], g["ci_high"]
        ax.fill_between(age, 2 ** (-age / lo), 2 ** (-age / hi), color="#1f77b4", alpha=0.2,
                        lw=0)
        ax.plot(age, 2 ** (-age / h), color="#1f77b4", label=f"learned {h:.0f} d")
        conf = g.get("configured_half_life_days")
        if conf:
            ax.plot(age, 2 ** (-age / conf), "--", color="#7f7f7f",
                    label=f"configured {conf:g} d")
        ax.set_title(str(g["group"]), fontsize="small")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel("Age of the action (days)", fontsize="small")
    fig.supylabel("Weight", fontsize="small")
    return _png(fig)


def decay_section(decay: Mapping[str, Any], plots_dir: str) -> str:
    """The rules_summary.md section on learned decay."""
    groups = decay.get("groups") or []
    if not groups:
        return ""
    lines = ["", "## How fast interest fades, per kind of action", "",
             "Half-life: the age at which an action carries half its weight, fitted per intent "
             "group on the training split (a logistic model on the group's decayed count "
             "beside its all-time count), 95 % interval from a lead bootstrap. *Helps*: on the "
             "calibration split, the learned half-life predicts better than the configured "
             "one.", "",
             "| group | learned half-life (days) | 95 % interval | configured | helps | "
             "snapshots with such actions |", "|---|---:|---|---:|---|---:|"]
    for g in groups:
        helps = {True: "yes", False: "no", None: "n/a"}[g.get("helps")]
        lines.append(f"| {g['group']} | {g['half_life_days']:.1f} | {g['ci_low']:.1f} to "
                     f"{g['ci_high']:.1f} | {g.get('configured_half_life_days') or '':} | "
                     f"{helps} | {g['n_with_events']:,} |")
    for m in decay.get("manual_inactivity") or []:
        implied = m.get("implied_half_life_days")
        said = (f"implies a half-life of {implied:.0f} days for a lead with "
                f"{m['typical_points']:.0f} points (the median active lead)" if implied
                else "cannot be read as a half-life (the typical lead has too few points)")
        lines.append("")
        lines.append(f"Your rule *{m['rule']}* ({m['points']:+g} after {m['after_days']:g} "
                     f"days without activity) {said}; the data's half-lives per group are "
                     "above.")
    if decay.get("faded_rules"):
        lines += ["", "rules.learned.yaml makes these rules fade at their group's learned "
                  "half-life: " + ", ".join(decay["faded_rules"]) + "."]
    lines += ["", f"![decay by group]({plots_dir}/{PLOT_DECAY})", ""]
    return "\n".join(lines)


def backtest_frame(performance: Mapping[str, Any]) -> pd.DataFrame:
    """The decision backtest of `performance` (as the rules stage stores it) as a frame."""
    bt = performance["decision_backtest"]
    frame = pd.DataFrame(bt["rows"])
    frame.attrs.update(weeks=bt["weeks"], converted_leads=bt["converted_leads"])
    return frame


# --------------------------------------------------------------------------- summary


def _pct(x: Any, digits: int = 1) -> str:
    return pct(x, digits, missing="n/a")


def _num(x: Any, digits: int = 3) -> str:
    f = _finite(x)
    return "n/a" if f is None else f"{f:.{digits}f}"


def _ci(lo: Any, hi: Any, pct: bool = True) -> str:
    if _finite(lo) is None or _finite(hi) is None:
        return "n/a"
    return f"{_pct(lo)} – {_pct(hi)}" if pct else f"{_pts(lo)} … {_pts(hi)}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def render_summary(
    comparison: pd.DataFrame,
    performance: Mapping[str, Any],
    *,
    ruleset: RuleSet | None = None,
    learning: Mapping[str, Any] | None = None,
    weights: pd.DataFrame | None = None,
    plots: Sequence[str] = (),
    plots_dir: str = "rules_plots",
    n_wrong: int = 5,
) -> str:
    """`reports/rules_summary.md`: the headline (the most wrong rules, by how much, which
    way; ROC AUC and hot leads of every scorer), the comparison table, performance and band
    tables, the model's weights by group, and links to the plots (relative to the report)."""
    lines = ["# Manual point rules vs what the data says", ""]
    learning = learning or {}
    scorers = performance["scorers"]
    facts = []
    if learning.get("n_rows"):
        facts.append(f"points learned on {learning['n_rows']:,} training snapshots of "
                     f"{learning['n_leads']:,} leads ({learning['positives']:,} converted)")
    facts.append(f"judged on {performance['n']:,} test snapshots "
                 f"({performance['positives']:,} converted, {_pct(performance['base_rate'])})")
    if _finite(learning.get("pdo")) is not None:
        facts.append(f"on the learned scale {learning['pdo']:.1f} points double the odds of "
                     "converting")
    lines += ["*" + "; ".join(facts) + ".*", "", "## Headline", ""]

    wrong = most_wrong(comparison)
    if wrong.empty:
        lines.append("- No rule is clearly wrong: every rule is about right or the data "
                     "cannot tell.")
    for i, row in enumerate(wrong.head(n_wrong).to_dict("records")):
        lead = "**Most wrong: `{}`**" if i == 0 else "`{}`"
        lines.append(
            f"- {lead.format(row['rule'])} {_direction(row)}. Manual "
            f"{_pts(row['manual_points'], 0)} points {_unit(ruleset, row['rule'])}, the data "
            f"gives {_pts(row['learned_points'])} (95 % interval "
            f"{_ci(row['ci_low'], row['ci_high'], pct=False)}): off by "
            f"{abs(row['gap']):.0f} points, {row['miss']:.0f} outside the interval."
            + (f" Why: {row['why']}" if row.get("why") else ""))
    if len(wrong) > n_wrong:
        lines.append(f"- {len(wrong) - n_wrong} more rule(s) are off; see the table below.")
    signs = wrong[wrong["verdict"] == WRONG_SIGN]["rule"].tolist()
    if signs:
        lines.append(f"- Wrong sign (the data says the opposite): {', '.join(signs)}.")
    unknown = comparison[comparison["verdict"] == NO_EVIDENCE]["rule"].tolist()
    if unknown:
        lines.append(f"- No evidence either way (keep or drop, the data cannot tell): "
                     f"{', '.join(unknown)}.")
    aucs = [f"{e['label']} {_num(e['roc_auc'])}" for e in scorers.values()]
    lines.append(f"- Ranking leads on the test split (ROC AUC): {', '.join(aucs)}.")
    hot = [f"{e['label']} {e['hot']['n']:,} ({e['hot']['conversions']:,} convert, "
           f"{_pct(e['hot']['rate'])})" for e in scorers.values() if e.get("hot")]
    if hot:
        lines.append(f"- Test snapshots each scorer puts in its top "
                     f"`{performance['hot_band_set']}` band (hot), and how many of them "
                     f"convert: {'; '.join(hot)}.")
    lines.append("")

    lines += ["## Rule by rule", "",
              "Points per unit of the rule (per event, once for a matching field, per step of "
              "inactivity). Learned points are conditional on the other rules; `lift` is the "
              "rule on its own (conversion when it fires over conversion when it does not).",
              ""]
    has_why = "why" in comparison.columns
    rows = [[r["rule"], _pts(r["manual_points"], 0), _pts(r["learned_points"]),
             _ci(r["ci_low"], r["ci_high"], pct=False), _pct(r["support"]),
             _num(r["lift"], 2), r["verdict"], *([r["why"]] if has_why else [])]
            for r in comparison.to_dict("records")]
    lines += _md_table(["rule", "manual", "learned", "95 % interval", "fires on", "lift",
                        "verdict", *(["why"] if has_why else [])], rows)
    lines.append("")

    lines += ["## Side by side on the test split", ""]
    rows = []
    for e in scorers.values():
        h = e.get("hot") or {}
        rows.append([e["label"], _num(e["roc_auc"]), _num(e["pr_auc"]),
                     f"{h.get('n', 0):,}", f"{h.get('conversions', 0):,}", _pct(h.get("rate")),
                     _ci(h.get("ci_low"), h.get("ci_high")), _pct(h.get("share_of_conversions"))])
    lines += _md_table(["scorer", "ROC AUC", "PR AUC", "hot leads", "converted", "hot rate",
                        "95 % interval", "share of all conversions"], rows)
    lines.append("")
    sets = list(dict.fromkeys(s for e in scorers.values() for s in e["bands"]))
    for set_name in sets:
        lines += [f"### Conversion by band: {set_name}", ""]
        present = [s for s, e in scorers.items() if set_name in e["bands"]]
        bands = list(dict.fromkeys(b for s in present for b in scorers[s]["bands"][set_name]))
        rows = []
        for b in bands:
            row = [b]
            for s in present:
                st = scorers[s]["bands"][set_name].get(b)
                row.append("—" if not st else
                           f"{_pct(st['rate'])} ({_ci(st['ci_low'], st['ci_high'])}), "
                           f"n={st['n']:,}")
            rows.append(row)
        lines += _md_table(["band", *[scorers[s]["label"] for s in present]], rows)
        lines.append("")

    if weights is not None and (weights["level"] == "group").any():
        g = weights[weights["level"] == "group"]
        lines += ["## The model's own weights", "",
                  "Mean |contribution| per lead in log-odds (LightGBM's per-lead "
                  "contributions on test snapshots), by feature group, next to the learned-point "
                  "rules that touch the same behaviour.", ""]
        rows = [[r["group"], _num(r["model_mean_abs_log_odds"]), _pct(r["model_share"]),
                 _num(r["rules_mean_abs_log_odds"]), r["rules"] or "—"]
                for r in g.to_dict("records")]
        lines += _md_table(["group", "model", "share", "learned rules", "rules"], rows)
        lines.append("")

    if plots:
        lines += ["## Plots", ""]
        titles = {PLOT_POINTS: "Manual vs learned points per rule",
                  PLOT_WEIGHTS: "The model's weights by group, next to the rules"}
        for name in plots:
            title = titles.get(name) or "Conversion by band: " + name[
                len("conversion_by_band_"):-len(".png")]
            lines.append(f"- [{title}]({plots_dir}/{name})")
        lines.append("")
    lines += ["## Files", "",
              "- `rules_comparison.csv`: the rule-by-rule table.",
              "- `rules.learned.yaml`: the suggested rule set (learned points, thresholds that "
              "hit the model's band targets), in the rules.yaml format. Review before use.",
              "- `rules_performance.json`: the side-by-side numbers.",
              "- `rules_vs_model_weights.csv`: the model's weights per group and feature, with "
              "the rules touching each.",
              "- `notebooks/learned_vs_manual.ipynb`: try your own points.", ""]
    return "\n".join(lines)
