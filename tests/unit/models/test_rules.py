"""Manual point rules: golden scoring, point-in-time invariance, parsing, PDO scaling,
verdicts, planted-truth learning and the suggested rule set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.rules import (
    VERDICTS,
    LearnSettings,
    PointBands,
    RuleError,
    RuleSet,
    check_ruleset,
    comparison_table,
    decay_steps,
    factor_of_pdo,
    learn_points,
    learned_ruleset,
    parse_ruleset,
    pdo_of,
    point_bands,
    rule_features,
    rule_verdict,
    ruleset_to_dict,
    scale_points,
    score_rules,
    spread,
    spread_factor,
    vocabulary,
)
from models.settings import BandSet, BandSpec, InputError, InsufficientDataError, SettingsError

T0 = pd.Timestamp("2025-03-01 12:00:00")
DAY = pd.Timedelta(days=1)


def rules(*items: dict, bands: dict | None = None) -> RuleSet:
    raw: dict = {"rules": list(items)}
    if bands is not None:
        raw["bands"] = bands
    return parse_ruleset(raw)


def make_leads() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": ["a", "b", "c"],
        "created_at": pd.to_datetime([T0 - 100 * DAY, T0 - 10 * DAY, T0 - 50 * DAY]),
        "email": ["ann@gmail.com", "bob@acme-industries.com", None],
        "job_title": ["CEO", "Marketing Manager", "VP Sales"],
        "company_size": pd.array([250, 200, None], dtype="Int64"),
        "budget": ["50k-250k", "<10k", None],
        "source": ["Referral", "paid_search", "referral "],
    })


def make_events() -> pd.DataFrame:
    rows = [
        ("a", T0 - 40 * DAY, "site_visit"),
        ("a", T0 - 3 * DAY, "site_visit"),
        ("a", T0 - 7 * DAY, "price_list_download"),   # exactly at as_of - 7 days: inside
        ("a", T0 - 7 * DAY - pd.Timedelta(seconds=1), "price_list_download"),  # just outside
        ("a", T0, "demo_request"),                     # at as_of: never seen
        ("a", T0 + DAY, "demo_request"),               # after as_of
        ("b", T0 - 1 * DAY, "email_open"),
        ("b", T0 - 2 * DAY, "email_open"),
        ("b", T0 - 3 * DAY, "email_open"),
        ("b", T0 - 4 * DAY, "unsubscribe"),
        ("c", T0 - 45 * DAY, "site_visit"),
        ("c", T0 - 2 * DAY, "email_sent"),             # outbound: not activity
    ]
    return pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])


def make_spine() -> pd.DataFrame:
    return pd.DataFrame({"lead_id": ["c", "a", "b"], "as_of": [T0, T0, T0]},
                        index=[10, 11, 12])


# --------------------------------------------------------------------------- scoring


def test_event_rules_count_per_occurrence_with_windows_and_caps():
    rs = rules(
        {"name": "visits", "event": "site_visit", "points": 1},
        {"name": "price list 7d", "event": "price_list_download", "window_days": 7,
         "points": 20},
        {"name": "price list", "event": "price_list_download", "points": 20},
        {"name": "opens", "event": "email_open", "points": 1, "cap": 2},
        {"name": "demo", "event": "demo_request", "points": 30},
        {"name": "unsub", "event": "unsubscribe", "points": -20},
        {"name": "any intent", "event": ["site_visit", "price_list_download"], "points": 2},
    )
    x = rule_features(make_spine(), make_leads(), make_events(), None, rs)
    assert list(x.columns) == ["lead_id", "as_of", *rs.names]
    assert list(x.index) == [10, 11, 12]
    assert x["lead_id"].tolist() == ["c", "a", "b"]
    assert x["visits"].tolist() == [1, 2, 0]
    assert x["price list 7d"].tolist() == [0, 1, 0]
    assert x["price list"].tolist() == [0, 2, 0]
    assert x["opens"].tolist() == [0, 0, 2]  # 3 opens, capped at 2
    assert x["demo"].tolist() == [0, 0, 0]  # at / after as_of
    assert x["any intent"].tolist() == [1, 4, 0]

    s = score_rules(make_spine(), make_leads(), make_events(), None, rs)
    assert list(s.columns) == ["lead_id", "as_of", *rs.names, "total"]
    assert s["price list"].tolist() == [0, 40, 0]
    assert s["unsub"].tolist() == [0, 0, -20]
    assert s["total"].tolist() == [1 + 2, 2 + 20 + 40 + 8, 2 - 20]


def test_event_rules_with_a_half_life_fade_and_cap():
    rs = rules(
        {"name": "visits fading", "event": "site_visit", "half_life_days": 3, "points": 10},
        {"name": "price list fading", "event": "price_list_download", "half_life_days": 7,
         "cap": 1, "points": 20},
    )
    x = rule_features(make_spine(), make_leads(), make_events(), None, rs)
    # c: one visit 45 days ago; a: visits 40 and 3 days ago; b: none
    assert x["visits fading"].tolist() == pytest.approx([2 ** -15, 2 ** (-40 / 3) + 0.5, 0])
    # a: downloads exactly 7 days ago (1/2) and a second earlier (just under 1/2): capped at 1
    assert x["price list fading"].tolist() == pytest.approx([0, 1.0, 0])
    s = score_rules(make_spine(), make_leads(), make_events(), None, rs)
    assert s["visits fading"].iloc[1] == pytest.approx(10 * (2 ** (-40 / 3) + 0.5))


def test_field_rules_equals_in_range_and_missing():
    rs = rules(
        {"name": "free mail", "field": "fit_email_domain_type", "equals": "free_mail",
         "points": -10},
        {"name": "boss", "field": "fit_seniority", "in": ["c_level", "vp"], "points": 10},
        {"name": "200+", "field": "company_size", "range": [200, None], "points": 10},
        {"name": "200-249", "field": "company_size", "range": [200, 249], "points": 1},
        {"name": "budget", "field": "budget", "in": ["50k-250k", ">250k"], "points": 10},
        {"name": "referral", "field": "source", "equals": "REFERRAL", "points": 3},
    )
    s = score_rules(make_spine(), make_leads(), None, None, rs)
    # spine order c, a, b
    assert s["free mail"].tolist() == [0, -10, 0]  # c has no email: never matches
    assert s["boss"].tolist() == [10, 10, 0]
    assert s["200+"].tolist() == [0, 10, 10]  # 200 is inside [200, null]; missing never
    assert s["200-249"].tolist() == [0, 0, 1]
    assert s["budget"].tolist() == [0, 10, 0]
    assert s["referral"].tolist() == [3, 3, 0]  # case and blanks ignored
    assert s["total"].tolist() == [13, 23, 11]


def test_fit_fields_come_from_a_given_frame_per_lead_or_per_snapshot():
    rs = rules({"name": "hot", "field": "segment", "equals": "hot", "points": 7},
               {"name": "young", "field": "lead_age_days", "range": [None, 20], "points": 2})
    spine = make_spine()
    per_snapshot = spine.assign(segment=["hot", "cold", "hot"], lead_age_days=[50, 100, 10])
    s = score_rules(spine, make_leads(), None, per_snapshot, rs)
    assert s["total"].tolist() == [7, 0, 9]
    per_lead = pd.DataFrame({"lead_id": ["a", "b", "c"], "segment": ["hot", None, "x"],
                             "lead_age_days": [1.0, 30.0, np.nan]})
    s = score_rules(spine, make_leads(), None, per_lead, rs)
    assert s["total"].tolist() == [0, 9, 0]
    with pytest.raises(InputError, match="row-aligned"):
        score_rules(spine, make_leads(), None, per_snapshot.iloc[::-1], rs)


def test_decay_counts_steps_of_inactivity_since_last_activity_or_creation():
    rs = rules({"name": "silence", "decay": {"after_days": 30, "per_days": 30}, "points": -5},
               {"name": "silence capped",
                "decay": {"after_days": 30, "per_days": 30, "max_steps": 1}, "points": -5})
    x = rule_features(make_spine(), make_leads(), make_events(), None, rs)
    # c: last activity 45 days ago (email_sent 2 days ago is not activity) -> 1 step
    # a: active 3 days ago -> 0; b: active 1 day ago -> 0
    assert x["silence"].tolist() == [1, 0, 0]
    quiet = make_events().query("lead_id != 'a'")
    x = rule_features(make_spine(), make_leads(), quiet, None, rs)
    # a never active: its age (100 days) counts -> 1 + floor(70 / 30) = 3 steps; capped 1
    assert x["silence"].tolist() == [1, 3, 0]
    assert x["silence capped"].tolist() == [1, 1, 0]
    s = score_rules(make_spine(), make_leads(), quiet, None, rs)
    assert s["total"].tolist() == [-10, -20, 0]


def test_decay_steps_golden():
    steps = decay_steps([0, 29.9, 30, 59.9, 60, 125, np.nan], 30, 30)
    assert steps.tolist() == [0, 0, 1, 1, 2, 4, 0]
    assert decay_steps([125], 30, 30, max_steps=2).tolist() == [2]
    assert decay_steps([10], 0, 7).tolist() == [2]


def test_event_type_missing_from_events_scores_zero_and_no_events_is_fine():
    rs = rules({"name": "quote", "event": "quote_request", "points": 30})
    s = score_rules(make_spine(), make_leads(), make_events(), None, rs)
    assert s["total"].tolist() == [0, 0, 0]
    s = score_rules(make_spine(), make_leads(), None, None, rs)
    assert s["total"].tolist() == [0, 0, 0]


def test_scoring_leaves_inputs_untouched_and_checks_leads():
    spine, leads, events = make_spine(), make_leads(), make_events()
    before = (spine.copy(), leads.copy(), events.copy())
    rs = rules({"name": "v", "event": "site_visit", "points": 1},
               {"name": "f", "field": "fit_email_domain_type", "equals": "free_mail",
                "points": -1})
    score_rules(spine, leads, events, None, rs)
    for a, b in zip((spine, leads, events), before, strict=True):
        pd.testing.assert_frame_equal(a, b)
    with pytest.raises(InputError, match="missing from leads"):
        score_rules(spine.assign(lead_id=["zz", "a", "b"]), leads, events, None, rs)


def test_point_bands_threshold_goes_to_higher_band():
    rs = rules({"name": "v", "event": "site_visit", "points": 1},
               bands={"temperature": {"warm": 30, "hot": 70}})
    (pb,) = rs.bands
    assert pb.names == ("cold", "warm", "hot")
    assert point_bands([-5, 29.9, 30, 69, 70, 500], pb).tolist() == [
        "cold", "cold", "warm", "warm", "hot", "hot"]


# --------------------------------------------------------------------------- point in time

EVENT_TYPES = ["site_visit", "pricing_view", "email_open", "email_sent"]
PIT_RULES = rules(
    {"name": "visit", "event": "site_visit", "points": 1},
    {"name": "pricing 7d", "event": "pricing_view", "window_days": 7, "points": 5},
    {"name": "opens", "event": "email_open", "points": 1, "cap": 3},
    {"name": "silence", "decay": {"after_days": 5, "per_days": 5}, "points": -5},
)
AS_OFS = (T0, T0, T0 - 20 * DAY)
offsets = st.floats(min_value=-60, max_value=60, allow_nan=False) | st.sampled_from([0.0, -20.0])
event = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(EVENT_TYPES), offsets)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(event, max_size=16))
def test_events_at_or_after_as_of_never_change_rule_points(items):
    """Each snapshot's points equal its points computed without any event at or after its
    own as_of (events sit on both sides of every as_of, some exactly on it)."""
    leads = make_leads().iloc[:2]
    spine = pd.DataFrame({"lead_id": ["a", "b", "a"], "as_of": list(AS_OFS)})
    events = pd.DataFrame({
        "lead_id": [lead for lead, _, _ in items],
        "timestamp": pd.Series([T0 + pd.Timedelta(days=d) for _, _, d in items],
                               dtype="datetime64[us]"),
        "event_type": [t for _, t, _ in items],
    }, columns=["lead_id", "timestamp", "event_type"])
    full = score_rules(spine, leads, events, None, PIT_RULES)
    for i, as_of in enumerate(AS_OFS):
        seen = events[events["timestamp"] < as_of]
        alone = score_rules(spine, leads, seen, None, PIT_RULES)
        pd.testing.assert_series_equal(alone.iloc[i], full.iloc[i])


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("rule", "path", "message"), [
    ({"name": "x", "event": "a"}, ("rules", 0), "needs `points`"),
    ({"name": "x", "event": "a", "points": "ten"}, ("rules", 0, "points"), "must be a number"),
    ({"name": "x", "event": "a", "points": 1, "cap": 0}, ("rules", 0, "cap"),
     "positive integer"),
    ({"name": "x", "event": "a", "points": 1, "window_days": 2.5},
     ("rules", 0, "window_days"), "positive integer"),
    ({"name": "x", "event": "a", "points": 1, "windows": 7}, ("rules", 0, "windows"),
     "did you mean `window_days`"),
    ({"name": "x", "points": 1}, ("rules", 0), "exactly one of `event`, `field` or `decay`"),
    ({"name": "x", "field": "f", "points": 1}, ("rules", 0), "one of `equals`, `in`"),
    ({"name": "x", "field": "f", "range": [10, 5], "points": 1}, ("rules", 0, "range"),
     "lo <= hi"),
    ({"name": "x", "field": "f", "range": [None, None], "points": 1}, ("rules", 0, "range"),
     "at least one bound"),
    ({"name": "x", "field": "f", "range": ["a", 5], "points": 1}, ("rules", 0, "range", 0),
     "numbers or null"),
    ({"name": "x", "field": "country", "equals": False, "points": 1},
     ("rules", 0, "equals"), "quote the value"),
    ({"name": "x", "field": "email", "equals": "a@b.c", "points": 1},
     ("rules", 0, "field"), "personal data"),
    ({"name": "x", "field": "converted", "equals": 1, "points": 1},
     ("rules", 0, "field"), "leak"),
    ({"name": "x", "decay": {"after_days": 30}, "points": -5}, ("rules", 0, "decay"),
     "needs `per_days`"),
    ({"name": "x", "decay": {"after_days": 30, "per_days": 0}, "points": -5},
     ("rules", 0, "decay", "per_days"), "> 0"),
    ({"name": "total", "event": "a", "points": 1}, ("rules", 0, "name"), "reserved"),
    ({"name": "x", "event": "a", "half_life_days": 0, "points": 1},
     ("rules", 0, "half_life_days"), "> 0"),
    ({"name": "x", "event": "a", "half_life_days": 7, "window_days": 7, "points": 1},
     ("rules", 0), "not both"),
])
def test_malformed_rules_name_the_place(rule, path, message):
    with pytest.raises(RuleError, match=message) as err:
        parse_ruleset({"rules": [rule]})
    assert err.value.path == path


def test_duplicate_names_and_bands_are_refused():
    a = {"name": "Visit", "event": "site_visit", "points": 1}
    with pytest.raises(RuleError, match="used twice") as err:
        parse_ruleset({"rules": [a, {**a, "name": "visit"}]})
    assert err.value.path == ("rules", 1, "name")
    with pytest.raises(RuleError, match="not above `warm`") as err:
        parse_ruleset({"rules": [a], "bands": {"temperature": {"warm": 70, "hot": 30}}})
    assert err.value.path == ("bands", "temperature", "hot")
    with pytest.raises(RuleError, match="must be a number") as err:
        parse_ruleset({"rules": [a], "bands": {"lifecycle": {"MQL": "forty"}}})
    assert err.value.path == ("bands", "lifecycle", "MQL")
    with pytest.raises(RuleError, match="only the first entry may be null"):
        parse_ruleset({"rules": [a], "bands": {"t": {"cold": None, "warm": None}}})


def test_band_lowest_names():
    a = {"name": "v", "event": "site_visit", "points": 1}
    rs = parse_ruleset({"rules": [a], "bands": {
        "temperature": {"warm": 30, "hot": 70}, "lifecycle": {"MQL": 40, "SQL": 80},
        "tiers": {"bronze": None, "silver": 10, "gold": 20}, "custom": {"A": 5}}})
    assert [b.names for b in rs.bands] == [
        ("cold", "warm", "hot"), ("lead", "MQL", "SQL"), ("bronze", "silver", "gold"),
        ("below_A", "A")]


def test_check_ruleset_against_the_data():
    rs = rules({"name": "price list", "event": "price_lst_download", "points": 20})
    voc = vocabulary(make_leads(), make_events(), None,
                     {"pricing": ["pricing_view", "price_list_download"]})
    with pytest.raises(RuleError) as err:
        check_ruleset(rs, voc)
    assert str(err.value) == ("rule 'price list' names event type 'price_lst_download', which "
                              "the events never contain; close matches: price_list_download")
    assert err.value.path == ("rules", 0, "event", 0)
    # a type only the configured groups know is fine (the export may just lack it)
    check_ruleset(rules({"name": "p", "event": "pricing_view", "points": 5}), voc)

    with pytest.raises(RuleError, match="close matches: company_size"):
        check_ruleset(rules({"name": "s", "field": "company_sise", "range": [1, 2],
                             "points": 1}), voc)
    with pytest.raises(RuleError, match="needs a numeric field"):
        check_ruleset(rules({"name": "s", "field": "budget", "range": [1, 2], "points": 1}),
                      voc)
    with pytest.raises(RuleError, match="close matches: c_level"):
        check_ruleset(rules({"name": "s", "field": "fit_seniority", "in": ["vp", "c-level"],
                             "points": 1}), voc)
    with pytest.raises(RuleError, match="needs numbers"):
        check_ruleset(rules({"name": "s", "field": "company_size", "equals": "big",
                             "points": 1}), voc)
    # fit columns derived from the leads count as fields
    check_ruleset(rules({"name": "f", "field": "fit_email_domain_type", "equals": "free_mail",
                         "points": -10}), voc)


def test_ruleset_round_trips_through_its_dict():
    rs = rules(
        {"name": "v", "event": ["site_visit", "blog_read"], "window_days": 30, "cap": 5,
         "points": 1},
        {"name": "f", "field": "budget", "in": ["50k-250k", ">250k"], "points": 2.5},
        {"name": "r", "field": "company_size", "range": [200, None], "points": 10},
        {"name": "d", "decay": {"after_days": 30, "per_days": 15, "max_steps": 4},
         "points": -5},
        {"name": "h", "event": "demo_request", "half_life_days": 12.5, "cap": 1, "points": 30},
        bands={"temperature": {"warm": 30, "hot": 70}},
    )
    assert parse_ruleset(ruleset_to_dict(rs)) == rs


# --------------------------------------------------------------------------- scaling


def test_spread_and_pdo_golden_values():
    assert spread(np.arange(11) * 10.0) == pytest.approx(80.0)
    assert spread_factor(np.arange(11) * 10.0, np.arange(11) * 0.5) == pytest.approx(20.0)
    # the learned direction does not matter, only the width
    assert spread_factor(np.arange(11) * 10.0, -np.arange(11) * 2.0) == pytest.approx(5.0)
    ties = np.array([0.0] * 20 + [10.0])
    assert spread(ties) == pytest.approx(np.std(ties))  # interdecile range 0 -> std
    assert pdo_of(20.0) == pytest.approx(13.862943611)
    assert factor_of_pdo(20.0) == pytest.approx(28.853900818)
    assert pdo_of(factor_of_pdo(37.0)) == pytest.approx(37.0)
    np.testing.assert_allclose(scale_points([0.5, -0.25, 0.0], 20.0), [10.0, -5.0, 0.0])
    with pytest.raises(InsufficientDataError, match="rules.pdo"):
        spread_factor(np.zeros(10), np.arange(10.0))
    with pytest.raises(SettingsError):
        factor_of_pdo(-1)


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(("manual", "learned", "lo", "hi", "support", "expected"), [
    (20, 18, 12, 25, 0.3, "about right"),      # manual inside the interval
    (20, 16, 14, 17, 0.3, "about right"),      # outside, but within 25 %
    (20, 6, 3, 9, 0.3, "overweighted"),
    (5, 30, 20, 40, 0.3, "underweighted"),
    (-10, -50, -70, -35, 0.3, "underweighted"),  # penalty too small
    (-20, -4, -8, -1, 0.3, "overweighted"),      # penalty too big
    (10, -8, -12, -3, 0.3, "wrong sign"),
    (-15, 9, 2, 16, 0.3, "wrong sign"),
    (20, 3, -2, 8, 0.005, "no evidence"),       # interval holds 0, support tiny
    (5, 2, -20, 25, 0.3, "no evidence"),         # interval holds 0, 45 points wide > 2 x 5
    (0, 0.5, -1, 1, 0.3, "about right"),
    (0, 8, 4, 12, 0.3, "underweighted"),
    (10, math.nan, math.nan, math.nan, 0.0, "no evidence"),
])
def test_verdicts(manual, learned, lo, hi, support, expected):
    assert rule_verdict(manual, learned, lo, hi, support) == expected
    assert expected in VERDICTS


def test_verdict_thresholds_are_settings():
    assert rule_verdict(20, 14, 12, 16, 0.3) == "overweighted"
    assert rule_verdict(20, 14, 12, 16, 0.3, LearnSettings(tolerance=0.35)) == "about right"


# --------------------------------------------------------------------------- learning

PLANTED = rules(
    {"name": "strong", "event": "demo_request", "points": 1},
    {"name": "useless", "event": "price_list_download", "points": 20},
    {"name": "visits", "event": "site_visit", "points": 1, "cap": 10},
    {"name": "bad", "field": "fit_email_domain_type", "equals": "free_mail", "points": 10},
    {"name": "never", "event": "careers_view", "points": -15},
)


def planted(n_leads: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rule inputs of 2 snapshots per lead and labels from a known logistic truth:
    strong +2.0, useless 0, visits +0.15 per visit, bad -1.0, never (always 0)."""
    rng = np.random.default_rng(seed)
    n = 2 * n_leads
    x = pd.DataFrame({
        "lead_id": np.repeat([f"L{i}" for i in range(n_leads)], 2),
        "as_of": pd.Timestamp("2025-01-01"),
        "strong": rng.binomial(1, 0.2, n).astype(float),
        "useless": rng.binomial(1, 0.3, n).astype(float),
        "visits": np.minimum(rng.poisson(3, n), 10).astype(float),
        "bad": rng.binomial(1, 0.4, n).astype(float),
        "never": np.zeros(n),
    })
    logit = -2.0 + 2.0 * x["strong"] + 0.15 * x["visits"] - 1.0 * x["bad"]
    y = rng.binomial(1, 1 / (1 + np.exp(-logit)))
    return x, y


