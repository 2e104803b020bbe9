"""The HTML model report: sections, embedded plots, escaping, promise checks, determinism."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models import metrics as m
from models.settings import InputError
from pipeline.report import ReportContext, render_plots, render_report

TITLE = 'Lead propensity <script>alert("x")</script> & co'
HEADINGS = (
    "Summary",
    "Metrics on the test split",
    "Plots",
    "Bands: promised vs observed",
    "Calibration",
    "Feature importance",
    "Leakage audit",
    "Notes",
    "Glossary",
)
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def band(name: str, low: float, promised: float | None, n: int, conv: int) -> dict:
    """A band row as the evaluate stage builds it: same counts on both splits."""
    lo, hi = m.wilson_interval(conv, n)
    stats = {"n": n, "conversions": conv, "rate": conv / n, "ci_low": lo, "ci_high": hi}
    return {
        "name": name,
        "min_propensity": low,
        "promised_conversion": promised,
        "calibration": dict(stats),
        "test": dict(stats),
    }


def make_context() -> ReportContext:
    rng = np.random.default_rng(20240611)
    n = 300
    truth = rng.beta(1.2, 4.0, n)
    y = (rng.random(n) < truth).astype(int)
    scores = {
        "lightgbm": np.clip(truth + rng.normal(0, 0.08, n), 0.001, 0.999),
        "rules": np.round(np.clip(truth + rng.normal(0, 0.25, n), 0.01, 0.99), 1),
        "truth": truth,
    }
    curves = {
        "roc": {s: m.roc_curve_frame(y, p) for s, p in scores.items()},
        "pr": {s: m.pr_curve_frame(y, p) for s, p in scores.items()},
        "calibration": {s: m.calibration_frame(y, p) for s, p in scores.items()},
        "gains": {s: m.gains_frame(y, p, n_points=20) for s, p in scores.items()},
    }
    bands = {
        "temperature": {
            "policy": "conversion",
            "bands": [
                band("cold", 0.0, None, 150, 15),
                band("warm", 0.2, 0.18, 100, 22),
                band("hot", 0.45, 0.60, 50, 15),  # 30 %, CI ~ 19-44 %: promise broken
            ],
            "notes": ["`bands.temperature` band `hot`: no cutoff gives >= 60.0% <b>"],
        },
        "lifecycle": {
            "policy": "share",
            "bands": [band("nurture", 0.0, None, 240, 40), band("sales_ready", 0.3, None, 60, 25)],
            "notes": [],
        },
    }
    bands["temperature"]["bands"][2]["feasible"] = False
    suspects = [
        {
            "column": f"col_{i:02d}",
            "score": 0.5 + i / 100,
            "reasons": [f"univariate AUC {0.5 + i / 100:.2f}", "filled after <conversion>"],
            "excluded": i % 3 == 0,
            "safe": i % 5 == 0,
        }
        for i in range(20)
    ]
    importance = pd.DataFrame(
        {
            "feature": [f"feat_{i:02d}" for i in range(25)],
            "group": ["engagement" if i % 2 else "firmographic" for i in range(25)],
            "mean_abs_contribution": np.linspace(0.01, 0.5, 25),
        }
    )
    return ReportContext(
        title=TITLE,
        subtitle="lead-propensity v3 · data 1a2b3c · 2025-01-01..2025-06-30 · horizon 30 days",
        metrics={s: m.evaluate_scores(y, p) for s, p in scores.items()},
        curves=curves,
        bands=bands,
        leakage={"method": "univariate AUC + name patterns", "suspects": suspects},
        calibration_summary={"method": "isotonic", "ece_before": 0.0712, "ece_after": 0.0188},
        feature_importance=importance,
        notes=["stratified split: no timestamps", "tiny sample <10k leads"],
    )


@pytest.fixture(scope="module")
def ctx() -> ReportContext:
    return make_context()


@pytest.fixture(scope="module")
def plots(ctx: ReportContext) -> dict[str, bytes]:
    return render_plots(ctx)


@pytest.fixture(scope="module")
def page(ctx: ReportContext, plots: dict[str, bytes]) -> str:
    return render_report(ctx, plots)


def row_of(page: str, first_cell: str) -> str:
    match = re.search(rf"<tr><td>{re.escape(first_cell)}</td>.*?</tr>", page)
    assert match, first_cell
    return match.group(0)


def test_plots_are_named_pngs_without_software_metadata(plots):
    assert sorted(plots) == sorted(
        [
            "roc.png",
            "pr.png",
            "calibration.png",
            "gains.png",
            "bands_temperature.png",
            "bands_lifecycle.png",
            "feature_importance.png",
        ]
    )
    for data in plots.values():
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in data and b"matplotlib" not in data


def test_page_embeds_every_plot_once(page, plots):
    embedded = [base64.b64decode(b) for b in IMG.findall(page)]
    assert len(embedded) == len(plots)
    assert sorted(embedded) == sorted(plots.values())


def test_page_has_every_section_and_is_self_contained(page):
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_every_inserted_string_is_escaped(page):
    assert "<script" not in page
    assert "Lead propensity &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    assert "<title>Lead propensity &lt;script&gt;" in page
    assert "60.0% &lt;b&gt;" in page  # band note
    assert "filled after &lt;conversion&gt;" in page  # leakage reason
    assert "tiny sample &lt;10k leads" in page  # run note


def test_metrics_table_shows_values_and_labels(page, ctx):
    for scorer in ("lightgbm", "rules", "truth"):
        assert f"{ctx.metrics[scorer]['roc_auc']:.3f}" in page
        assert f"{ctx.metrics[scorer]['log_loss']:.3f}" in page
    assert "Ceiling (true probability)" in page
    assert "Manual rules" in page and "LightGBM model" in page
    assert f'<td class="num">{ctx.metrics["truth"]["n"]:,}</td>' in page


def test_headline_in_plain_words(page, ctx):
    auc, rules = ctx.metrics["lightgbm"]["roc_auc"], ctx.metrics["rules"]["roc_auc"]
    assert auc > rules
    expected = f"better than the manual rules: ROC AUC {auc:.2f} vs {rules:.2f}"
    assert f"The model ranks leads {expected}" in page
    lo, hi = m.wilson_interval(15, 50)
    ci = f"(95 % CI {100 * lo:.0f}–{100 * hi:.0f} %)"
    assert f"Hot leads converted at 30 % {ci} on 300 test leads the model never saw" in page
    assert "the promise of at least 60 % was not kept" in page
    assert "after calibration (isotonic), 7.1 before" in page


def test_band_tables_mark_broken_promises_amber(page):
    for name in ("temperature", "lifecycle"):
        assert f"Band set: {name}" in page
    hot = row_of(page, "hot")
    assert 'class="num amber"' in hot and "promise not kept" in hot
    assert "target not reachable" in hot
    assert "≥ 60.0 %" in hot and "≥ 0.450 (45)" in hot
    warm = row_of(page, "warm")  # 22 %, CI ~ 15-31 %: 18 % promise inside
    assert "amber" not in warm and "promise kept" in warm
    assert "amber" not in row_of(page, "cold") and "amber" not in row_of(page, "sales_ready")
    assert page.count('class="num amber"') == 1
    assert "Promises not kept on the test split" in page


def test_promise_below_the_interval_is_amber_but_not_a_warning(ctx):
    bands = {
        "temperature": {
            "policy": "conversion",
            "bands": [
                band("cold", 0.0, None, 100, 5),
                band("hot", 0.5, 0.10, 100, 60),  # 60 %, CI ~ 50-69 %: promise 10 % far below
            ],
            "notes": [],
        }
    }
    page = render_report(replace(ctx, bands=bands), plots={})
    hot = row_of(page, "hot")
    assert 'class="num amber"' in hot and "converts above promise" in hot
    assert "Promises not kept" not in page
    assert "the promise of at least 10 % was beaten" in page


def test_leakage_shows_top_15_by_score(page):
    assert page.count("<tr><td>col_") == 15
    assert '<tr><td>col_19</td><td class="num">0.690</td>' in page
    assert "<tr><td>col_04</td>" not in page  # 5th lowest score: cut
    assert "20 suspect column(s), 7 excluded" in page
    assert "✓ excluded" in page and "✓ safe" in page


def test_feature_importance_shows_top_20(page):
    assert page.count("<td>feat_") == 20
    assert "<td>feat_24</td>" in page and "<td>feat_04</td>" not in page
    assert page.index("<td>feat_24</td>") < page.index("<td>feat_23</td>")


def test_missing_optional_parts_still_render(ctx):
    bare = ReportContext(
        title="Bare run",
        subtitle="",
        metrics={s: v for s, v in ctx.metrics.items() if s != "truth"},
        curves={"roc": {"lightgbm": ctx.curves["roc"]["lightgbm"]}},
    )
    plots = render_plots(bare)
    page = render_report(bare, plots)
    assert list(plots) == ["roc.png"]
    assert len(IMG.findall(page)) == 1
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert "Ceiling" not in page
    assert "No leakage audit was supplied" in page
    assert "No feature importance was supplied" in page
    assert "No band sets were supplied" in page
    assert "No calibration summary was supplied" in page
    assert "No warnings for this run" in page
    assert f"{ctx.metrics['lightgbm']['roc_auc']:.3f}" in page


def test_empty_context_renders():
    page = render_report(ReportContext(title="t", subtitle="s", metrics={}, curves={}))
    assert "No test metrics or bands were supplied" in page
    assert "No curves were supplied" in page


def test_same_context_gives_identical_bytes(ctx, plots, page):
    again = make_context()
    plots_again = render_plots(again)
    assert plots_again == plots
    assert render_report(again, plots_again) == page


def test_bad_curve_frame_is_refused_with_its_columns(ctx):
    with pytest.raises(InputError, match=r"curves\['roc'\]\['lightgbm'\].*missing tpr"):
        replace(ctx, curves={"roc": {"lightgbm": pd.DataFrame({"fpr": [0.0]})}})
    with pytest.raises(InputError, match="kind must be one of"):
        replace(ctx, curves={"lift": {}})
