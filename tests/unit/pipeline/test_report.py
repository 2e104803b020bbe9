"""The HTML model report: sections, embedded plots, escaping, promise checks, determinism."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

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
        split_counts={"test": {"leads": 120, "snapshots": n}, "train": {"leads": 400,
                                                                          "snapshots": 900}},
    )


class Page(HTMLParser):
    """The parts of a report page the tests read: every table (rows of cells, each cell its
    text and class), the headline's bullet texts and the text of each section."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: list[list[list[dict]]] = []
        self.headline: list[str] = []
        self.sections: dict[str, str] = {}
        self._cell: dict | None = None
        self._in_headline = self._in_li = False
        self._section: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section] = ""
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = {"tag": tag, "text": "", "cls": (a.get("class") or "").split()}
            self.tables[-1][-1].append(self._cell)
        elif tag == "div" and "headline" in (a.get("class") or ""):
            self._in_headline = True
        elif tag == "div" and "warn" in (a.get("class") or ""):
            self._in_headline = False
        elif tag == "li" and self._in_headline:
            self._in_li = True
            self.headline.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "li":
            self._in_li = False
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_li:
            self.headline[-1] += data
        if self._section is not None:
            self.sections[self._section] += data

    def table_with(self, first_cell: str) -> list[list[dict]]:
        """The first table with a row whose first cell reads `first_cell`."""
        for table in self.tables:
            if any(row and row[0]["text"] == first_cell for row in table):
                return table
        raise AssertionError(f"no table has a row {first_cell!r}")

    def row(self, first_cell: str) -> list[dict]:
        return next(r for r in self.table_with(first_cell) if r[0]["text"] == first_cell)


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
    assert "Lead propensity &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert "<title>Lead propensity &lt;script&gt;" in page
    assert "60.0% &lt;b&gt;" in page  # band note
    assert "filled after &lt;conversion&gt;" in page  # leakage reason
    assert "tiny sample &lt;10k leads" in page  # run note


def test_metrics_table_shows_values_and_labels(page, ctx):
    for scorer in ("lightgbm", "rules", "truth"):
        assert f"{ctx.metrics[scorer]['roc_auc']:.3f}" in page
        assert f"{ctx.metrics[scorer]['log_loss']:.3f}" in page
    assert "Truth (generator&#39;s probability)" in page
    assert "Manual rules" in page and "LightGBM model" in page
    assert f'<td class="num">{ctx.metrics["truth"]["n"]:,}</td>' in page


def test_headline_in_plain_words(page, ctx):
    auc, rules = ctx.metrics["lightgbm"]["roc_auc"], ctx.metrics["rules"]["roc_auc"]
    assert auc > rules
    expected = f"better than the manual rules: ROC AUC {auc:.2f} vs {rules:.2f}"
    assert f"On the test split, the model ranks leads {expected}" in page
    lo, hi = m.wilson_interval(15, 50)
    ci = f"(95 % CI {100 * lo:.0f}–{100 * hi:.0f} %)"
    assert (f"On the test split, hot leads converted at 30 % {ci}, over 300 snapshots of 120 "
            "leads the model never saw (50 snapshots hot)") in page
    assert "the promise of at least 60 % was not kept" in page
    assert "on the calibration split 1.9 after calibration (isotonic), 7.1 before" in page


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


def test_promise_below_the_interval_is_green_and_not_a_warning(ctx):
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
    assert 'class="num green"' in hot and "converts above promise" in hot
    assert "amber" not in hot and "not kept" not in hot
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


def three_promises(ctx: ReportContext) -> str:
    """One band set: a promise kept (inside the interval), beaten and broken."""
    bands = {
        "temperature": {
            "policy": "conversion",
            "bands": [
                band("cold", 0.0, None, 200, 10),
                band("warm", 0.1, 0.20, 100, 22),  # 22 %, CI ~ 15-31 %: kept
                band("hot", 0.3, 0.25, 100, 60),  # 60 %, CI ~ 50-69 %: beaten
                band("fire", 0.6, 0.90, 50, 30),  # 60 %, CI ~ 46-72 %: broken
            ],
            "notes": [],
        }
    }
    return render_report(replace(ctx, bands=bands), plots={})


def test_band_colours_amber_only_for_a_broken_promise(ctx):
    page = Page(three_promises(ctx))
    table = page.table_with("fire")
    assert [c["text"] for c in table[0]][-3:] == ["Calibration split", "Test split", "Check"]
    assert [c["text"] for c in table[1]][2:] == ["Snapshots", "Converted (95 % CI)"]

    def test_cell(name: str) -> dict:
        row = page.row(name)
        assert len(row) == 8  # band, start, promise, calibration n + rate, test n + rate, check
        return row[6]

    assert "amber" in test_cell("fire")["cls"] and "green" not in test_cell("fire")["cls"]
    assert "green" in test_cell("hot")["cls"] and "amber" not in test_cell("hot")["cls"]
    for name in ("warm", "cold"):
        assert not {"amber", "green"} & set(test_cell(name)["cls"]), name
    amber = [r[0]["text"] for t in page.tables for r in t if any("amber" in c["cls"] for c in r)]
    assert amber == ["fire"]
    assert page.row("hot")[-1]["text"] == "✓ converts above promise"
    assert page.row("warm")[-1]["text"] == "promise kept"
    assert page.row("fire")[-1]["text"] == "⚠ promise not kept"


