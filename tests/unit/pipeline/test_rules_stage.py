"""The `rules` stage and its report: the comparison table, the suggested rules file, the
side-by-side performance (hot leads reconcile with the band tables), the model's weights next
to the rules, plots, the summary, the what-if helper, and the CLI entry with MLflow.

A tiny world is built once per module from hand-made leads and events with planted effects
(the newsletter signup marks *low* intent, so the manual +10 has the wrong sign), trained
with the real `models.training.train_all`, then passed through `stage.run` in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from features.build import build_features, feature_columns, feature_groups
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models.metrics import roc_auc
from models.rules import VERDICTS, parse_ruleset, rule_features
from models.settings import InputError
from models.training import train_all
from pipeline import rules_report as report
from pipeline.errors import ConfigError, DataError
from pipeline.rules_config import load_rules
from pipeline.settings import parse_params
from pipeline.stages import rules as stage
from tests.helpers import tiny_training

T0 = pd.Timestamp("2025-01-01")
PNG = b"\x89PNG\r\n\x1a\n"
RAW_PARAMS = {
    "snapshots": {"ages_days": [1, 7, 30]},
    "label": {"horizon_days": 30},
    "features": {"windows_days": [7, 30], "event_groups": {
        "research": ["site_visit", "newsletter_signup"], "pricing": ["pricing_view"],
        "ready_to_buy": ["demo_request"]}},
    **tiny_training(60),
    "bands": {
        "temperature": tiny_training()["bands"]["temperature"],
        "lifecycle": {"policy": "share", "min_band_size": 5, "bands": [
            {"name": "lead"}, {"name": "MQL", "top_share": 0.4},
            {"name": "SQL", "top_share": 0.15}]},
    },
    "rules": {"n_bootstrap": 30, "seed": 3},
}
RULES = {
    "rules": [
        {"name": "site visit", "event": "site_visit", "points": 1},
        {"name": "newsletter signup", "event": "newsletter_signup", "points": 10},
        {"name": "pricing view", "event": "pricing_view", "points": 5},
        {"name": "demo request", "event": "demo_request", "points": 30},
        {"name": "c-level or vp", "field": "fit_seniority", "in": ["c_level", "vp"],
         "points": 10},
        {"name": "free mail address", "field": "fit_email_domain_type", "equals": "free_mail",
         "points": -10},
        {"name": "inactivity", "decay": {"after_days": 20, "per_days": 10}, "points": -5},
    ],
    "bands": {"temperature": {"warm": 10, "hot": 30}, "lifecycle": {"MQL": 15, "SQL": 40}},
}
RULES_YAML = """rules:
  - {name: site visit, event: site_visit, points: 1}
  - {name: newsletter signup, event: newsletter_signup, points: 10}
  - {name: pricing view, event: pricing_view, points: 5}
  - {name: demo request, event: demo_request, points: 30}
  - {name: c-level or vp, field: fit_seniority, in: [c_level, vp], points: 10}
  - {name: free mail address, field: fit_email_domain_type, equals: free_mail, points: -10}
  - {name: inactivity, decay: {after_days: 20, per_days: 10}, points: -5}
bands:
  temperature: {warm: 10, hot: 30}
  lifecycle: {MQL: 15, SQL: 40}
