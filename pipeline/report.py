"""The self-contained HTML model report and its plots.

`render_plots(ctx)` draws the evaluation plots as PNG bytes by file name, for the caller
to log (e.g. to MLflow); `render_report(ctx)` returns one HTML page with inline CSS and
the same plots embedded as base64 `<img>` tags: no external URL, no JavaScript. The page is
rendered from the Jinja2 templates in `pipeline/templates/` (autoescape on): the skeleton
`report.html.j2` and its CSS, shared macros in `_macros.html.j2`, one template per section;
the `_*_section` functions here compute each section's values and render its template.

What the page promises its reader: every headline number names the split it comes from
(the calibration error is the test split's, the calibration split's is shown beside it);
counts say whether they are leads or snapshot rows (a lead has one snapshot per as-of age);
a band's test cell is amber only when its promise is broken (the promised conversion above
the test interval), green when the band beats it, uncoloured when the promise is kept.

Inputs are what `models.metrics` and `models.bands` produce (curve frames, Wilson
intervals, band tables), gathered in a `ReportContext`. Nothing here reads or writes a
file, and the same context always gives the same bytes: plots are drawn on
`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot state), under
matplotlib's default style whatever the user's matplotlibrc says, and saved without the
`Software` PNG metadata.

Plot names: `roc.png`, `pr.png`, `calibration.png`, `gains.png` (when the curve kind has
at least one scorer), `bands_<set>.png` per band set with test data, and
`feature_importance.png` when importances are given.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.bands import score_1_99
from models.metrics import wilson_interval
from models.settings import InputError
from pipeline.console import finite

__all__ = ["CURVE_COLUMNS", "ReportContext", "promise_verdicts", "render_plots",
           "render_report"]

#: Columns each curve kind needs, as produced by `models.metrics`.
CURVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "roc": ("fpr", "tpr"),
    "pr": ("precision", "recall"),
    "calibration": ("mean_predicted", "observed_rate", "ci_low", "ci_high"),
    "gains": ("share_contacted", "share_captured", "lift"),
}
IMPORTANCE_COLUMNS = ("feature", "group", "mean_abs_contribution")
TOP_FEATURES = 20
TOP_SUSPECTS = 15

# Scorers in display order, with their labels and colours; unknown scorers follow, sorted.
_SCORER_LABELS = {
    "served": "Served model",
    "lightgbm": "LightGBM model",
    "logreg": "Logistic regression",
    "lightgbm_basic": "LightGBM, basic features",
    "learned_rules": "Learned rules",
    "rules": "Manual rules",
    "truth": "Truth (generator's probability)",
}
_SCORER_COLORS = {
    "served": "#111111",
    "lightgbm": "#1f5fa8",
    "logreg": "#e07b00",
    "lightgbm_basic": "#7fa7d4",
    "learned_rules": "#2e8b57",
    "rules": "#b22222",
    "truth": "#333333",
}
_EXTRA_COLORS = ("#7b4ea3", "#8c564b", "#d1479b", "#17becf", "#bcbd22")
# The "model" of the headline, first found: what is served, else the LightGBM model...
_MODELS = ("served", "lightgbm", "logreg", "learned_rules")
_AMBER = "#f0a202"  # a broken promise
_GREEN = "#2e8b57"  # a promise beaten
_DPI = 110

# (metric key, label, format, better): format is "dec3", "dec2", "pct" or "int";
# better is "high", "low" or None (no best value is marked).
_METRIC_ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("roc_auc", "ROC AUC", "dec3", "high"),
    ("roc_auc_ci_low", "ROC AUC, 95 % interval low (lead bootstrap)", "dec3", None),
    ("roc_auc_ci_high", "ROC AUC, 95 % interval high", "dec3", None),
    ("pr_auc", "PR AUC (average precision)", "dec3", "high"),
    ("log_loss", "Log-loss", "dec3", "low"),
    ("log_loss_ci_low", "Log-loss, 95 % interval low (lead bootstrap)", "dec3", None),
    ("log_loss_ci_high", "Log-loss, 95 % interval high", "dec3", None),
    ("brier", "Brier score", "dec3", "low"),
    ("ece", "ECE (calibration error)", "dec3", "low"),
    ("ece_uniform", "ECE, equal-width bins", "dec3", "low"),
    ("calibration_slope", "Calibration slope (1 = ideal)", "dec3", None),
    ("calibration_intercept", "Calibration intercept (0 = ideal)", "dec3", None),
    ("lift_at_10", "Lift in the top 10 %", "dec2", "high"),
    ("capture_at_10", "Capture in the top 10 %", "pct", "high"),
    ("lift_at_20", "Lift in the top 20 %", "dec2", "high"),
    ("capture_at_20", "Capture in the top 20 %", "pct", "high"),
    ("base_rate", "Base rate (share converted)", "pct", None),
    ("n", "Test snapshots (rows)", "int", None),
    ("positives", "Converted snapshots", "int", None),
)


@dataclass(frozen=True)
class ReportContext:
    """Everything the report shows; see the module docstring of `pipeline.report`.

    - `metrics`: scorer -> metric -> value (`models.metrics.evaluate_scores` keys).
    - `curves`: kind (`roc`, `pr`, `calibration`, `gains`) -> scorer -> the frame of
      `roc_curve_frame`, `pr_curve_frame`, `calibration_frame`, `gains_frame`.
    - `bands`: band set -> {"policy", "bands": [{name, min_propensity,
      promised_conversion, feasible?, calibration: {n, conversions, rate, ci_low,
      ci_high}, test: {...}}], "notes": [...]}, bands lowest first.
    - `leakage`: {"method", "suspects": [{column, score, reasons, excluded, safe}]} or None.
    - `calibration_summary`: {"method", "ece_before", "ece_after"} (may be empty).
    - `feature_importance`: columns feature, group, mean_abs_contribution, or None.
    - `notes`: warnings and remarks, one line each.
    - `split_counts`: split -> {"leads": distinct leads, "snapshots": rows} (e.g. the train
      summary's `split.leads` / `split.rows`); metrics count snapshots, so the report shows
      both, labelled.
    - `subscores`: the fit x engagement grid on the test split (`models.subscores.grid_report`:
      cells, breaks, ece), or empty.
    """

    title: str
    subtitle: str
    metrics: Mapping[str, Mapping[str, float]]
    curves: Mapping[str, Mapping[str, pd.DataFrame]]
    bands: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    leakage: Mapping[str, Any] | None = None
    calibration_summary: Mapping[str, Any] = field(default_factory=dict)
    feature_importance: pd.DataFrame | None = None
    notes: Sequence[str] = ()
    split_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    subscores: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, frames in self.curves.items():
            if kind not in CURVE_COLUMNS:
                raise InputError(
                    f"`curves` kind must be one of {sorted(CURVE_COLUMNS)}; got {kind!r}"
                )
            for scorer, frame in frames.items():
                _require_columns(frame, CURVE_COLUMNS[kind], f"curves[{kind!r}][{scorer!r}]")
        if self.feature_importance is not None:
            _require_columns(self.feature_importance, IMPORTANCE_COLUMNS, "feature_importance")
        for set_name, band_set in self.bands.items():
            rows = band_set.get("bands")
            if not isinstance(rows, Sequence) or not all(
                isinstance(b, Mapping) and "name" in b for b in rows
            ):
                raise InputError(
                    f"`bands[{set_name!r}]['bands']` must be a list of band dicts with a "
                    f"`name`; got {rows!r:.80}"
                )
        if isinstance(self.notes, str):
            raise InputError("`notes` must be a list of strings; got one string")


def _require_columns(frame: Any, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"`{what}` must be a DataFrame; got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"`{what}` must have columns {', '.join(columns)}; "
            f"missing {', '.join(missing)} (got {', '.join(map(str, frame.columns))})"
        )


# --------------------------------------------------------------------------- values


_num = finite  # a finite float, or None


def _fmt(value: Any, kind: str) -> str:
    x = _num(value)
    if x is None:
        return "—"
    if kind == "int":
        return f"{round(x):,}"
    if kind == "pct":
        return f"{100 * x:.1f} %"
    if kind == "dec2":
        return f"{x:.2f}"
    return f"{x:.3f}"


def _pcts(*values: float) -> list[str]:
    """Plain-words percentages: whole percent, one decimal when any value is below 10 %."""
    decimals = 1 if any(v < 0.1 for v in values) else 0
    return [f"{100 * v:.{decimals}f}" for v in values]


def _scorers(keys: Sequence[str]) -> list[str]:
    known = [s for s in _SCORER_LABELS if s in keys]
    return known + sorted(k for k in keys if k not in _SCORER_LABELS)


def _label(scorer: str) -> str:
    return _SCORER_LABELS.get(scorer, scorer)


def _color(scorer: str, extras: list[str]) -> str:
    if scorer in _SCORER_COLORS:
        return _SCORER_COLORS[scorer]
    if scorer not in extras:
        extras.append(scorer)
    return _EXTRA_COLORS[extras.index(scorer) % len(_EXTRA_COLORS)]


def _split_stats(split: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """n, conversions, rate, ci_low, ci_high of one split of a band; None without data.

    The Wilson interval is recomputed when the row lacks it but has n and conversions.
    """
    if not split:
        return None
    n = _num(split.get("n"))
    if n is None:
        return None
    n_int = int(round(n))
    conv = _num(split.get("conversions"))
    rate = _num(split.get("rate"))
    if rate is None and conv is not None and n_int > 0:
        rate = conv / n_int
    low, high = _num(split.get("ci_low")), _num(split.get("ci_high"))
    if (low is None or high is None) and conv is not None and n_int > 0:
        low, high = wilson_interval(int(round(conv)), n_int)
    if n_int == 0:
        rate = low = high = None
    return {
        "n": n_int,
        "conversions": None if conv is None else int(round(conv)),
        "rate": rate,
        "ci_low": low,
        "ci_high": high,
    }


def _promise_check(promised: float | None, test: Mapping[str, Any] | None) -> str | None:
    """ "below" / "above" when the promise lies outside the test interval, else None."""
    if promised is None or test is None or test["ci_low"] is None or test["ci_high"] is None:
        return None
    if promised > test["ci_high"]:
        return "below"  # the band converts below its promise: promise not kept
    if promised < test["ci_low"]:
        return "above"  # the band converts clearly above its promise
    return None


def _band_rows(band_set: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for band in band_set.get("bands", ()):
        test = _split_stats(band.get("test"))
        promised = _num(band.get("promised_conversion"))
        rows.append(
            {
                "name": str(band["name"]),
                "min_propensity": _num(band.get("min_propensity")),
                "promised": promised,
                "feasible": band.get("feasible", True) is not False,
                "calibration": _split_stats(band.get("calibration")),
                "test": test,
                "check": _promise_check(promised, test),
            }
        )
    return rows


def promise_verdicts(band_set: Mapping[str, Any]) -> dict[str, str | None]:
    """Band name -> "kept", "beaten" or "not kept" on the test split (None: no promise or no
    test data), as the report colours it; `band_set` as in `ReportContext.bands`."""
    out: dict[str, str | None] = {}
    for r in _band_rows(band_set):
        kept = r["promised"] is not None and r["test"] and r["test"]["rate"] is not None
        out[r["name"]] = ({"below": "not kept", "above": "beaten"}.get(r["check"], "kept")
                          if kept else None)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "set"


def _band_plot_names(ctx: ReportContext) -> dict[str, str]:
    """Band set -> plot file name; names that would collide after slugging get a suffix."""
    out: dict[str, str] = {}
    for set_name in ctx.bands:
        base = f"bands_{_slug(str(set_name))}"
        name, i = f"{base}.png", 2
        while name in out.values():
            name, i = f"{base}_{i}.png", i + 1
        out[set_name] = name
    return out


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def _unit_axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def _plot_roc(ctx: ReportContext, frames: Mapping[str, pd.DataFrame]) -> bytes:
    fig, ax = _figure(5.6, 5.0)
    extras: list[str] = []
    ax.plot([0, 1], [0, 1], ls=":", color="#999999", label="random order")
    for s in _scorers(list(frames)):
        auc = _num(ctx.metrics.get(s, {}).get("roc_auc"))
        label = _label(s) + ("" if auc is None else f" (AUC {auc:.3f})")
        ls = "--" if s == "truth" else "-"
        ax.plot(frames[s]["fpr"], frames[s]["tpr"], ls=ls, color=_color(s, extras), label=label)
    _unit_axes(ax, "False positive rate", "True positive rate", "ROC curve (test split)")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def _plot_pr(ctx: ReportContext, frames: Mapping[str, pd.DataFrame]) -> bytes:
    fig, ax = _figure(5.6, 5.0)
    extras: list[str] = []
    for s in _scorers(list(frames)):
        ap = _num(ctx.metrics.get(s, {}).get("pr_auc"))
        label = _label(s) + ("" if ap is None else f" (AP {ap:.3f})")
        ls = "--" if s == "truth" else "-"
        frame = frames[s]
        ax.plot(frame["recall"], frame["precision"], ls=ls, color=_color(s, extras), label=label)
    base = _base_rate(ctx)
    if base is not None:
        ax.axhline(base, ls=":", color="#999999", label=f"base rate {100 * base:.1f} %")
    _unit_axes(
        ax, "Recall (share of conversions found)", "Precision", "Precision-recall (test split)"
    )
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def _plot_calibration(frames: Mapping[str, pd.DataFrame]) -> bytes:
    fig, ax = _figure(5.6, 5.0)
    extras: list[str] = []
    ax.plot([0, 1], [0, 1], ls=":", color="#999999", label="perfect calibration")
    for s in _scorers(list(frames)):
        f = frames[s]
        obs = f["observed_rate"].to_numpy(float)
        err = np.vstack([obs - f["ci_low"].to_numpy(float), f["ci_high"].to_numpy(float) - obs])
        ax.errorbar(
            f["mean_predicted"],
            obs,
            yerr=np.clip(err, 0, None),
            marker="o",
            ms=4,
            capsize=3,
            ls="--" if s == "truth" else "-",
            color=_color(s, extras),
            label=_label(s),
        )
    _unit_axes(
        ax,
        "Predicted probability (bin mean)",
        "Observed conversion rate",
        "Calibration (test split, 95 % intervals)",
    )
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def _plot_gains(frames: Mapping[str, pd.DataFrame]) -> bytes:
    fig, (left, right) = _figure(10.0, 4.4, ncols=2)
    extras: list[str] = []
    left.plot([0, 1], [0, 1], ls=":", color="#999999", label="random order")
    right.axhline(1.0, ls=":", color="#999999", label="random order")
    for s in _scorers(list(frames)):
        f = frames[s]
        ls, color = ("--" if s == "truth" else "-"), _color(s, extras)
        x = np.concatenate([[0.0], f["share_contacted"].to_numpy(float)])
        y = np.concatenate([[0.0], f["share_captured"].to_numpy(float)])
        left.plot(x, y, ls=ls, color=color, label=_label(s))
        right.plot(f["share_contacted"], f["lift"], ls=ls, color=color, label=_label(s))
    _unit_axes(
        left,
        "Share of leads contacted (best first)",
        "Share of conversions found",
        "Cumulative gains (test split)",
    )
    left.legend(loc="lower right", fontsize="small")
    right.set_xlim(0, 1)
    right.set_ylim(bottom=0)
    right.set_xlabel("Share of leads contacted (best first)")
    right.set_ylabel("Lift (rate / base rate)")
    right.set_title("Lift (test split)")
    right.grid(True, alpha=0.3)
    return _png(fig)


def _plot_bands(set_name: str, rows: list[dict[str, Any]]) -> bytes:
    from matplotlib.ticker import PercentFormatter

    fig, ax = _figure(6.4, 4.2)
    x = np.arange(len(rows))
    rates = [
        r["test"]["rate"] if r["test"] and r["test"]["rate"] is not None else 0.0 for r in rows
    ]
    colors = [{"below": _AMBER, "above": _GREEN}.get(r["check"], "#1f5fa8") for r in rows]
    ax.bar(x, rates, width=0.6, color=colors, alpha=0.85)
    promised_shown = False
    for i, r in enumerate(rows):
        t = r["test"]
        if t and t["rate"] is not None and t["ci_low"] is not None:
            ax.errorbar(
                [i],
                [t["rate"]],
                yerr=[[max(t["rate"] - t["ci_low"], 0)], [max(t["ci_high"] - t["rate"], 0)]],
                color="black",
                capsize=5,
            )
        n = 0 if not t else t["n"]
        ax.annotate(
            f"n={n:,}",
            (i, 0),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
            color="white" if rates[i] > 0.08 else "black",
        )
        if r["promised"] is not None:
            ax.hlines(
                r["promised"],
                i - 0.38,
                i + 0.38,
                colors="black",
                linestyles="--",
                label="_nolegend_" if promised_shown else "promised (minimum)",
            )
            promised_shown = True
    n_all = sum(r["test"]["n"] for r in rows if r["test"])
    conv_all = sum(r["test"]["conversions"] or 0 for r in rows if r["test"])
    if n_all:
        ax.axhline(
            conv_all / n_all,
            ls=":",
            color="#777777",
            label=f"average {100 * conv_all / n_all:.1f} %",
        )
    ax.set_xticks(x, [r["name"] for r in rows])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, min(1.0, max([*rates, *(r["promised"] or 0 for r in rows)]) * 1.25 + 0.05))
    ax.set_ylabel("Conversion rate (95 % Wilson interval)")
    ax.set_title(f"Conversion by band: {set_name} (test split)")
    ax.grid(True, axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper left")
    return _png(fig)


def _top_features(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.loc[:, list(IMPORTANCE_COLUMNS)].copy()
    out["mean_abs_contribution"] = pd.to_numeric(out["mean_abs_contribution"], errors="coerce")
    out["feature"] = out["feature"].astype(str)
    out["group"] = out["group"].astype(str)
    out = out.sort_values(
        ["mean_abs_contribution", "feature"],
        ascending=[False, True],
        kind="mergesort",
        na_position="last",
    )
    return out.head(TOP_FEATURES).reset_index(drop=True)


def _plot_importance(top: pd.DataFrame) -> bytes:
    fig, ax = _figure(7.2, 1.2 + 0.3 * len(top))
    groups = sorted(top["group"].unique())
    palette = ("#1f5fa8", "#e07b00", "#2e8b57", "#b22222", "#7b4ea3", "#8c564b", "#17becf")
    color = {g: palette[i % len(palette)] for i, g in enumerate(groups)}
    y = np.arange(len(top))[::-1]
    values = top["mean_abs_contribution"].fillna(0.0).to_numpy(float)
    for g in groups:
        mask = (top["group"] == g).to_numpy()
        ax.barh(y[mask], values[mask], color=color[g], label=g)
    ax.set_yticks(y, top["feature"].tolist(), fontsize="small")
    ax.set_xlabel("Mean |contribution| (log-odds)")
    ax.set_title(f"Top {len(top)} features")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right", title="group")
    return _png(fig)


def _base_rate(ctx: ReportContext) -> float | None:
    for s in _scorers(list(ctx.metrics)):
        base = _num(ctx.metrics[s].get("base_rate"))
        if base is not None:
            return base
    return None


def render_plots(ctx: ReportContext) -> dict[str, bytes]:
    """PNG bytes by file name (see the module docstring); deterministic for a context."""
    import matplotlib
    import matplotlib.style

    plots: dict[str, bytes] = {}
    # Default style and fixed settings, restored on exit: the user's rc never leaks in.
    with (
        matplotlib.style.context("default"),
        matplotlib.rc_context({"font.size": 9, "axes.titlesize": 10, "savefig.dpi": _DPI}),
    ):
        drawers = {
            "roc": lambda f: _plot_roc(ctx, f),
            "pr": lambda f: _plot_pr(ctx, f),
            "calibration": _plot_calibration,
            "gains": _plot_gains,
        }
        for kind, draw in drawers.items():
            frames = {s: f for s, f in ctx.curves.get(kind, {}).items() if len(f)}
            if frames:
                plots[f"{kind}.png"] = draw(frames)
        for set_name, file_name in _band_plot_names(ctx).items():
            rows = _band_rows(ctx.bands[set_name])
            if any(r["test"] and r["test"]["n"] for r in rows):
                plots[file_name] = _plot_bands(str(set_name), rows)
        if ctx.feature_importance is not None and len(ctx.feature_importance):
            plots["feature_importance.png"] = _plot_importance(
                _top_features(ctx.feature_importance)
            )
        if ctx.subscores.get("cells"):
            plots[GRID_PLOT] = _plot_grid(ctx.subscores["cells"])
    return plots


GRID_PLOT = "fit_engagement.png"


def _plot_grid(cells: Sequence[Mapping[str, Any]]) -> bytes:
    """Heat map of conversion per fit grade (rows) x engagement level (columns)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = pd.DataFrame(cells)
    fits = sorted(frame["fit"].unique())
    levels = sorted(frame["engagement"].unique(), reverse=True)
    rate = frame.pivot(index="fit", columns="engagement", values="rate").loc[fits, levels]
    n = frame.pivot(index="fit", columns="engagement", values="n").loc[fits, levels]
    fig = Figure(figsize=(5.2, 4.0), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(rate.to_numpy(dtype=float), cmap="Blues", vmin=0)
    for i in range(len(fits)):
        for j in range(len(levels)):
            r, k = rate.iat[i, j], int(n.iat[i, j])
            text = "—" if not k else f"{100 * r:.1f} %\n(n={k:,})"
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="white" if k and r > 0.6 * np.nanmax(rate.to_numpy()) else "black")
    ax.set_xticks(range(len(levels)), [f"engagement {e}" for e in levels], fontsize="small")
    ax.set_yticks(range(len(fits)), [f"fit {f}" for f in fits], fontsize="small")
    ax.set_title("Conversion per fit x engagement cell (test snapshots)")
    fig.colorbar(im, ax=ax, shrink=0.8, format=lambda x, _: f"{100 * x:.0f} %")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


# --------------------------------------------------------------------------- html

_TEMPLATES: Any = None


def _env() -> Any:
    """The Jinja2 environment of `pipeline/templates` (autoescape on, made once)."""
    global _TEMPLATES
    if _TEMPLATES is None:
        from jinja2 import Environment, PackageLoader, StrictUndefined

        _TEMPLATES = Environment(
            loader=PackageLoader("pipeline", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=StrictUndefined,
        )
    return _TEMPLATES


def _render(template: str, **values: Any) -> Any:
    """One template of `pipeline/templates`, as markup safe to insert into another."""
    from markupsafe import Markup

    return Markup(_env().get_template(template).render(**values).strip("\n"))


_GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "ROC AUC",
        "The chance that a randomly chosen lead that converted scores higher than a "
        "randomly chosen lead that did not. 0.5 is a coin toss, 1.0 a perfect ranking.",
    ),
    (
        "PR AUC (average precision)",
        "How precise the list stays as you go down it to find "
        "more conversions; compare it with the base rate, which is what random order gives.",
    ),
    (
        "Log-loss",
        "How surprised the model is by what actually happened, averaged over leads. "
        "Lower is better; it punishes confident wrong predictions hard.",
    ),
    (
        "Brier score",
        "The mean squared gap between the predicted probability and the outcome "
        "(0 or 1). Lower is better.",
    ),
    (
        "ECE (expected calibration error)",
        "The average gap between predicted and observed "
        "conversion, over 10 bins holding a tenth of the snapshots each (by predicted "
        "probability). 0.02 means predictions are off by about 2 percentage points. "
        "\u201cECE, equal-width bins\u201d uses 10 bins of equal width on 0\u20131 instead.",
    ),
    (
        "Lift",
        "Conversion rate among the top-scored leads divided by the average rate. Lift 3 "
        "in the top 10 % means those leads convert three times as often as average.",
    ),
    (
        "Capture",
        "The share of all conversions found among the top-scored leads, e.g. capture "
        "40 % in the top 10 %.",
    ),
    (
        "95 % interval (Wilson)",
        "The range of conversion rates compatible with what was "
        "observed; small bands have wide intervals.",
    ),
    (
        "Score 1–99",
        "score = the probability in whole percent, rounded down and kept between 1 and 99: "
        "a lead scored 20 converts 20 to 21 times in 100 within the horizon, and a band "
        "holds exactly the leads scored at or above its min score.",
    ),
    ("Test split", "Leads held out from training and calibration; the model never saw them."),
    (
        "Snapshot",
        "One lead as of one moment (its as-of date), with the features known then and whether "
        "it converted within the horizon after it. A lead is seen at several ages, so a split "
        "holds more snapshots (rows) than leads; metrics and band counts are per snapshot.",
    ),
)