def test_band_legend_says_amber_is_broken_and_green_beaten(ctx):
    text = " ".join(Page(three_promises(ctx)).sections["bands"].split())
    assert "turns amber when the band breaks its promise" in text
    assert "green when it beats it" in text
    assert "no colour means the promise lies inside the interval: kept" in text


def has_colour(png: bytes, hex_colour: str, alpha: float = 0.85) -> bool:
    """Whether a bar of this colour (drawn with `alpha` over white) appears in the image."""
    import io

    from matplotlib.image import imread

    rgb = imread(io.BytesIO(png))[..., :3]
    target = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    blended = alpha * target + (1 - alpha)
    return bool((np.abs(rgb - blended).max(axis=-1) < 0.02).sum() > 50)


def test_band_plot_colours_a_beaten_promise_green_not_amber(ctx):
    from pipeline.report import _AMBER, _GREEN

    beaten = {"temperature": {"bands": [band("cold", 0.0, None, 200, 10),
                                        band("hot", 0.3, 0.25, 100, 60)]}}
    png = render_plots(replace(ctx, bands=beaten))["bands_temperature.png"]
    assert has_colour(png, _GREEN) and not has_colour(png, _AMBER)
    broken = {"temperature": {"bands": [band("cold", 0.0, None, 200, 10),
                                        band("hot", 0.3, 0.90, 100, 60)]}}
    png = render_plots(replace(ctx, bands=broken))["bands_temperature.png"]
    assert has_colour(png, _AMBER) and not has_colour(png, _GREEN)


def test_headline_calibration_error_is_the_test_splits(ctx):
    test_ece = ctx.metrics["lightgbm"]["ece"]
    cal_ece = ctx.calibration_summary["ece_after"]
    assert f"{100 * test_ece:.1f}" != f"{100 * cal_ece:.1f}"
    page = Page(render_report(ctx, plots={}))
    (item,) = [i for i in page.headline if "percentage points" in i]
    assert item.startswith(f"On the test split, predicted and observed conversion differ by "
                           f"{100 * test_ece:.1f} percentage points on average (ECE)")
    assert f"on the calibration split {100 * cal_ece:.1f} after calibration" in item
    calib = page.table_with("Calibration (cross-fitted)")
    assert [c["text"] for c in page.row("Test (LightGBM model)")][-1] == f"{test_ece:.3f}"
    assert calib == page.table_with("Test (LightGBM model)")


def test_headline_prefers_the_served_model(ctx):
    served = {**ctx.metrics["lightgbm"], "ece": 0.0444, "roc_auc": 0.9111}
    page = Page(render_report(replace(ctx, metrics={**ctx.metrics, "served": served}),
                              plots={}))
    text = " ".join(page.headline)
    assert "differ by 4.4 percentage points" in text and "ROC AUC 0.91 vs" in text


def test_every_headline_number_names_its_split(ctx, page):
    items = Page(page).headline
    assert len(items) == 4
    for item in items:
        assert item.startswith("On the test split, "), item


def test_leads_and_snapshots_are_both_shown_and_labelled(ctx, page):
    parsed = Page(page)
    metrics = parsed.table_with("Test snapshots (rows)")
    labels = [r[0]["text"] for r in metrics]
    assert "Test leads" not in labels  # the snapshot count once sat under this label
    snaps = [c["text"] for c in parsed.row("Test snapshots (rows)")[1:]]
    leads = [c["text"] for c in parsed.row("Test leads (distinct)")[1:]]
    assert snaps == ["300"] * 3 and leads == ["120"] * 3
    assert "Test split: 120 leads, 300 snapshots (rows)." in parsed.sections["metrics"]
    head = parsed.table_with("cold")[1]
    assert [c["text"] for c in head] == ["Snapshots", "Converted (95 % CI)"] * 2
    assert "over 300 snapshots of 120 leads" in " ".join(parsed.headline)


def test_without_lead_counts_nothing_is_called_leads(ctx):
    parsed = Page(render_report(replace(ctx, split_counts={}), plots={}))
    assert "Test leads (distinct)" not in [r[0]["text"] for t in parsed.tables for r in t]
    assert "over 300 snapshots the model never saw" in " ".join(parsed.headline)


def test_fit_engagement_grid_section_and_heat_map(ctx):
    from dataclasses import replace

    from models.subscores import grid_table

    rng = np.random.default_rng(0)
    fit = rng.choice(list("ABCD"), 2000)
    eng = rng.choice(list("1234"), 2000)
    y = (rng.random(2000) < 0.05 + 0.05 * (fit == "A") + 0.04 * (eng == "4")).astype(int)
    cells = grid_table(fit, eng, y).to_dict(orient="records")
    with_grid = replace(ctx, subscores={"cells": cells, "breaks": ["A1 converts less than B1"],
                                        "ece": {"fit": 0.004, "engagement": None}})
    drawn = render_plots(with_grid)
    assert drawn["fit_engagement.png"].startswith(b"\x89PNG")
    html = render_report(with_grid, drawn)
    assert 'id="subscores"' in html or "Fit and engagement" in html
    assert "A1 converts less than B1" in html and "fit 0.4 points" in html
    a1 = next(c for c in cells if c["cell"] == "A1")
    assert f"{100 * a1['rate']:.1f} %" in html
    assert "Fit and engagement" not in render_report(ctx, render_plots(ctx))
