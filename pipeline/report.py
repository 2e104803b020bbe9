"""The self-contained HTML model report and its plots.

`render_plots(ctx)` draws the evaluation plots as PNG bytes by file name, for the caller
to log (e.g. to MLflow); `render_report(ctx)` returns one HTML page with inline CSS and
the same plots embedded as base64 `<img>` tags: no external URL, no JavaScript.

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
import html
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.bands import score_1_99
from models.metrics import wilson_interval
from models.settings import InputError

__all__ = ["CURVE_COLUMNS", "ReportContext", "render_plots", "render_report"]

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
    "truth": "Ceiling (true probability)",
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
_MODELS = ("lightgbm", "logreg", "learned_rules")  # the "model" of the headline, first found
_AMBER = "#f0a202"
_DPI = 110

# (metric key, label, format, better): format is "dec3", "dec2", "pct" or "int";
# better is "high", "low" or None (no best value is marked).
_METRIC_ROWS: tuple[tuple[str, str, str, str | None], ...] = (
    ("roc_auc", "ROC AUC", "dec3", "high"),
    ("pr_auc", "PR AUC (average precision)", "dec3", "high"),
    ("log_loss", "Log-loss", "dec3", "low"),
    ("brier", "Brier score", "dec3", "low"),
    ("ece", "ECE (calibration error)", "dec3", "low"),
    ("lift_at_10", "Lift in the top 10 %", "dec2", "high"),
    ("capture_at_10", "Capture in the top 10 %", "pct", "high"),
    ("lift_at_20", "Lift in the top 20 %", "dec2", "high"),
    ("capture_at_20", "Capture in the top 20 %", "pct", "high"),
    ("base_rate", "Base rate (share converted)", "pct", None),
    ("n", "Test leads", "int", None),
    ("positives", "Conversions", "int", None),
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


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


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
    colors = [_AMBER if r["check"] == "below" else "#1f5fa8" for r in rows]
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
    return plots


# --------------------------------------------------------------------------- html

_e = html.escape

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
 max-width:1100px;margin:2rem auto;padding:0 1rem;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.2rem;margin-top:2.2rem}
.subtitle{color:#555;margin-top:0}
.headline{background:#eef4fb;border-left:6px solid #1f5fa8;padding:.8rem 1.2rem;font-size:1.08rem}
.headline li{margin:.3rem 0}
.warn{background:#fff3d6;border-left:6px solid #f0a202;padding:.6rem 1.2rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #d5dbe1;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}td.num{text-align:right;white-space:nowrap}
td.amber{background:#ffd98a}td.best{font-weight:bold}
.muted{color:#666}figure{margin:1rem 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9rem}.plots{display:flex;flex-wrap:wrap;gap:1rem}
.plots figure{flex:1 1 460px}dt{font-weight:bold;margin-top:.5rem}dd{margin-left:1.2rem}
footer{margin-top:3rem;color:#888;font-size:.85rem}
"""

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
        "conversion, over 10 equal-width probability bins, weighted by the number of leads. "
        "0.02 means predictions are off by about 2 percentage points.",
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
)


def _td(text: str, cls: str | None = None, title: str | None = None) -> str:
    attrs = "" if cls is None else f' class="{cls}"'
    attrs += "" if title is None else f' title="{_e(title)}"'
    return f"<td{attrs}>{_e(text)}</td>"