def _cell(text: str, cls: str | None = None) -> dict[str, str | None]:
    return {"text": text, "cls": cls}


def _figure_of(plots: Mapping[str, bytes], name: str, alt: str, caption: str) -> dict | None:
    """An embedded PNG for the `figure` macro, or None when the plot was not drawn."""
    if name not in plots:
        return None
    return {"data": base64.b64encode(plots[name]).decode("ascii"), "alt": alt, "caption": caption}


def _ci_text(stats: Mapping[str, Any] | None) -> str:
    """ "22.0 % (15.0–31.1 %)": the rate and its 95 % interval, one decimal."""
    if not stats or stats["rate"] is None:
        return "—"
    rate = f"{100 * stats['rate']:.1f} %"
    if stats["ci_low"] is None or stats["ci_high"] is None:
        return rate
    return f"{rate} ({100 * stats['ci_low']:.1f}–{100 * stats['ci_high']:.1f} %)"


def _headline_band(ctx: ReportContext) -> tuple[str, list[dict[str, Any]]] | None:
    if not ctx.bands:
        return None
    set_name = "temperature" if "temperature" in ctx.bands else next(iter(ctx.bands))
    return str(set_name), _band_rows(ctx.bands[set_name])


def _count(ctx: ReportContext, split: str, key: str) -> int | None:
    """`split_counts[split][key]` as an int (`leads` or `snapshots`), None when not given."""
    value = _num((ctx.split_counts.get(split) or {}).get(key))
    return None if value is None else int(round(value))


