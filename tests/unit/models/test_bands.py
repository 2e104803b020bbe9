"""Band cutoffs from business targets: golden cutoffs, fallbacks, JSON, the 1-99 score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.bands import (
    FittedBands,
    apply_bands,
    band_table,
    estimate_leads_per_week,
    fit_bands,
    projected_leads_per_week,
    score_1_99,
    weekly_batches,
)
from models.settings import (
    BandSet,
    BandSpec,
    InputError,
    InsufficientDataError,
    SettingsError,
    parse_band_set,
)

# Five probability levels, four leads each; conversions per level 1, 1, 2, 3, 4.
P5 = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 4)
Y5 = np.array([0, 0, 0, 1] + [1, 0, 0, 0] + [1, 1, 0, 0] + [1, 1, 1, 0] + [1, 1, 1, 1])


def temperature(warm: float = 0.4, hot: float = 0.8, min_size: int = 4, rule: str = "band"):
    return BandSet(
        name="temperature",
        policy="conversion",
        bands=(
            BandSpec("cold"),
            BandSpec("warm", "min_conversion", warm),
            BandSpec("hot", "min_conversion", hot),
        ),
        min_band_size=min_size,
        conversion_rule=rule,
        promise="point",  # these goldens pin the point rule's arithmetic
    )


def test_conversion_policy_golden_cutoffs():
    fitted = fit_bands(P5, Y5, temperature())
    # hot: p >= 0.5 converts 9/12 = 75 % < 80 %; p >= 0.7 converts 7/8 -> cutoff 0.7.
    # warm: [0.3, 0.7) converts 3/8 < 40 %; [0.5, 0.7) converts 2/4 -> cutoff 0.5.
    assert fitted.cutoffs.tolist() == [0.5, 0.7]
    assert fitted.feasible and fitted.messages == []
    assert [(b.n, b.conversions) for b in fitted.bands] == [(8, 2), (4, 2), (8, 7)]
    assert fitted.bands[2].expected_rate == pytest.approx(0.8)


def test_infeasible_conversion_target_falls_back_and_says_so():
    fitted = fit_bands(P5, Y5, temperature(min_size=5))
    # warm can no longer be [0.5, 0.7) (4 leads < 5); best band of >= 5 leads is [0.3, 0.7).
    assert fitted.cutoffs.tolist() == [0.3, 0.7]
    assert not fitted.feasible
    warm = fitted.bands[1]
    assert not warm.feasible and warm.rate == pytest.approx(3 / 8)
    assert (
        "no cutoff gives >= 40.0% observed conversion with >= 5 calibration leads" in warm.message
    )
    assert "best achievable 37.5% (n=8) at p >= 0.3" in warm.message
    assert fitted.bands[2].feasible


def test_marginal_rule_keeps_weak_leads_out_of_the_band():
    p = np.repeat([0.02, 0.1, 0.3, 0.6], 10)
    y = np.array([0] * 10 + [1] + [0] * 9 + [1] * 4 + [0] * 6 + [1] * 6 + [0] * 4)
    band_rule = fit_bands(p, y, temperature(warm=0.25, hot=0.55, min_size=5))
    marginal = fit_bands(p, y, temperature(warm=0.25, hot=0.55, min_size=5, rule="marginal"))
    # [0.1, 0.6) converts 5/20 = 25 %: the band rule accepts the 10 % leads, marginal does not.
    assert band_rule.cutoffs.tolist() == [0.1, 0.6]
    assert marginal.cutoffs.tolist() == [0.3, 0.6]
    assert marginal.to_dict()["conversion_rule"] == "marginal"


P100 = np.arange(1, 101) / 100  # 0.01 ... 1.00
Y100 = (np.arange(100) % 3 == 0).astype(int)


def test_share_policy_quantile_cutoffs():
    bs = BandSet(
        "temperature",
        "share",
        (BandSpec("cold"), BandSpec("warm", "top_share", 0.25), BandSpec("hot", "top_share", 0.10)),
    )
    fitted = fit_bands(P100, Y100, bs)
    assert fitted.cutoffs.tolist() == [0.66, 0.91]
    assert [b.n for b in fitted.bands] == [65, 25, 10]
    assert fitted.feasible


def lifecycle(capacity: float) -> BandSet:
    return BandSet(
        "lifecycle",
        "capacity",
        (
            BandSpec("lead"),
            BandSpec("MQL", "min_conversion", 0.3),
            BandSpec("SQL", "capacity_per_week", capacity),
        ),
        min_band_size=5,
        promise="point",  # pins the point rule's arithmetic
    )


def test_capacity_policy_mixed_with_conversion():
    fitted = fit_bands(P100, Y100, lifecycle(150), leads_per_week=1000)
    sql = fitted.bands[2]
    assert sql.n == 15 and fitted.cutoffs[1] == 0.86
    assert sql.expected_per_week == pytest.approx(150)
    mql = fitted.bands[1]  # smallest cutoff below 0.86 whose band converts >= 30 %
    assert mql.rate >= 0.3 and mql.feasible


# Conversion 1 in 3 below p = 0.8, every lead from 0.8 up.
Y_TOP = np.where(P100 >= 0.8, 1, Y100)


def test_capacity_without_inflow_falls_back_to_min_conversion_and_says_why():
    fitted = fit_bands(P100, Y_TOP, lifecycle(150))  # no leads_per_week: no creation dates
    sql = fitted.bands[2]
    # Fallback target = 2 x MQL's 0.3 = 0.6. p >= 0.46 holds 55 leads: 21 from 0.80 (all
    # convert) + 34 in 0.46..0.79 (12 convert) = 33 / 55 = 0.6; p >= 0.47 gives 32 / 54 < 0.6.
    assert sql.target_kind == "min_conversion" and sql.target == pytest.approx(0.6)
    assert sql.feasible and (sql.n, sql.conversions) == (55, 33) and fitted.cutoffs[1] == 0.46
    assert sql.fallback is not None
    assert "capacity_per_week 150 needs the lead inflow per week" in sql.fallback
    assert "min_conversion 0.6 instead (twice the highest min_conversion below it)" in sql.fallback
    assert sql.fallback in fitted.messages
    assert fitted.to_dict()["bands"][2]["fallback"] == sql.fallback
    assert FittedBands.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    with_inflow = fit_bands(P100, Y_TOP, lifecycle(150), leads_per_week=1000)
    assert with_inflow.bands[2].fallback is None and with_inflow.bands[2].n == 15


def test_capacity_fallback_uses_the_configured_target():
    bs = lifecycle(150)
    sql = BandSpec("SQL", "capacity_per_week", 150, fallback_min_conversion=0.9)
    bs = BandSet("lifecycle", "capacity", (bs.bands[0], bs.bands[1], sql), min_band_size=5,
                 promise="point")
    fitted = fit_bands(P100, Y_TOP, bs)
    assert fitted.bands[2].target == pytest.approx(0.9)
    assert "its fallback_min_conversion" in fitted.bands[2].fallback
    with pytest.raises(SettingsError, match="only applies to a capacity_per_week band"):
        BandSet("x", "conversion", (BandSpec("a"), BandSpec("b", "min_conversion", 0.2,
                                                             fallback_min_conversion=0.5)))


def test_capacity_above_inflow_is_flagged():
    fitted = fit_bands(P100, Y100, lifecycle(2000), leads_per_week=1000)
    sql = fitted.bands[2]
    assert not sql.feasible and "asks for 200.0 of 100 calibration leads" in sql.message
    assert fitted.cutoffs[0] < fitted.cutoffs[1]


def test_share_blocked_by_ties_is_flagged():
    p = np.r_[np.linspace(0.01, 0.5, 70), np.full(30, 0.9)]
    bs = BandSet("t", "share", (BandSpec("low"), BandSpec("top", "top_share", 0.1)))
    fitted = fit_bands(p, np.zeros(100), bs)
    assert fitted.bands[1].n == 30 and not fitted.feasible


def test_too_few_distinct_probabilities():
    with pytest.raises(InsufficientDataError, match="only 2 distinct probabilities"):
        fit_bands([0.1, 0.1, 0.5, 0.5], [0, 1, 1, 1], temperature(min_size=1))


def test_cutoffs_must_increase_also_when_loaded():
    fitted = fit_bands(P5, Y5, temperature())
    data = json.loads(json.dumps(fitted.to_dict()))
    assert FittedBands.from_dict(data) == fitted
    data["bands"][1]["min_propensity"] = 0.8  # warm above hot
    with pytest.raises(SettingsError, match="strictly increasing; got \\[0.8, 0.7\\]"):
        FittedBands.from_dict(data)


def test_apply_bands_boundaries_go_up():
    fitted = fit_bands(P5, Y5, temperature())
    p = np.array([0.0, np.nextafter(0.5, 0), 0.5, np.nextafter(0.7, 0), 0.7, 1.0])
    assert apply_bands(p, fitted).tolist() == ["cold", "cold", "warm", "warm", "hot", "hot"]
    with pytest.raises(ValueError, match="finite"):
        apply_bands([np.nan], fitted)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_apply_bands_is_monotone(ps):
    fitted = fit_bands(P5, Y5, temperature())
    order = {name: i for i, name in enumerate(fitted.names)}
    ranks = [order[b] for b in apply_bands(sorted(ps), fitted)]
    assert ranks == sorted(ranks)


def test_band_table_golden():
    fitted = fit_bands(P5, Y5, temperature())
    rows = band_table(P5, Y5, fitted)
    assert [r["name"] for r in rows] == ["cold", "warm", "hot"]
    warm = rows[1]
    assert warm["min_propensity"] == 0.5 and warm["promised_conversion"] == 0.4
    assert (warm["n"], warm["conversions"], warm["rate"]) == (4, 2, 0.5)
    assert (round(warm["ci_low"], 4), round(warm["ci_high"], 4)) == (0.15, 0.85)
    assert rows[0]["promised_conversion"] is None and rows[0]["min_propensity"] == 0.0
    unlabeled = band_table(P5, None, fitted)
    assert unlabeled[2]["n"] == 8 and unlabeled[2]["rate"] is None


def test_score_1_99():
    p = [0.0, 0.004, 0.005, 0.125, 0.2, 0.5, 0.994, 0.995, 1.0]
    assert score_1_99(p).tolist() == [1, 1, 1, 12, 20, 50, 99, 99, 99]
    with pytest.raises(ValueError, match="finite"):
        score_1_99([np.nan])


def test_estimate_leads_per_week():
    created = pd.date_range("2025-01-01", periods=14, freq="D").repeat(10)  # 140 leads, 2 weeks
    assert estimate_leads_per_week(created) == pytest.approx(70.0)
    ids = np.arange(140).repeat(2)  # two snapshots per lead
    assert estimate_leads_per_week(created.repeat(2), ids) == pytest.approx(70.0)


def test_the_lower_bound_promise_is_stricter_and_clears_its_target():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 6, 20000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    spec = dict(name="t", policy="conversion", min_band_size=30,
                bands=(BandSpec("cold"), BandSpec("hot", "min_conversion", 0.5)))
    point = fit_bands(p, y, BandSet(**spec, promise="point"))
    lower = fit_bands(p, y, BandSet(**spec, promise="lower_bound"))
    assert lower.cutoffs[0] > point.cutoffs[0]
    hot = lower.bands[1]
    from models.metrics import wilson_interval
    assert wilson_interval(hot.conversions, hot.n)[0] >= 0.5
    assert wilson_interval(point.bands[1].conversions, point.bands[1].n)[0] < 0.5


@given(st.lists(st.floats(0, 1), min_size=1, max_size=200))
def test_score_and_band_never_disagree(ps):
    """A lead is in a band exactly when its 1-99 score reaches the band's min score."""
    rng = np.random.default_rng(1)
    p_cal = rng.uniform(0, 1, 400)
    y_cal = (rng.uniform(size=p_cal.size) < p_cal).astype(int)
    fitted = fit_bands(p_cal, y_cal, temperature(warm=0.3, hot=0.7, min_size=20))
    scores = score_1_99(np.array(ps))
    rank = np.searchsorted(fitted.cutoffs, np.array(ps), side="right")
    for k, cut in enumerate(fitted.cutoffs, start=1):
        assert cut == round(cut, 2)  # on the whole-percent grid
        assert ((rank >= k) == (scores >= round(100 * cut))).all()