"""


def make_tables(n: int = 900, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed leads and events: intent drives pricing views, demo requests and conversion;
    the newsletter signup is what low-intent leads do."""
    rng = np.random.default_rng(seed)
    created = (T0 + pd.to_timedelta(rng.uniform(0, 300, n), unit="D")).floor("s")
    title = rng.choice(["CEO", "VP Sales", "Marketing Manager", "Engineer", "Intern"], n)
    free = rng.random(n) < 0.35
    intent = (rng.normal(size=n) + 0.8 * np.isin(title, ["CEO", "VP Sales"]) - 0.6 * free)
    p = 1 / (1 + np.exp(2.2 - 1.6 * intent))
    conv = rng.random(n) < p
    conv_at = created + pd.to_timedelta(3 + rng.exponential(12, n), unit="D")
    ids = [f"L{i:04d}" for i in range(n)]
    leads = pd.DataFrame({
        "lead_id": ids,
        "created_at": created.astype("datetime64[us]"),
        "email": np.where(free, [f"p{i}@gmail.com" for i in range(n)],
                          [f"p{i}@acme{i % 7}.com" for i in range(n)]),
        "job_title": title,
        "company_size": pd.array(rng.choice([5, 40, 300, 2000], n), dtype="Int64"),
        "converted": conv.astype("int8"),
        "converted_at": pd.Series(conv_at).where(conv).astype("datetime64[us]"),
    })
    rows = []
    for i in range(n):
        pi = 1 / (1 + np.exp(-intent[i]))
        end = (conv_at[i] - created[i]).days if conv[i] else 60
        k = rng.poisson(2 + 5 * pi)
        types = rng.choice(["site_visit", "pricing_view", "demo_request"], k,
                           p=[0.7 - 0.3 * pi, 0.2 + 0.15 * pi, 0.1 + 0.15 * pi])
        if rng.random() < 0.9 * (1 - pi) ** 2:
            types = np.append(types, "newsletter_signup")
        days = rng.uniform(0, max(end, 1), types.size)
        rows += [(ids[i], created[i] + pd.Timedelta(days=d), t)
                 for d, t in zip(days, types, strict=True)]
    events = pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])
    events["timestamp"] = pd.to_datetime(events["timestamp"]).dt.floor("s").astype("datetime64[us]")
    events = events.sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)
    return leads, events


@pytest.fixture(scope="module")
def world() -> dict:
    params = parse_params(RAW_PARAMS)
    leads, events = make_tables()
    fs = FeatureSettings.from_params(params.features)
    snap = SnapshotSettings.from_params(params.snapshots, params.label)
    frame = build_features(training_spine(leads, snap, data_end(leads, events)), leads, events,
                           fs)
    cols = feature_columns(frame)
    groups = feature_groups(cols, fs)
    trained = train_all(frame, cols, params.split, params.train, params.calibration,
                        params.bands, horizon_days=30, groups=groups)
    ruleset = parse_ruleset(RULES)
    result = stage.run(frame, trained.predictions, leads, events, ruleset, trained.bundle,
                       stage.learn_settings(params), params.bands, params.calibration,
                       groups=groups, feature_settings=fs, data_end=data_end(leads, events))
    test = (trained.predictions["split"] == "test").to_numpy()
    return {"params": params, "leads": leads, "events": events, "frame": frame, "fs": fs,
            "groups": groups, "trained": trained, "ruleset": ruleset, "result": result,
            "test": test}


@pytest.fixture(scope="module")
def written(world, tmp_path_factory) -> dict[str, Path]:
    return stage.write_outputs(world["result"], tmp_path_factory.mktemp("reports"))


# ----------------------------------------------------------------------------- comparison


def test_comparison_csv_has_exactly_the_columns_and_allowed_verdicts(world, written):
    table = pd.read_csv(written["comparison"])
    assert list(table.columns) == ["rule", "manual_points", "learned_points", "ci_low",
                                   "ci_high", "support", "lift", "verdict", "why"]
    assert table["rule"].tolist() == world["ruleset"].names
    assert set(table["verdict"]) <= set(VERDICTS)
    assert table["manual_points"].tolist() == [1, 10, 5, 30, 10, -10, -5]
    learned = table.dropna(subset=["learned_points"])
    assert (learned["ci_low"] <= learned["ci_high"]).all()


def test_planted_wrong_sign_is_found_and_headlined(world):
    table = world["result"].comparison.set_index("rule")
    assert table.loc["newsletter signup", "verdict"] == "wrong sign"
    assert table.loc["newsletter signup", "ci_high"] < 0
    assert table.loc["demo request", "learned_points"] > 0
    assert "wrong sign" in world["result"].summary
    assert "newsletter signup" in world["result"].summary.split("## Rule by rule")[0]


def test_learned_yaml_loads_back_with_the_learned_points_and_increasing_thresholds(world,
                                                                                 written):
    loaded = load_rules(written["learned"])
    suggested = world["result"].learned_ruleset
    assert loaded == suggested
    assert loaded.names == world["ruleset"].names
    learned = world["result"].learned
    finite = np.isfinite(learned.points)
    np.testing.assert_array_equal(loaded.points[finite], np.round(learned.points[finite]))
    assert [b.set_name for b in loaded.bands] == ["temperature", "lifecycle"]
    assert loaded.bands[0].names == ("cold", "warm", "hot")
    for b in loaded.bands:
        assert np.all(np.diff(b.thresholds) > 0)
    text = written["learned"].read_text()
    assert "newsletter signup" in text and "wrong sign" in text