def _headline_model(ctx: ReportContext) -> str | None:
    return next((s for s in _MODELS if s in ctx.metrics), None)


def _headline(ctx: ReportContext) -> str:
    """The summary box: every number says which split it comes from."""
    items: list[str] = []
    model = _headline_model(ctx)
    m = ctx.metrics.get(model, {}) if model else {}

    picked = _headline_band(ctx)
    if picked is not None:
        _, rows = picked
        top = rows[-1] if rows else None
        n_test = sum(r["test"]["n"] for r in rows if r["test"])
        leads = _count(ctx, "test", "leads")
        if top and top["test"] and top["test"]["rate"] is not None:
            t = top["test"]
            if t["ci_low"] is not None and t["ci_high"] is not None:
                rate, low, high = _pcts(t["rate"], t["ci_low"], t["ci_high"])
                rate_text = f"{rate} % (95 % CI {low}–{high} %)"
            else:
                rate_text = f"{_pcts(t['rate'])[0]} %"
            of_leads = "" if leads is None else f" of {leads:,} leads"
            text = (
                f"On the test split, {top['name']} leads converted at {rate_text}, over "
                f"{n_test:,} snapshots{of_leads} the model never saw ({t['n']:,} snapshots "
                f"{top['name']})"
            )
            if top["promised"] is not None:
                (promised,) = _pcts(top["promised"])
                verdict = {"below": "not kept", "above": "beaten", None: "kept"}[top["check"]]
                text += f"; the promise of at least {promised} % was {verdict}"
            items.append(text + ".")

    auc = _num(m.get("roc_auc"))
    if auc is not None:
        rules_auc = _num(ctx.metrics.get("rules", {}).get("roc_auc"))
        if rules_auc is not None:
            if abs(auc - rules_auc) < 0.005:
                how = "the model ranks leads about as well as the manual rules"
            elif auc > rules_auc:
                how = "the model ranks leads better than the manual rules"
            else:
                how = "the manual rules rank leads better than the model"
            text = f"On the test split, {how}: ROC AUC {auc:.2f} vs {rules_auc:.2f}"
        else:
            text = (f"On the test split, the model ranks leads with a ROC AUC of {auc:.2f} "
                    "(0.5 = random, 1 = perfect)")
        truth = _num(ctx.metrics.get("truth", {}).get("roc_auc"))
        if truth is not None:
            text += (f"; the generator's own probability, which also sees its hidden state, "
                     f"reaches {truth:.2f}")
        items.append(text + ".")

    capture, lift, base = (_num(m.get(k)) for k in ("capture_at_10", "lift_at_10", "base_rate"))
    if capture is not None and lift is not None:
        (cap,) = _pcts(capture)
        text = (f"On the test split, calling the top 10 % of leads by score finds {cap} % of "
                "all conversions")
        text += f", {lift:.1f} times the average conversion rate"
        if base is not None:
            text += f" of {_pcts(base)[0]} %"
        items.append(text + ".")

    test_ece = _num(m.get("ece"))
    cal = ctx.calibration_summary or {}
    before, after = _num(cal.get("ece_before")), _num(cal.get("ece_after"))
    if test_ece is not None:
        text = (f"On the test split, predicted and observed conversion differ by "
                f"{100 * test_ece:.1f} percentage points on average (ECE)")
        if after is not None:
            text += f"; on the calibration split {100 * after:.1f} after calibration"
            if cal.get("method"):
                text += f" ({cal['method']})"
            if before is not None:
                text += f", {100 * before:.1f} before"
        items.append(text + ".")
    elif after is not None:
        text = (f"On the calibration split, predicted and observed conversion differ by "
                f"{100 * after:.1f} percentage points on average after calibration")
        if cal.get("method"):
            text += f" ({cal['method']})"
        if before is not None:
            text += f", {100 * before:.1f} before"
        items.append(text + "; no test-split calibration error was supplied.")

    if not items:
        items.append("No test metrics or bands were supplied for this run.")

    warnings = []
    for set_name, band_set in ctx.bands.items():
        for r in _band_rows(band_set):
            if r["check"] == "below":
                (promised,) = _pcts(r["promised"])
                warnings.append(
                    f"{set_name} / {r['name']}: promised at least {promised} %, but the test "
                    f"split shows {_ci_text(r['test'])}, below the promise."
                )
    return _render("summary.html.j2", items=items, warnings=warnings)