FAST = LearnSettings(n_bootstrap=40, seed=7)


def test_learned_points_recover_a_planted_truth():
    x, y = planted()
    lp = learn_points(x, y, PLANTED, FAST)
    table = comparison_table(lp).set_index("rule")
    # log-odds per unit recovered (weak penalty, 6000 rows)
    coef = dict(zip(lp.rules, lp.coef, strict=True))
    assert coef["strong"] == pytest.approx(2.0, abs=0.25)
    assert coef["visits"] == pytest.approx(0.15, abs=0.05)
    assert coef["bad"] == pytest.approx(-1.0, abs=0.2)
    assert abs(coef["useless"]) < 0.2
    assert table.loc["strong", "verdict"] == "underweighted"
    assert table.loc["useless", "verdict"] in ("overweighted", "no evidence")
    assert table.loc["bad", "verdict"] == "wrong sign"
    assert table.loc["never", "verdict"] == "no evidence"
    assert math.isnan(table.loc["never", "learned_points"])
    # points are log-odds times one factor; intervals bracket the estimate
    np.testing.assert_allclose(lp.points[:4], lp.factor * lp.coef[:4])
    assert lp.pdo == pytest.approx(lp.factor * math.log(2))
    learnable = table.drop(index="never")
    assert (learnable["ci_low"] <= learnable["learned_points"]).all()
    assert (learnable["learned_points"] <= learnable["ci_high"]).all()
    # same spread as the manual total (interdecile range on the training rows)
    X = x[PLANTED.names].to_numpy()
    learned_total = X[:, :4] @ lp.points[:4]
    assert spread(learned_total) == pytest.approx(spread(X @ PLANTED.points))
    # support and lift are plain counts
    assert table.loc["strong", "support"] == pytest.approx(x["strong"].mean())
    fires = x["strong"].to_numpy() > 0
    assert table.loc["strong", "lift"] == pytest.approx(y[fires].mean() / y[~fires].mean())