# ----------------------------------------------------------------------------- performance


def test_hot_lead_counts_reconcile_with_the_band_tables(world, written):
    perf = json.loads(written["performance"].read_text())
    y = world["trained"].predictions.loc[world["test"], "label"].to_numpy()
    assert perf["n"] == y.size and perf["positives"] == int(y.sum())
    assert list(perf["scorers"]) == ["manual_rules", "learned_rules", "logreg", "lightgbm"]
    for scorer, e in perf["scorers"].items():
        for set_name, bands in e["bands"].items():
            assert sum(b["n"] for b in bands.values()) == perf["n"], (scorer, set_name)
            assert sum(b["conversions"] for b in bands.values()) == perf["positives"]
        top_name, top = list(e["bands"]["temperature"].items())[-1]
        hot = e["hot"]
        assert (hot["band"], hot["n"], hot["conversions"]) == (top_name, top["n"],
                                                              top["conversions"])
        if hot["n"]:
            assert hot["rate"] == pytest.approx(hot["conversions"] / hot["n"])
            assert hot["ci_low"] <= hot["rate"] <= hot["ci_high"]
        assert hot["share_of_conversions"] == pytest.approx(hot["conversions"] / perf["positives"])


def test_manual_hot_band_is_the_leads_at_or_above_the_rules_yaml_threshold(world):
    test = world["frame"].loc[world["test"]]
    x = rule_features(test[["lead_id", "as_of", "created_at"]], world["leads"], world["events"],
                      test, world["ruleset"])
    total = x[world["ruleset"].names].to_numpy() @ world["ruleset"].points
    y = test["label"].to_numpy()
    hot = world["result"].performance["scorers"]["manual_rules"]["hot"]
    assert hot["from"] == 30
    assert hot["n"] == int((total >= 30).sum())
    assert hot["conversions"] == int(y[total >= 30].sum())
    assert world["result"].performance["scorers"]["manual_rules"]["roc_auc"] == pytest.approx(
        roc_auc(y, total))


def test_models_are_judged_on_their_calibrated_probability_and_fitted_bands(world):
    preds = world["trained"].predictions.loc[world["test"]]
    perf = world["result"].performance["scorers"]
    for scorer in ("lightgbm", "logreg"):
        assert perf[scorer]["roc_auc"] == pytest.approx(roc_auc(preds["label"],
                                                                preds[f"p_{scorer}"]))
        cut = world["trained"].bundle.bands["temperature"].cutoffs[-1]
        assert perf[scorer]["hot"]["n"] == int((preds[f"p_{scorer}"] >= cut).sum())


def test_flat_metrics_for_mlflow(world):
    m = world["result"].metrics
    for scorer in report.SCORERS:
        for key in ("roc_auc", "pr_auc", "hot_n", "hot_conversions"):
            assert f"rules.{scorer}.{key}" in m
    assert m["rules.manual_rules.temperature.hot.n"] == m["rules.manual_rules.hot_n"]
    assert m["rules.verdicts.wrong_sign"] >= 1
    assert all(np.isfinite(v) for v in m.values())


# ----------------------------------------------------------------------------- weights


def test_rules_map_to_the_feature_groups_of_their_behaviour(world):
    bundle = world["trained"].bundle
    rm = report.rule_feature_map(world["ruleset"], bundle.features, world["groups"],
                                 world["fs"]).set_index("rule")
    assert rm.loc["newsletter signup", "groups"] == ("behaviour:research",)
    assert set(rm.loc["newsletter signup", "features"]) == {
        "evt_newsletter_signup_7d", "evt_newsletter_signup_30d", "evt_newsletter_signup_all"}
    assert rm.loc["pricing view", "groups"] == ("behaviour:pricing",)
    assert rm.loc["c-level or vp", "groups"] == ("fit:job_title",)
    assert rm.loc["free mail address", "groups"] == ("fit:email",)
    assert rm.loc["inactivity", "groups"] == ("behaviour:activity",)
    # an event type the model never saw still lands in its configured group
    other = parse_ruleset({"rules": [{"name": "x", "event": "unknown_thing", "points": 1},
                                     {"name": "y", "event": "pricing_view", "points": 1}]})
    fs = FeatureSettings.from_params({"event_groups": {"pricing": ["unknown_thing"]}})
    rm2 = report.rule_feature_map(other, ["evt_pricing_view_all"], {}, fs).set_index("rule")
    assert rm2.loc["x", "features"] == () and rm2.loc["x", "groups"] == ("behaviour:pricing",)