def _counts_text(ctx: ReportContext) -> str:
    leads, snaps = _count(ctx, "test", "leads"), _count(ctx, "test", "snapshots")
    if leads is None and snaps is None:
        return ""
    parts = [f"{leads:,} leads" if leads is not None else None,
             f"{snaps:,} snapshots (rows)" if snaps is not None else None]
    return ("Test split: " + ", ".join(p for p in parts if p) + ". Every metric below is "
            "computed over snapshots: a lead appears once per as-of age it was scored at.")


def _metrics_table(ctx: ReportContext) -> str:
    scorers = _scorers(list(ctx.metrics))
    if not scorers:
        return _render("metrics.html.j2", scorers=[])
    known = {k for k, *_ in _METRIC_ROWS}
    present = {k for s in scorers for k in ctx.metrics[s]}
    rows = [r for r in _METRIC_ROWS if r[0] in present]
    rows += [(k, k, "dec3", None) for k in sorted(present - known)]
    out = []
    for key, label, kind, better in rows:
        values = {s: _num(ctx.metrics[s].get(key)) for s in scorers}
        candidates = [v for s, v in values.items() if s != "truth" and v is not None]
        best = None
        if better and len(candidates) > 1:
            best = max(candidates) if better == "high" else min(candidates)
        out.append({"label": label, "cells": [
            _cell(_fmt(values[s], kind),
                  "num best" if s != "truth" and values[s] == best and best is not None else "num")
            for s in scorers]})
        if key == "n" and _count(ctx, "test", "leads") is not None:
            out.append({"label": "Test leads (distinct)", "cells": [
                _cell(_fmt(_count(ctx, "test", "leads"), "int"), "num") for _ in scorers]})
    note = (
        "All scorers are measured on the same test split, after calibration. Bold marks the "
        "best scorer on each row"
        + (
            "; the truth column scores leads with the generator's true probability "
            "(synthetic data only), which conditions on hidden state no model of the "
            "observable data has: a reference, not a bound."
            if "truth" in scorers
            else "."
        )
    )
    return _render("metrics.html.j2", scorers=[_label(s) for s in scorers], rows=out, note=note,
                   counts=_counts_text(ctx))