# ---- weekly batches: capacity counts new entries per week ---------------------------------
# Batches every 7 days from 2025-01-08. A (created 01-02) and B (01-07) are first scored in
# batch 0 (cohort 0); C and D (created 01-15, the moment of batch 1) in batch 1 (cohort 1);
# D is never open at a batch (it converted at once) but is part of the inflow. The creation
# span is 01-02..01-15 = 14 days = 2 weeks, one cohort per week.
T0 = pd.Timestamp("2025-01-08")
WEEK = pd.Timedelta(days=7)
HAND_LEADS = pd.DataFrame({
    "lead_id": ["A", "B", "C", "D"],
    "created_at": pd.to_datetime(["2025-01-02", "2025-01-07", "2025-01-15", "2025-01-15"]),
})
HAND_BATCHES = pd.DataFrame({
    "lead_id": ["A", "B", "A", "B", "C", "A", "B", "C"],
    "as_of": [T0, T0, T0 + WEEK, T0 + WEEK, T0 + WEEK, T0 + 2 * WEEK, T0 + 2 * WEEK,
              T0 + 2 * WEEK],
    "p": [0.5, 0.1, 0.1, 0.4, 0.6, 0.6, 0.1, 0.2],
})


def test_weekly_entries_on_a_hand_made_table():
    w = weekly_batches(HAND_BATCHES, HAND_LEADS)
    assert (w.n_batches, w.n_cohorts, w.n_leads) == (3, 2, 4)
    assert w.inflow_per_week == pytest.approx(2.0)
    # New entries into p >= 0.3 per (cohort, age): cohort 0 (A, B): age 0 A, age 1 B, age 2
    # A again (it left in batch 1); cohort 1 (C, D): age 0 C, age 1 none, age 2 not seen
    # yet -> its 2 leads x the age-2 rate of cohort 0 (1 of 2 leads) = 1.
    # Week 0 = cohort 0 age 0 + cohort 1 age 1 + cohort 0 age 2 = 1 + 0 + 1;
    # week 1 = cohort 1 age 0 + cohort 0 age 1 + cohort 1 age 2 = 1 + 1 + 1.
    np.testing.assert_allclose(w.entries(0.3), [2.0, 3.0])
    # A band with an upper end: 0.3 <= p < 0.55 takes only B (age 1) and A in batch 0
    np.testing.assert_allclose(w.entries(0.3, 0.55), [1.0, 1.0])