def test_weights_table_groups_then_features_with_the_rules_beside(world, written):
    w = pd.read_csv(written["weights"], keep_default_na=False, na_values=[""])
    assert tuple(w.columns) == report.WEIGHT_COLUMNS
    levels = w["level"].tolist()
    assert levels == sorted(levels, key=lambda v: v != "group")
    groups, feats = w[w["level"] == "group"], w[w["level"] == "feature"]
    assert groups["model_share"].sum() == pytest.approx(1.0)
    assert set(feats["feature"]) == set(world["trained"].bundle.features)
    assert groups["model_mean_abs_log_odds"].is_monotonic_decreasing
    research = groups.set_index("group").loc["behaviour:research"]
    assert "newsletter signup" in research["rules"]
    assert "newsletter signup: +10 -> " in research["rule_points"]
    assert research["rules_mean_abs_log_odds"] > 0
    summed = feats.groupby("group")["model_mean_abs_log_odds"].sum()
    np.testing.assert_allclose(groups.set_index("group").loc[summed.index,
                                                             "model_mean_abs_log_odds"],
                               summed.to_numpy())


# ----------------------------------------------------------------------------- plots, summary


def test_plots_are_deterministic_png_bytes_and_written(world, written):
    plots = world["result"].plots
    assert set(plots) == {report.PLOT_POINTS, report.PLOT_WEIGHTS, report.PLOT_BACKTEST,
                          report.PLOT_DECAY,
                          "conversion_by_band_temperature.png",
                          "conversion_by_band_lifecycle.png"}
    for name, png in plots.items():
        assert png.startswith(PNG), name
        assert b"Software" not in png[:200]
        assert (written["plots"] / name).read_bytes() == png
    again = report.render_plots(world["result"].comparison, world["result"].performance,
                                world["result"].weights)
    assert again == plots


def test_write_outputs_removes_stale_plots(world, tmp_path):
    (tmp_path / stage.PLOTS_DIR).mkdir()
    (tmp_path / stage.PLOTS_DIR / "old.png").write_bytes(PNG)
    paths = stage.write_outputs(world["result"], tmp_path)
    assert sorted(p.name for p in paths["plots"].iterdir()) == sorted(world["result"].plots)


def test_summary_headlines_the_most_wrong_rule_and_links_the_plots(world, written):
    text = written["summary"].read_text()
    worst = report.most_wrong(world["result"].comparison)
    assert len(worst) and (worst["miss"].diff().dropna() <= 0).all()
    first = worst.iloc[0]
    headline = text.split("## Headline", 1)[1].split("\n## ", 1)[0]
    assert f"**Most wrong: `{first['rule']}`**" in headline
    assert first["verdict"] in headline
    for label in ("Manual rules", "Learned-point rules", "Logistic regression", "LightGBM"):
        assert label in headline
    for name in world["result"].plots:
        assert f"](rules_plots/{name})" in text
    assert "| rule | manual | learned |" in text


def test_most_wrong_ranks_by_distance_outside_the_interval():
    comp = pd.DataFrame({
        "rule": ["a", "b", "c", "d"], "manual_points": [10.0, 5.0, -5.0, 1.0],
        "learned_points": [2.0, 20.0, -6.0, 0.0], "ci_low": [0.0, 12.0, -8.0, -3.0],
        "ci_high": [4.0, 30.0, -4.0, 3.0], "support": 0.5, "lift": 1.0,
        "verdict": ["overweighted", "underweighted", "about right", "no evidence"]})
    worst = report.most_wrong(comp)
    assert worst["rule"].tolist() == ["b", "a"]
    assert worst["miss"].tolist() == [7.0, 6.0]
    assert worst["gap"].tolist() == [15.0, -8.0]


# ----------------------------------------------------------------------------- what-if


def _test_inputs(world):
    test = world["frame"].loc[world["test"]].reset_index(drop=True)
    x = rule_features(test[["lead_id", "as_of", "created_at"]], world["leads"], world["events"],
                      test, world["ruleset"])
    return x, test["label"].to_numpy()