def _table(headers: Sequence[str], rows: Iterable[str]) -> str:
    """A `<table>` with escaped `headers` and ready-made `<td>` cells per row."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr>{cells}</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(plots: Mapping[str, bytes], name: str, alt: str, caption: str) -> str:
    if name not in plots:
        return ""
    data = base64.b64encode(plots[name]).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>\n'


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


def _headline(ctx: ReportContext) -> str:
    items: list[str] = []
    model = next((s for s in _MODELS if s in ctx.metrics), None)
    m = ctx.metrics.get(model, {}) if model else {}

    picked = _headline_band(ctx)
    if picked is not None:
        _, rows = picked
        top = rows[-1] if rows else None
        n_test = sum(r["test"]["n"] for r in rows if r["test"])
        if top and top["test"] and top["test"]["rate"] is not None:
            t = top["test"]
            if t["ci_low"] is not None and t["ci_high"] is not None:
                rate, low, high = _pcts(t["rate"], t["ci_low"], t["ci_high"])
                rate_text = f"{rate} % (95 % CI {low}–{high} %)"
            else:
                rate_text = f"{_pcts(t['rate'])[0]} %"
            text = (
                f"{top['name'].capitalize()} leads converted at {rate_text} on {n_test:,} test "
                f"leads the model never saw ({t['n']:,} of them {top['name']})"
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
            text = f"{how.capitalize()}: ROC AUC {auc:.2f} vs {rules_auc:.2f}"
        else:
            text = f"The model ranks leads with a ROC AUC of {auc:.2f} (0.5 = random, 1 = perfect)"
        ceiling = _num(ctx.metrics.get("truth", {}).get("roc_auc"))
        if ceiling is not None:
            text += f"; the best possible on this data is {ceiling:.2f}"
        items.append(text + ".")

    capture, lift, base = (_num(m.get(k)) for k in ("capture_at_10", "lift_at_10", "base_rate"))
    if capture is not None and lift is not None:
        (cap,) = _pcts(capture)
        text = f"Calling the top 10 % of leads by score finds {cap} % of all conversions"
        text += f", {lift:.1f} times the average conversion rate"
        if base is not None:
            text += f" of {_pcts(base)[0]} %"
        items.append(text + ".")

    cal = ctx.calibration_summary or {}
    before, after = _num(cal.get("ece_before")), _num(cal.get("ece_after"))
    if after is not None:
        text = (
            f"Predicted and observed conversion differ by {100 * after:.1f} percentage points "
            "on average after calibration"
        )
        if cal.get("method"):
            text += f" ({cal['method']})"
        if before is not None:
            text += f", {100 * before:.1f} before"
        items.append(text + ".")

    if not items:
        items.append("No test metrics or bands were supplied for this run.")
    body = "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"

    warnings = []
    for set_name, band_set in ctx.bands.items():
        for r in _band_rows(band_set):
            if r["check"] == "below":
                (promised,) = _pcts(r["promised"])
                warnings.append(
                    f"{set_name} / {r['name']}: promised at least {promised} %, but the test "
                    f"split shows {_ci_text(r['test'])}, below the promise."
                )
    if warnings:
        body += (
            '<div class="warn"><strong>Promises not kept on the test split</strong><ul>'
            + "".join(f"<li>{_e(w)}</li>" for w in warnings)
            + "</ul></div>"
        )
    return f'<div class="headline">{body}</div>'


def _metrics_table(ctx: ReportContext) -> str:
    scorers = _scorers(list(ctx.metrics))
    if not scorers:
        return '<p class="muted">No metrics were supplied.</p>'
    known = {k for k, *_ in _METRIC_ROWS}
    present = {k for s in scorers for k in ctx.metrics[s]}
    rows = [r for r in _METRIC_ROWS if r[0] in present]
    rows += [(k, k, "dec3", None) for k in sorted(present - known)]
    head = "".join(f"<th>{_e(_label(s))}</th>" for s in scorers)
    out = [f"<table><thead><tr><th>Metric</th>{head}</tr></thead><tbody>"]
    for key, label, kind, better in rows:
        values = {s: _num(ctx.metrics[s].get(key)) for s in scorers}
        candidates = [v for s, v in values.items() if s != "truth" and v is not None]
        best = None
        if better and len(candidates) > 1:
            best = max(candidates) if better == "high" else min(candidates)
        cells = "".join(
            _td(
                _fmt(values[s], kind),
                "num best" if s != "truth" and values[s] == best and best is not None else "num",
            )
            for s in scorers
        )
        out.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    out.append("</tbody></table>")
    note = (
        "All scorers are measured on the same test split, after calibration. Bold marks the "
        "best scorer on each row"
        + (
            "; the ceiling column scores leads with their true probability (synthetic data "
            "only) and shows the best any model could do."
            if "truth" in scorers
            else "."
        )
    )
    return "".join(out) + f'<p class="muted">{_e(note)}</p>'


def _plots_section(plots: Mapping[str, bytes]) -> str:
    figures = [
        _img(
            plots,
            "roc.png",
            "ROC curve",
            "ROC: how many converters (up) you find for each non-converter (right) as you go "
            "down the list. Higher and further left is better.",
        ),
        _img(
            plots,
            "pr.png",
            "Precision-recall curve",
            "Precision-recall: the share of contacted leads that convert (precision) as you "
            "find more of all conversions (recall).",
        ),
        _img(
            plots,
            "calibration.png",
            "Calibration plot",
            "Calibration: points on the dotted diagonal mean a predicted 30 % converts 30 % "
            "of the time. Bars are 95 % intervals.",
        ),
        _img(
            plots,
            "gains.png",
            "Cumulative gains and lift",
            "Gains and lift: contacting the best-scored share of leads first, how many "
            "conversions you find (left) and how much better than random that is (right).",
        ),
    ]
    figures = [f for f in figures if f]
    if not figures:
        return '<p class="muted">No curves were supplied.</p>'
    return '<div class="plots">' + "".join(figures) + "</div>"


def _bands_section(ctx: ReportContext, plots: Mapping[str, bytes]) -> str:
    if not ctx.bands:
        return '<p class="muted">No band sets were supplied.</p>'
    parts = [
        "<p>Each band starts at a cutoff on the calibrated probability, learned on the "
        "calibration split. The test split shows whether the band keeps its promise. A cell "
        'turns <span style="background:#ffd98a">amber</span> when the promised conversion '
        "lies outside the 95 % interval observed on the test split.</p>"
    ]
    file_names = _band_plot_names(ctx)
    for set_name, band_set in ctx.bands.items():
        rows = _band_rows(band_set)
        parts.append(f"<h3>Band set: {_e(str(set_name))}</h3>")
        if band_set.get("policy"):
            parts.append(f"<p>Policy: {_e(str(band_set['policy']))}</p>")
        parts.append(
            '<table><thead><tr><th rowspan="2">Band</th><th rowspan="2">Starts at '
            'probability (score)</th><th rowspan="2">Promised conversion</th>'
            '<th colspan="2">Calibration split</th><th colspan="2">Test split</th>'
            '<th rowspan="2">Check</th></tr><tr><th>Leads</th><th>Converted (95 % CI)</th>'
            "<th>Leads</th><th>Converted (95 % CI)</th></tr></thead><tbody>"
        )
        for r in rows:
            start = r["min_propensity"]
            start_text = (
                "—"
                if start is None or not 0 <= start <= 1
                else (f"≥ {start:.3f} ({int(score_1_99([start])[0])})")
            )
            promised = "—" if r["promised"] is None else f"≥ {_fmt(r['promised'], 'pct')}"
            cal, test = r["calibration"], r["test"]
            checks = []
            test_cls, test_title = "num", None
            if r["check"] == "below":
                test_cls, test_title = "num amber", "promise above the test interval"
                checks.append("⚠ promise not kept")
            elif r["check"] == "above":
                test_cls, test_title = "num amber", "test interval above the promise"
                checks.append("converts above promise")
            elif r["promised"] is not None and test and test["rate"] is not None:
                checks.append("promise kept")
            if not r["feasible"]:
                checks.append("target not reachable on calibration (see notes)")
            parts.append(
                "<tr>"
                + _td(r["name"])
                + _td(start_text, "num")
                + _td(promised, "num")
                + _td(_fmt(cal and cal["n"], "int"), "num")
                + _td(_ci_text(cal), "num")
                + _td(_fmt(test and test["n"], "int"), "num")
                + _td(_ci_text(test), test_cls, test_title)
                + _td("; ".join(checks) or "—")
                + "</tr>"
            )
        parts.append("</tbody></table>")
        notes = [str(n) for n in band_set.get("notes") or ()]
        if notes:
            parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
        parts.append(
            _img(
                plots,
                file_names[set_name],
                f"Conversion by band: {set_name}",
                "Conversion by band on the test split, with 95 % Wilson intervals; dashed "
                "marks are the promised minimum conversion, amber bars a broken promise.",
            )
        )
    return "".join(parts)


def _calibration_section(ctx: ReportContext) -> str:
    cal = ctx.calibration_summary or {}
    before, after = _num(cal.get("ece_before")), _num(cal.get("ece_after"))
    if not cal or (before is None and after is None):
        return '<p class="muted">No calibration summary was supplied.</p>'
    return (
        "<table><thead><tr><th>Method</th><th>ECE before</th><th>ECE after</th></tr></thead>"
        "<tbody><tr>"
        + _td(str(cal.get("method") or "—"))
        + _td(_fmt(before, "dec3"), "num")
        + _td(_fmt(after, "dec3"), "num")
        + "</tr></tbody></table>"
        '<p class="muted">Calibration maps raw model scores to probabilities on the '
        "calibration split; ECE is the average gap between predicted and observed "
        "conversion (lower is better).</p>"
    )


def _importance_section(ctx: ReportContext, plots: Mapping[str, bytes]) -> str:
    if ctx.feature_importance is None or not len(ctx.feature_importance):
        return '<p class="muted">No feature importance was supplied for this run.</p>'
    top = _top_features(ctx.feature_importance)
    rows = "".join(
        "<tr>"
        + _td(str(i + 1), "num")
        + _td(r.feature)
        + _td(r.group)
        + _td(_fmt(r.mean_abs_contribution, "dec3"), "num")
        + "</tr>"
        for i, r in enumerate(top.itertuples(index=False))
    )
    return (
        _img(
            plots,
            "feature_importance.png",
            "Feature importance",
            "Average absolute contribution of each feature to the score on the test split.",
        )
        + "<table><thead><tr><th>#</th><th>Feature</th><th>Group</th>"
        "<th>Mean |contribution|</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _reasons_html(reasons: Any) -> str:
    if isinstance(reasons, str):
        reasons = [reasons]
    return "<br>".join(_e(str(r)) for r in (reasons or ())) or "—"


def _leakage_activity(act: Any) -> str:
    """The share of events logged at or after the outcome date (audit `activity_after_outcome`)."""
    if not isinstance(act, Mapping):
        return ""
    if not act.get("events"):
        return ('<p class="muted">Activity after the outcome: no events of leads with a '
                "known conversion or lost date.</p>")
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
    return f"<p>{_e(text)}</p>"


def _leakage_section(ctx: ReportContext) -> str:
    if ctx.leakage is None:
        return '<p class="muted">No leakage audit was supplied for this run.</p>'
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
    out = [
        f"<p>{_e(intro)}</p>",
        '<p class="muted">Leakage means a column that is only known after (or because) a '
        "lead converted; the model would look good here and fail in production.</p>",
    ]
    if not top:
        out.append("<p>No suspects among the columns the model uses.</p>" if reviewed
                   else "<p>No suspects found.</p>")
    else:
        out.append(_table(
            ("Column", "Score", "Reasons", "Excluded", "Reviewed safe"),
            (_td(str(s.get("column", "?")))
             + _td(_fmt(s.get("score"), "dec3"), "num")
             + f"<td>{_reasons_html(s.get('reasons'))}</td>"
             + _td("✓ excluded" if s.get("excluded") else "—")
             + _td("✓ safe" if s.get("safe") else "—")
             for s in top)))
    if reviewed:
        out.append("<h3>Excluded and reviewed-safe columns</h3>" + _table(
            ("Column", "Status", "Why", "Score", "Evidence"),
            (_td(str(r.get("column", "?")))
             + _td(str(r.get("status", "—")))
             + _td(str(r.get("reason", "—")).split(" (evidence:")[0])
             + _td(_fmt(r.get("score"), "dec3"), "num")
             + f"<td>{_reasons_html(r.get('reasons'))}</td>"
             for r in reviewed)))
    out.append(_leakage_activity(ctx.leakage.get("activity_after_outcome")))
    return "".join(out)


def _notes_section(ctx: ReportContext) -> str:
    if not ctx.notes:
        return '<p class="muted">No warnings for this run.</p>'
    return "<ul>" + "".join(f"<li>{_e(str(n))}</li>" for n in ctx.notes) + "</ul>"


def _glossary_section() -> str:
    return "<dl>" + "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in _GLOSSARY) + "</dl>"


def render_report(ctx: ReportContext, plots: Mapping[str, bytes] | None = None) -> str:
    """One self-contained HTML page (inline CSS, base64 PNGs, no external URL or script).

    `plots` are the PNGs of `render_plots(ctx)`; pass them when already rendered (e.g. to
    log them) so they are not drawn twice. Every inserted string is HTML-escaped.
    """
    if plots is None:
        plots = render_plots(ctx)
    sections = [
        _section("Summary", "summary", _headline(ctx)),
        _section("Metrics on the test split", "metrics", _metrics_table(ctx)),
        _section("Plots", "plots", _plots_section(plots)),
        _section("Bands: promised vs observed", "bands", _bands_section(ctx, plots)),
        _section("Calibration", "calibration", _calibration_section(ctx)),
        _section("Feature importance", "importance", _importance_section(ctx, plots)),
        _section("Leakage audit", "leakage", _leakage_section(ctx)),
        _section("Notes", "notes", _notes_section(ctx)),
        _section("Glossary", "glossary", _glossary_section()),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(ctx.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{_e(ctx.title)}</h1>\n"
        f'<p class="subtitle">{_e(ctx.subtitle)}</p></header>\n'
        + "".join(sections)
        + "<footer>Generated by leadprop.</footer>\n</body>\n</html>\n"
    )