def _plots_section(plots: Mapping[str, bytes]) -> str:
    figures = [
        _figure_of(
            plots,
            "roc.png",
            "ROC curve",
            "ROC: how many converters (up) you find for each non-converter (right) as you go "
            "down the list. Higher and further left is better.",
        ),
        _figure_of(
            plots,
            "pr.png",
            "Precision-recall curve",
            "Precision-recall: the share of contacted leads that convert (precision) as you "
            "find more of all conversions (recall).",
        ),
        _figure_of(
            plots,
            "calibration.png",
            "Calibration plot",
            "Calibration: points on the dotted diagonal mean a predicted 30 % converts 30 % "
            "of the time. Bars are 95 % intervals.",
        ),
        _figure_of(
            plots,
            "gains.png",
            "Cumulative gains and lift",
            "Gains and lift: contacting the best-scored share of leads first, how many "
            "conversions you find (left) and how much better than random that is (right).",
        ),
    ]
    return _render("plots.html.j2", figures=[f for f in figures if f])


#: Band check -> (test cell class, its tooltip, the Check column's words).
_CHECKS: dict[str | None, tuple[str, str | None, str]] = {
    "below": ("num amber", "promise above the test interval", "⚠ promise not kept"),
    "above": ("num green", "test interval above the promise", "✓ converts above promise"),
    None: ("num", None, "promise kept"),
}