def test_rescore_without_overrides_reproduces_the_manual_rules(world):
    x, y = _test_inputs(world)
    r = report.rescore_with_overrides(x, y, world["ruleset"], {})
    assert r.metrics.index.tolist() == ["manual", "edited"]
    assert r.metrics.loc["manual"].equals(r.metrics.loc["edited"])
    manual = world["result"].performance["scorers"]["manual_rules"]
    assert r.metrics.loc["manual", "roc_auc"] == pytest.approx(manual["roc_auc"])
    assert r.metrics.loc["manual", "hot_n"] == manual["hot"]["n"]
    wide = r.compare_bands()
    assert wide.index.tolist()[:3] == [("temperature", "cold"), ("temperature", "warm"),
                                       ("temperature", "hot")]
    assert wide.loc[("temperature", "hot"), "n_manual"] == manual["hot"]["n"]


def test_rescore_with_overrides_moves_auc_and_bands(world):
    x, y = _test_inputs(world)
    names = world["ruleset"].names
    only_demo = {n: 0 for n in names if n != "demo request"}
    r = report.rescore_with_overrides(x, y, world["ruleset"], only_demo)
    assert r.metrics.loc["edited", "roc_auc"] == pytest.approx(roc_auc(y, x["demo request"]))
    assert r.changes.set_index("rule").loc["newsletter signup"].tolist() == [10.0, 0.0]
    edited = r.bands[(r.bands["version"] == "edited") & (r.bands["band_set"] == "temperature")]
    assert edited.set_index("band").loc["hot", "n"] == int((x["demo request"] >= 1).sum())


def test_rescore_rejects_unknown_rules_and_bad_points(world):
    x, y = _test_inputs(world)
    with pytest.raises(InputError, match="did you mean 'newsletter signup'"):
        report.rescore_with_overrides(x, y, world["ruleset"], {"newsletter signups": 0})
    with pytest.raises(InputError, match="finite number"):
        report.rescore_with_overrides(x, y, world["ruleset"], {"demo request": float("nan")})


# ----------------------------------------------------------------------------- entry point


def test_bad_rules_params_and_mismatched_predictions_are_user_errors(world):
    with pytest.raises(ConfigError, match="rules.C"):
        stage.learn_settings(parse_params({**RAW_PARAMS, "rules": {"C": -1}}))
    with pytest.raises(ConfigError, match="rules.bootstrap"):
        stage.learn_settings(parse_params({**RAW_PARAMS, "rules": {"bootstrap": 5}}))
    preds = world["trained"].predictions.iloc[5:]
    with pytest.raises(DataError, match="5 feature snapshot"):
        stage.align(world["frame"], preds)


@pytest.mark.slow
def test_from_params_writes_the_reports_and_logs_to_the_training_run(world, tmp_path,
                                                                     monkeypatch):
    from pipeline import tracking
    from pipeline.io import write_json, write_parquet

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    params = world["params"]
    (tmp_path / "rules.yaml").write_text(RULES_YAML)
    write_parquet(Path(params.paths.interim) / "leads.parquet", world["leads"])
    write_parquet(Path(params.paths.interim) / "events.parquet", world["events"])
    write_parquet(Path(params.paths.features) / "train.parquet", world["frame"])
    write_json(Path(params.paths.features) / "meta.json", {"groups": world["groups"]})
    mdir = Path(params.paths.models)
    write_parquet(mdir / "predictions.parquet", world["trained"].predictions)
    joblib.dump(world["trained"].bundle, mdir / "bundle.joblib")
    tracking.configure()
    ml = tracking.mlflow()
    ml.set_experiment(tracking.TRAINING_EXPERIMENT)
    with ml.start_run() as run:
        run_id = run.info.run_id
    write_json(mdir / "run.json", {"run_id": run_id})

    shown = stage.from_params(params)

    reports = Path(params.paths.reports)
    for name in (stage.COMPARISON_FILE, stage.LEARNED_FILE, stage.PERFORMANCE_FILE,
                 stage.WEIGHTS_FILE, stage.SUMMARY_FILE):
        assert (reports / name).exists(), name
    assert set(shown["roc_auc"]) == set(report.SCORERS)
    headline = json.loads((reports / stage.HEADLINE_FILE).read_text())["rules"]
    assert headline == {"manual_auc": round(shown["roc_auc"]["manual_rules"], 4),
                        "learned_auc": round(shown["roc_auc"]["learned_rules"], 4)}
    assert any(s.startswith("newsletter signup") for s in shown["most_wrong"]) or \
        "wrong sign" in shown["verdicts"]
    data = ml.MlflowClient().get_run(run_id).data
    assert data.metrics["rules.lightgbm.roc_auc"] == pytest.approx(shown["roc_auc"]["lightgbm"])
    assert "rules.manual_rules.hot_n" in data.metrics
    artifacts = {a.path for a in ml.MlflowClient().list_artifacts(run_id, "rules")}
    assert {"rules/rules_comparison.csv", "rules/rules.learned.yaml", "rules/rules_summary.md",
            "rules/rules_performance.json", "rules/rules_vs_model_weights.csv",
            "rules/rules_plots"} <= artifacts
    plots = {a.path for a in ml.MlflowClient().list_artifacts(run_id, "rules/rules_plots")}
    assert "rules/rules_plots/points_manual_vs_learned.png" in plots