def test_learning_is_seeded_and_pdo_can_be_fixed():
    x, y = planted(800, seed=3)
    a = learn_points(x, y, PLANTED, FAST)
    b = learn_points(x, y, PLANTED, FAST)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    fixed = learn_points(x, y, PLANTED, LearnSettings(n_bootstrap=5, pdo=20))
    assert fixed.pdo == pytest.approx(20)
    np.testing.assert_allclose(fixed.points[:4], fixed.coef[:4] * 20 / math.log(2))


def test_comparison_table_has_exactly_the_columns():
    x, y = planted(500, seed=1)
    table = comparison_table(learn_points(x, y, PLANTED, LearnSettings(n_bootstrap=5)))
    assert list(table.columns) == ["rule", "manual_points", "learned_points", "ci_low",
                                   "ci_high", "support", "lift", "verdict"]
    assert table["rule"].tolist() == PLANTED.names
    assert table["manual_points"].tolist() == [1, 20, 1, 10, -15]


def test_learning_needs_both_outcomes():
    x, _ = planted(100)
    with pytest.raises(InsufficientDataError, match="positives"):
        learn_points(x, np.zeros(len(x)), PLANTED, FAST)


def test_learn_settings_from_params():
    assert LearnSettings.from_params({"n_bootstrap": 50}).n_bootstrap == 50
    with pytest.raises(SettingsError, match="`rules.bootstrap` is not a known setting"):
        LearnSettings.from_params({"bootstrap": 50})
    with pytest.raises(SettingsError, match="`rules.C` must be > 0"):
        LearnSettings(C=0)
    with pytest.raises(SettingsError, match="`rules.ci_level`"):
        LearnSettings(ci_level=95)