def test_a_lead_staying_in_the_band_enters_once_not_once_per_batch():
    # Guard: one lead in the band in all 6 batches is 1 entry, whereas pooled batch rows
    # would count it 6 times. Two leads 7 days apart: span 8 days.
    leads = pd.DataFrame({"lead_id": ["A", "B"],
                          "created_at": pd.to_datetime(["2025-01-01", "2025-01-08"])})
    batches = pd.DataFrame({
        "lead_id": ["A"] * 6 + ["B"] * 5,
        "as_of": [T0 + i * WEEK for i in range(6)] + [T0 + i * WEEK for i in range(1, 6)],
        "p": [0.9] * 6 + [0.1] * 5,
    })
    w = weekly_batches(batches, leads)
    total = w.entries(0.5).sum() / w.per_week  # entries summed over the simulated weeks
    assert total == pytest.approx(1.0)
    assert (batches["p"] >= 0.5).sum() == 6


def test_weekly_batches_refuse_off_grid_moments_and_unknown_leads():
    bad = HAND_BATCHES.assign(as_of=HAND_BATCHES["as_of"].where(
        HAND_BATCHES.index != 3, T0 + pd.Timedelta(days=8)))
    with pytest.raises(InputError, match="7 days apart"):
        weekly_batches(bad, HAND_LEADS)
    with pytest.raises(InputError, match="missing from `leads`"):
        weekly_batches(HAND_BATCHES, HAND_LEADS[HAND_LEADS["lead_id"] != "C"])