# ----------------------------------------------------------------------------- why


def test_every_verdict_has_its_one_sentence_why(world, written):
    table = pd.read_csv(written["comparison"])
    assert table["why"].notna().all()
    for row in table.to_dict("records"):
        why = row["why"]
        assert why.endswith(".") and why.count(". ") == 0, why  # one sentence
        assert len(why) > 40, why
    wrong = table.set_index("rule").loc["newsletter signup"]
    assert wrong["verdict"] == "wrong sign"
    assert "opposite of the manual +10 points per event" in wrong["why"]
    summary = world["result"].summary
    assert "| verdict | why |" in summary
    for why in table["why"]:
        assert why in summary


def row(verdict, manual, learned, lo, hi, support=0.3, lift=1.5, rule="r"):
    return {"rule": rule, "manual_points": manual, "learned_points": learned, "ci_low": lo,
            "ci_high": hi, "support": support, "lift": lift, "verdict": verdict}


@pytest.mark.parametrize(("r", "overlaps", "expected"), [
    # a sign flip from overlap: alone it goes the manual way, next to its twin it does not
    (row("wrong sign", 1, -2.0, -3.0, -1.0, lift=1.9), [("blog read", 0.62)],
     "On its own it goes the manual way (the leads it fires for convert 1.90 times as often "
     "as the rest), but it fires on the same leads as blog read (r = +0.62): once they are "
     "counted it lowers the odds"),
    (row("wrong sign", 1, -2.0, -3.0, -1.0, lift=1.9), [],
     "next to all the other rules it lowers the odds"),
    (row("wrong sign", 3, -4.0, -6.0, -2.0, lift=0.8), [],
     "Even on its own the leads it fires for convert 0.80 times as often as the rest"),
    (row("overweighted", 20, 8.0, 5.0, 11.0, lift=2.6), [("pricing view", 0.55)],
     "It fires on the same leads as pricing view (r = +0.55), which share its credit"),
    (row("overweighted", 1, -0.8, -1.8, 0.1, lift=1.48), [("blog read", 0.74),
                                                          ("pricing view", 0.71)],
     "It fires on the same leads as blog read (r = +0.74) and pricing view (r = +0.71), "
     "which share its credit: next to them it is worth −0.8 points per event, not the manual "
     "+1"),
    (row("overweighted", 20, 8.0, 5.0, 11.0, support=0.02), [],
     "It fires on only 2.0 % of the training snapshots, so the fit's shrinkage (`rules.C`) "
     "pulls its points toward 0"),
    (row("no evidence", 5, 1.0, -1.0, 3.0, support=0.004), [],
     "It fires on only 0.4 % of the training snapshots (below `rules.min_support` 1.0 %)"),
    (row("no evidence", 5, 2.0, -9.0, 13.0), [], "spans zero and is more than 2 times"),
    (row("no evidence", 5, np.nan, np.nan, np.nan), [], "fires on all or none"),
    (row("about right", 5, 5.5, 2.0, 8.0), [], "lie inside the data's 95 % interval"),
    (row("underweighted", 5, 15.0, 10.0, 20.0, lift=3.0), [], "more than the manual +5"),
])
def test_explain_verdict_names_the_reason(r, overlaps, expected):
    why = report.explain_verdict(r, overlaps=overlaps, unit="per event")
    assert expected in why, why
    assert why.endswith(".")