def _band_view(r: Mapping[str, Any]) -> dict[str, Any]:
    start = r["min_propensity"]
    cal, test = r["calibration"], r["test"]
    cls, title, words = _CHECKS[r["check"]]
    checks = []
    if r["check"] is not None or (r["promised"] is not None and test and test["rate"] is not None):
        checks.append(words)
    if not r["feasible"]:
        checks.append("target not reachable on calibration (see notes)")
    return {
        "name": r["name"],
        "start": "—" if start is None or not 0 <= start <= 1
        else f"≥ {start:.3f} ({int(score_1_99([start])[0])})",
        "promised": "—" if r["promised"] is None else f"≥ {_fmt(r['promised'], 'pct')}",
        "cal_n": _fmt(cal and cal["n"], "int"),
        "cal_ci": _ci_text(cal),
        "test_n": _fmt(test and test["n"], "int"),
        "test_ci": _ci_text(test),
        "test_cls": cls,
        "test_title": title,
        "check": "; ".join(checks) or "—",
    }


def weekly_entry_notes(band_set: Mapping[str, Any]) -> list[str]:
    """One sentence per band with simulated weekly entries (bands.json `weekly_entries`,
    models.bands.WeeklyBatches): new leads per weekly batch, mean and p10-p90."""
    sim = band_set.get("weekly_simulation") or {}
    out = []
    for band in band_set.get("bands", ()):
        stats = band.get("weekly_entries") or {}
        mean, p10, p90 = (_num(stats.get(k)) for k in ("mean", "p10", "p90"))
        if mean is None or p10 is None or p90 is None:
            continue
        text = (f"{band['name']}: {mean:.1f} leads newly enter per week in simulated weekly "
                f"scoring of the calibration leads (p10 {p10:.1f}, p90 {p90:.1f}")
        target, capacity = _num(stats.get("target")), _num(band.get("target"))
        if target is None:
            text += ")"
        elif capacity is None or abs(target - capacity) < 1e-9:
            text += f"; capacity {target:g})"
        else:  # scaled from the calibration window's inflow to the expected one
            inflow, expected = (_num(sim.get(k)) for k in ("inflow_per_week",
                                                           "expected_leads_per_week"))
            text += f"; capacity {capacity:g}, {target:.1f} at the simulated inflow"
            if inflow is not None and expected is not None:
                text += (f" of {inflow:.0f} leads per week against {expected:.0f} expected"
                         f" ({sim.get('inflow') or 'leads_per_week'})")
            text += ")"
        out.append(text + ".")
    if out and sim.get("simulated_weeks"):
        out.append(f"Weekly simulation: {int(sim['simulated_weeks'])} simulated weeks of "
                   f"{int(sim.get('leads') or 0):,} calibration leads, lead ages up to "
                   f"{_num(sim.get('max_age_days')) or 0:.0f} days; the mean is what the "
                   "capacity is fitted to.")
    return out