def _weekly_capacity_fixture():
    """20 cohorts of 10 leads, one per week; each lead is scored in 4 weekly batches with p
    0.05 + 0.01 * its rank in the cohort (0..9), so p >= S / 100 is entered once by the
    leads ranked S - 5 and up: 15 - S new entries per week (S = 6..14)."""
    rows, leads = [], []
    for c in range(20):
        for r in range(10):
            lid = f"L{c}_{r}"
            leads.append((lid, T0 + c * WEEK - pd.Timedelta(hours=1)))
            rows += [(lid, T0 + (c + a) * WEEK, 0.05 + 0.01 * r) for a in range(4)]
    lead_frame = pd.DataFrame(leads, columns=["lead_id", "created_at"])
    return (pd.DataFrame(rows, columns=["lead_id", "as_of", "p"]), lead_frame)


def test_capacity_cutoff_matches_new_entries_per_week_not_pooled_rows():
    batches, leads = _weekly_capacity_fixture()
    w = weekly_batches(batches, leads)
    p_cal = np.repeat(np.round(0.05 + 0.01 * np.arange(10), 2), 10)
    y_cal = np.tile([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 10)
    bs = BandSet(name="lifecycle", policy="capacity",
                 bands=(BandSpec("lead"), BandSpec("SQL", "capacity_per_week", 3)))
    # creation span 19 weeks + 1 day: inflow 200 / (134 / 7) leads per week
    fitted = fit_bands(p_cal, y_cal, bs, leads_per_week=w.inflow_per_week, weekly=w)
    sql = fitted.bands[1]
    # 3 new leads per week enter at S = 12 (ranks 7, 8, 9) -- scaled by 20 cohorts over the
    # 134-day span
    assert sql.min_propensity == 0.12
    scale = 20 / (134 / 7)
    assert sql.weekly_entries["mean"] == pytest.approx(3 * scale)
    assert sql.weekly_entries["target"] == 3
    assert fitted.weekly["leads"] == 200 and fitted.weekly["statistic"] == "mean"
    # Guard: counting every batch row in the band instead (each lead sits there 4 weeks)
    # puts 4 rows per rank in each batch and would pick S = 14 (4 rows), not S = 12.
    assert w.entries(0.14).mean() == pytest.approx(1 * scale)
    # an expected inflow twice the simulated one halves the simulated target: 1.5 -> S = 13
    twice = BandSet(name="lifecycle", policy="capacity", leads_per_week=2 * w.inflow_per_week,
                    bands=(BandSpec("lead"), BandSpec("SQL", "capacity_per_week", 3)))
    halved = fit_bands(p_cal, y_cal, twice, weekly=w)
    assert halved.bands[1].weekly_entries["target"] == pytest.approx(1.5)
    assert halved.bands[1].min_propensity in (0.13, 0.14)
    # the record survives JSON
    again = FittedBands.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.bands[1].weekly_entries == sql.weekly_entries
    assert again.weekly == fitted.weekly


def test_band_set_leads_per_week_is_checked():
    spec = {"policy": "capacity", "leads_per_week": 300,
            "bands": [{"name": "lead"}, {"name": "SQL", "capacity_per_week": 25}]}
    assert parse_band_set("lifecycle", spec).leads_per_week == 300
    with pytest.raises(SettingsError, match="leads_per_week` must be > 0"):
        parse_band_set("lifecycle", {**spec, "leads_per_week": 0})


def test_projected_inflow_follows_a_linear_trend_to_the_scoring_moment():
    # 10 whole weeks, leads created per week 50, 55, ..., 95 (one a day-spread block)
    days = [pd.Timestamp("2025-01-06") + pd.Timedelta(days=7 * w + (i % 7))
            for w in range(10) for i in range(50 + 5 * w)]
    created = pd.Series(days)
    # the line through the weekly counts (50 + 5 w at week midpoints w + 0.5), read at the
    # end of week 9 (t = 10 weeks) and 4 weeks later
    end = pd.Timestamp("2025-03-17")  # the day after the last whole week
    assert projected_leads_per_week(created, end) == pytest.approx(50 + 5 * 9.5, rel=1e-9)
    later = end + pd.Timedelta(days=28)
    assert projected_leads_per_week(created, later) == pytest.approx(50 + 5 * 13.5, rel=1e-9)
    # flat inflow projects to itself, however far
    flat = pd.Series([d for w in range(10) for d in [pd.Timestamp("2025-01-06")
                      + pd.Timedelta(days=7 * w)] * 40])
    assert projected_leads_per_week(flat, end + pd.Timedelta(days=365)) == pytest.approx(40)
    # Guard: a steep slope far out is clipped to max_change x the mean of the fitted weeks
    mean = float(np.mean([50 + 5 * w for w in range(10)]))
    far = end + pd.Timedelta(days=7 * 200)
    assert projected_leads_per_week(created, far) == pytest.approx(2 * mean)
    # too few whole weeks: no projection
    assert projected_leads_per_week(created[created < "2025-02-03"], end) is None
    with pytest.raises(InputError, match="created_at"):
        projected_leads_per_week(pd.Series([pd.NaT, pd.Timestamp("2025-01-01")]), end)


def test_band_set_inflow_is_checked():
    spec = {"policy": "capacity",
            "bands": [{"name": "lead"}, {"name": "SQL", "capacity_per_week": 25}]}
    assert parse_band_set("lifecycle", spec).inflow == "trend"
    assert parse_band_set("lifecycle", {**spec, "inflow": "calibration"}).inflow == "calibration"
    with pytest.raises(SettingsError, match="inflow` must be 'trend' or 'calibration'"):
        parse_band_set("lifecycle", {**spec, "inflow": "growth"})


def test_the_later_batch_promise_survives_the_sampling_error_of_a_later_batch():
    """`promise: later_batch` (the default) leaves the margin a later batch of the band's
    size needs: on later batches drawn from the same leads, the band's own Wilson lower
    bound clears the promise in nearly every batch; `lower_bound` fails about half of them
    when its band sits at the promise."""
    from models.bands import apply_bands, later_batch_margin
    from models.metrics import wilson_interval

    rng = np.random.default_rng(3)
    spec = dict(name="t", policy="conversion", min_band_size=30,
                bands=(BandSpec("cold"), BandSpec("hot", "min_conversion", 0.5)))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = rng.beta(1.2, 4, n)
        return p, (rng.uniform(size=n) < p).astype(int)

    p, y = draw(6000)
    assert BandSet(**spec).promise == "later_batch"
    fitted = {k: fit_bands(p, y, BandSet(**spec, promise=k)) for k in ("later_batch",
                                                                      "lower_bound")}
    later = fitted["later_batch"].bands[1]
    assert fitted["later_batch"].cutoffs[0] > fitted["lower_bound"].cutoffs[0]
    assert wilson_interval(later.conversions, later.n)[0] >= 0.5 + float(
        later_batch_margin(0.5, later.n)) - 1e-9
    cleared = {k: 0 for k in fitted}
    trials = 200
    for _ in range(trials):
        p2, y2 = draw(6000)
        for k, f in fitted.items():
            inside = apply_bands(p2, f) == "hot"
            cleared[k] += wilson_interval(int(y2[inside].sum()), int(inside.sum()))[0] >= 0.5
    assert cleared["later_batch"] >= 0.9 * trials, cleared
    assert cleared["lower_bound"] < cleared["later_batch"], cleared