# --------------------------------------------------------------------------- suggestion


def temperature_set() -> BandSet:
    return BandSet(name="temperature", policy="conversion", min_band_size=30,
                   bands=(BandSpec("cold"), BandSpec("warm", "min_conversion", 0.2),
                          BandSpec("hot", "min_conversion", 0.5)))


def test_learned_ruleset_points_and_band_thresholds():
    rs = parse_ruleset({**ruleset_to_dict(PLANTED), "bands": {
        "temperature": {"warm": 20, "hot": 40}, "lifecycle": {"MQL": 10, "SQL": 30}}})
    x, y = planted(3000, seed=0)
    train = x["lead_id"].str[1:].astype(int) < 2000
    lp = learn_points(x[train], y[train], rs, FAST)
    new = learned_ruleset(rs, lp, x[~train], y[~train], {"temperature": temperature_set()},
                          settings=LearnSettings(round_to=0.5))
    points = dict(zip(new.names, new.points, strict=True))
    for j, name in enumerate(rs.names[:4]):
        assert points[name] == pytest.approx(round(lp.points[j] * 2) / 2)
    assert points["never"] == -15  # not learnable: keeps the manual points
    temp, life = new.bands
    assert temp.names == ("cold", "warm", "hot")
    total = x[~train][new.names].to_numpy() @ new.points
    # thresholds are real calibration totals, and the bands are the ones fit_bands chose
    assert set(temp.thresholds) <= set(total)
    labels = point_bands(total, temp)
    for band in temp.fitted.bands:
        assert np.sum(labels == band.name) == band.n
    hot = y[~train][total >= temp.thresholds[-1]]
    assert hot.mean() >= 0.5 or not temp.fitted.bands[-1].feasible
    # a band set the model does not know keeps the share above each manual threshold
    manual_total = x[~train][rs.names].to_numpy() @ rs.points
    for t_new, t_old in zip(life.thresholds, rs.bands[1].thresholds, strict=True):
        assert np.mean(total >= t_new) == pytest.approx(np.mean(manual_total >= t_old),
                                                        abs=0.05)
    assert "share" in life.note
    # the suggestion is a valid rule set in the same format
    assert parse_ruleset(ruleset_to_dict(new)) == new


def test_point_bands_validate():
    with pytest.raises(SettingsError, match="strictly increasing"):
        PointBands("t", ("a", "b", "c"), (10.0, 10.0))