def test_large_learned_points_are_translated_into_odds():
    r = row("underweighted", -5, -100.0, -130.0, -70.0, support=0.6, lift=0.1,
            rule="inactivity")
    why = report.explain_verdict(r, unit="per 30 days of silence", pdo=20.0)
    assert "a harsher penalty than the manual −5" in why
    assert "−100 points per 30 days of silence means the odds halve about 5.0 times" in why
    assert "halve" not in report.explain_verdict(r, unit="per 30 days of silence", pdo=200.0)


def test_rule_overlaps_finds_rules_firing_on_the_same_leads():
    rng = np.random.default_rng(0)
    a = rng.poisson(2, 500).astype(float)
    x = pd.DataFrame({"a": a, "a twin": a + rng.poisson(0.3, 500), "noise": rng.random(500),
                      "never": np.zeros(500)})
    out = report.rule_overlaps(x, list(x.columns))
    assert [n for n, _ in out["a"]] == ["a twin"] and out["a"][0][1] > 0.8
    assert out["noise"] == [] and out["never"] == []
    assert report.rule_overlaps(x, list(x.columns), min_corr=0.99)["a"] == []


def test_render_is_a_table_with_rounded_numbers():
    from rich.console import Console

    shown = {"roc_auc": {"manual_rules": 0.699512345678, "lightgbm": 0.7712345678},
             "verdicts": {"wrong sign": 2, "about right": 5},
             "most_wrong": ["site visit: +1 -> -2.0 (wrong sign)"],
             "most_wrong_why": [{"rule": "site visit", "points": "+1 -> -2.0 (wrong sign)",
                                 "why": "On its own it goes the manual way."}],
             "test_snapshots": 7984, "test_leads": 3219, "summary": "reports/rules_summary.md"}
    console = Console(width=140, record=True)
    console.print(stage.render(shown))
    text = console.export_text()
    assert "0.700" in text and "0.771" in text and "0.6995" not in text
    assert "3,219 test leads, 7,984 snapshots" in " ".join(text.split())
    assert "Manual rules" in text and "wrong sign" in text
    assert "On its own it goes the manual way." in text
    assert "{" not in text  # no Python dict


def test_decision_backtest_compares_model_rules_and_random_per_weekly_capacity(world, written):
    bt = world["result"].performance["decision_backtest"]
    rows = pd.DataFrame(bt["rows"])
    assert bt["weeks"] >= 2 and bt["converted_leads"] > 0
    assert set(rows["scorer"]) == {"served_model", "manual_rules", "random"}
    for _, part in rows.groupby("scorer"):
        part = part.sort_values("capacity")
        assert (part["reached"] <= bt["converted_leads"]).all()
        assert part["calls"].is_monotonic_increasing       # more capacity, more calls
    top = rows[rows["capacity"] == rows["capacity"].max()].set_index("scorer")["reached"]
    assert top.nunique() == 1            # calling everyone reaches the same leads
    mid = rows[rows["capacity"] == sorted(rows["capacity"].unique())[2]].set_index("scorer")
    assert mid.loc["served_model", "reached"] >= mid.loc["random", "reached"]
    summary = written["summary"].read_text(encoding="utf-8")
    assert "Backtest of the decision" in summary
    assert (written["plots"] / "decision_backtest.png").stat().st_size > 1000


def test_decay_per_intent_group_is_learned_on_training_leads_and_reported(world, written):
    decay = world["result"].performance["decay"]
    groups = {g["group"]: g for g in decay["groups"]}
    assert groups, "no intent group got a half-life"
    for g in groups.values():
        assert g["ci_low"] <= g["half_life_days"] <= g["ci_high"]
        assert g["configured_half_life_days"] == world["fs"].decay_half_life_days
        assert g["val_log_loss_learned"] is not None     # judged on the calibration split
    summary = written["summary"].read_text(encoding="utf-8")
    assert "How fast interest fades" in summary
    learned = written["learned"].read_text(encoding="utf-8")
    block = learned.split("# Suggested decay", 1)[1] if decay["faded_rules"] else ""
    for name in decay["faded_rules"]:
        line = next(x for x in block.splitlines() if f"name: {name}," in x)
        assert "half_life_days:" in line and line.startswith("#   - ")