def _bands_section(ctx: ReportContext, plots: Mapping[str, bytes]) -> str:
    file_names = _band_plot_names(ctx)
    sets = [
        {
            "name": str(set_name),
            "policy": str(band_set["policy"]) if band_set.get("policy") else "",
            "rows": [_band_view(r) for r in _band_rows(band_set)],
            "notes": [str(n) for n in band_set.get("notes") or ()]
            + weekly_entry_notes(band_set),
            "figure": _figure_of(
                plots,
                file_names[set_name],
                f"Conversion by band: {set_name}",
                "Conversion by band on the test split, with 95 % Wilson intervals; dashed "
                "marks are the promised minimum conversion, amber bars a broken promise, "
                "green bars a promise beaten.",
            ),
        }
        for set_name, band_set in ctx.bands.items()
    ]
    return _render("bands.html.j2", sets=sets)


def _calibration_section(ctx: ReportContext) -> str:
    cal = ctx.calibration_summary or {}
    before, after = _num(cal.get("ece_before")), _num(cal.get("ece_after"))
    if not cal or (before is None and after is None):
        return _render("calibration.html.j2", rows=[])
    rows = [{"split": "Calibration (cross-fitted)", "method": str(cal.get("method") or "—"),
             "before": _fmt(before, "dec3"), "after": _fmt(after, "dec3")}]
    model = _headline_model(ctx)
    test_ece = _num(ctx.metrics.get(model, {}).get("ece")) if model else None
    if test_ece is not None:
        rows.append({"split": f"Test ({_label(model)})", "method": str(cal.get("method") or "—"),
                     "before": "—", "after": _fmt(test_ece, "dec3")})
    note = ("Calibration maps raw model scores to probabilities, fitted on the calibration "
            "split; ECE is the average gap between predicted and observed conversion (lower is "
            "better). The calibration split's ECE is measured on the data the calibrator was "
            "fitted on (cross-fitted); the test split's, on leads it never saw, is the one to "
            "trust.")
    return _render("calibration.html.j2", rows=rows, note=note)


def _importance_section(ctx: ReportContext, plots: Mapping[str, bytes]) -> str:
    if ctx.feature_importance is None or not len(ctx.feature_importance):
        return _render("importance.html.j2", rows=[])
    top = _top_features(ctx.feature_importance)
    rows = [{"rank": str(i + 1), "feature": r.feature, "group": r.group,
             "value": _fmt(r.mean_abs_contribution, "dec3")}
            for i, r in enumerate(top.itertuples(index=False))]
    figure = _figure_of(
        plots,
        "feature_importance.png",
        "Feature importance",
        "Average absolute contribution of each feature to the score on the test split.",
    )
    return _render("importance.html.j2", rows=rows, figure_=figure)


def _reasons(reasons: Any) -> list[str]:
    if isinstance(reasons, str):
        reasons = [reasons]
    return [str(r) for r in (reasons or ())]


def _leakage_activity(act: Any) -> tuple[str, bool]:
    """The share of events logged at or after the outcome date (audit `activity_after_outcome`),
    and whether it is the muted "no events" line."""
    if not isinstance(act, Mapping):
        return "", False
    if not act.get("events"):
        return ("Activity after the outcome: no events of leads with a known conversion or "
                "lost date."), True
    share = _num(act.get("share"))
    per = act.get("by_outcome") or {}
    detail = "; ".join(
        f"{k}: {_fmt(v.get('share'), 'pct')} of {v.get('events')} events"
        for k, v in per.items() if isinstance(v, Mapping) and v.get("events")
    )
    text = (
        f"Activity after the outcome: {_fmt(share, 'pct')} of the events of the "
        f"{act.get('leads_with_events')} lead(s) with a known conversion/lost date happen at "
        f"or after it ({act.get('events_at_or_after')} of {act.get('events')}"
        + (f"; {detail}" if detail else "") + "). No training snapshot reached them "
        "(snapshots look only before their as-of date), but the log keeps recording after "
        "the outcome: a column filled in or summarised later would know it."
    )
    return text, False


def _leakage_section(ctx: ReportContext) -> str:
    if ctx.leakage is None:
        return _render("leakage.html.j2", audit=False)
    suspects = list(ctx.leakage.get("suspects") or ())
    reviewed = [r for r in (ctx.leakage.get("reviewed") or ()) if isinstance(r, Mapping)]
    order = sorted(
        range(len(suspects)),
        key=lambda i: (-(_num(suspects[i].get("score")) or -math.inf), i),
    )
    top = [suspects[i] for i in order[:TOP_SUSPECTS]]
    n_excluded = sum(bool(s.get("excluded")) for s in suspects) + sum(
        r.get("status") == "excluded" for r in reviewed)
    n_safe = sum(r.get("status") == "safe" for r in reviewed)
    intro = (
        f"Method: {ctx.leakage.get('method') or '—'}. {len(suspects)} suspect column(s), "
        f"{n_excluded} excluded from the model"
        + (f", {n_safe} reviewed safe" if n_safe else "")
        + (f"; showing the top {TOP_SUSPECTS} by score." if len(suspects) > TOP_SUSPECTS else ".")
    )
    activity, activity_muted = _leakage_activity(ctx.leakage.get("activity_after_outcome"))
    return _render(
        "leakage.html.j2",
        audit=True,
        intro=intro,
        suspects=[{"column": str(s.get("column", "?")), "score": _fmt(s.get("score"), "dec3"),
                   "reasons": _reasons(s.get("reasons")),
                   "excluded": "✓ excluded" if s.get("excluded") else "—",
                   "safe": "✓ safe" if s.get("safe") else "—"} for s in top],
        reviewed=[{"column": str(r.get("column", "?")), "status": str(r.get("status", "—")),
                   "why": str(r.get("reason", "—")).split(" (evidence:")[0],
                   "score": _fmt(r.get("score"), "dec3"), "reasons": _reasons(r.get("reasons"))}
                  for r in reviewed],
        activity=activity,
        activity_muted=activity_muted,
    )


def _subscores_section(ctx: ReportContext, plots: Mapping[str, bytes]) -> str:
    sub = ctx.subscores
    cells = [{"cell": c["cell"], "n": _fmt(c["n"], "int"),
              "rate": "—" if not c["n"] else f"{100 * c['rate']:.1f} %",
              "ci": "—" if not c["n"] else
              f"{100 * c['ci_low']:.1f}–{100 * c['ci_high']:.1f} %"} for c in sub["cells"]]
    ece = {k: (f"{100 * v:.1f} points" if v is not None else "—")
           for k, v in (sub.get("ece") or {}).items()}
    figure = _figure_of(plots, GRID_PLOT, "Fit x engagement grid",
                        "Fit grade A (best) to D from the lead's own columns; engagement 4 "
                        "(most) to 1 from behaviour; each cut from shares of calibration "
                        "leads. Conversion of the test snapshots in each cell.")
    return _render("subscores.html.j2", cells=cells, breaks=list(sub.get("breaks") or []),
                   ece=ece, figure_=figure)


def _notes_section(ctx: ReportContext) -> str:
    return _render("notes.html.j2", notes=[str(n) for n in ctx.notes])


def _glossary_section() -> str:
    return _render("glossary.html.j2", glossary=_GLOSSARY)


def render_report(ctx: ReportContext, plots: Mapping[str, bytes] | None = None) -> str:
    """One self-contained HTML page (inline CSS, base64 PNGs, no external URL or script).

    `plots` are the PNGs of `render_plots(ctx)`; pass them when already rendered (e.g. to
    log them) so they are not drawn twice. The page is `pipeline/templates/report.html.j2`
    with one template per section; every inserted string is HTML-escaped (autoescape).
    """
    from markupsafe import Markup

    if plots is None:
        plots = render_plots(ctx)
    sections = [
        ("Summary", "summary", _headline(ctx)),
        ("Metrics on the test split", "metrics", _metrics_table(ctx)),
        ("Plots", "plots", _plots_section(plots)),
        ("Bands: promised vs observed", "bands", _bands_section(ctx, plots)),
        ("Calibration", "calibration", _calibration_section(ctx)),
        ("Feature importance", "importance", _importance_section(ctx, plots)),
        *([("Fit and engagement", "subscores", _subscores_section(ctx, plots))]
          if ctx.subscores.get("cells") else []),
        ("Leakage audit", "leakage", _leakage_section(ctx)),
        ("Notes", "notes", _notes_section(ctx)),
        ("Glossary", "glossary", _glossary_section()),
    ]
    page = _env().get_template("report.html.j2").render(
        title=ctx.title,
        subtitle=ctx.subtitle,
        # section bodies are HTML built from escaped values (templates or helpers)
        sections=[{"title": t, "anchor": a, "body": Markup(b)} for t, a, b in sections],
    )
    return page + "\n"
