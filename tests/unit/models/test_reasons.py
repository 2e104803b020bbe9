"""Reason codes: golden phrases and the top-k selection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.reasons import PHRASES_FILE, PhraseError, describe, load_phrases, top_reasons


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("evt_pricing_view_30d", 4, "viewed the pricing page 4 times in the last 30 days"),
        ("evt_price_list_download_all", 1, "downloaded the price list once so far"),
        ("evt_demo_request_7d", 0, "no demo requests in the last 7 days"),
        ("evt_mystery_thing_7d", 2, "had 'mystery_thing' events 2 times in the last 7 days"),
        (
            "grp_ready_to_buy_90d",
            3,
            "3 requests for a demo, quote or consultation in the last 90 days",
        ),
        ("grp_ready_to_buy_90d", 1,
         "1 request for a demo, quote or consultation in the last 90 days"),
        ("days_since_last_ready_to_buy", 3.2, "asked for a demo, quote or consultation 3 days ago"),
        ("days_since_last_pricing", 12.4, "looked at prices 12 days ago"),
        ("days_since_last_pricing", 1.0, "looked at prices 1 day ago"),
        ("sessions_30d", 1, "1 visit in the last 30 days"),
        ("sessions_30d", 2, "2 visits in the last 30 days"),
        ("lead_age_days", 1, "the lead came in 1 day ago"),
        ("streak_unopened_emails", 1, "left the last marketing email unopened"),
        ("streak_unopened_emails", 3, "left the last 3 marketing emails unopened"),
        ("fit_email_domain_type", "free_mail", "free-mail address"),
        ("fit_seniority", "c_level", "seniority: c level"),
        ("fit_bant_answered", 2.0, "answered 2 of 3 qualifying questions"),
        ("fit_log_company_size", math.log1p(250), "company of about 250 employees"),
        ("email_open_rate", 0.25, "open rate of marketing emails 25%"),
        ("trend_7d_vs_prior_30d", -0.3, "activity fading"),
        ("extra_lead_score_from_crm", 7, "lead score from crm: 7"),
    ],
)
def test_describe_golden_phrases(feature: str, value: object, expected: str) -> None:
    assert describe(feature, value) == expected


def test_top_reasons_orders_for_and_against_and_skips_small_contributions() -> None:
    features = ["evt_pricing_view_30d", "fit_email_domain_type", "fit_seniority", "lead_age_days"]
    values = pd.DataFrame(
        {
            "evt_pricing_view_30d": [4, 0],
            "fit_email_domain_type": ["free_mail", "corporate"],
            "fit_seniority": ["vp", "intern"],
            "lead_age_days": [30.0, 3.0],
        }
    )
    contrib = np.array(
        [
            [1.2, -0.8, 0.3, 0.01],  # pricing and VP for; free mail against; age too small
            [-0.02, 0.4, -0.6, 0.0],  # corporate for; intern against
        ]
    )
    out = top_reasons(contrib, values, features, n_for=2, n_against=1)
    assert out[0] == (
        "+ viewed the pricing page 4 times in the last 30 days; + seniority: vp; "
        "− free-mail address"
    )
    assert out[1] == "+ corporate email address; − seniority: intern"


def test_top_reasons_rejects_misaligned_contributions() -> None:
    with pytest.raises(ValueError, match="2 columns but 3 feature names"):
        top_reasons(np.zeros((1, 2)), pd.DataFrame({"a": [1], "b": [2], "c": [3]}), ["a", "b", "c"])


def reference_reasons(
    contrib: np.ndarray, values: pd.DataFrame, n_for: int, n_against: int, min_abs: float = 0.05
) -> list[str]:
    """Row by row: sort by contribution (ties: the earlier column), keep the qualifying."""
    out = []
    for i, row in enumerate(contrib):
        up = sorted(range(len(row)), key=lambda j: (-row[j], j))[:n_for]
        down = sorted(range(len(row)), key=lambda j: (row[j], j))[:n_against]
        parts = [
            f"+ {describe(values.columns[j], values.iloc[i, j])}" for j in up if row[j] >= min_abs
        ]
        parts += [
            f"− {describe(values.columns[j], values.iloc[i, j], against=True)}"
            for j in down
            if row[j] <= -min_abs
        ]
        out.append("; ".join(p for p in parts if p not in ("+ ", "− ")))
    return out


def test_top_reasons_picks_like_a_row_by_row_sort_with_ties_to_the_earlier_column() -> None:
    rng = np.random.default_rng(0)
    n, k = 400, 12
    # few distinct values: many ties, many rows with fewer qualifying values than asked for
    contrib = rng.choice([-0.3, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.3], size=(n, k))
    contrib[:, [2, 7]] = 0.0  # never a reason
    names = [f"x{j}" for j in range(k)]
    values = pd.DataFrame(rng.integers(0, 5, size=(n, k)) * 1.5, columns=names)
    for n_for, n_against in [(3, 2), (1, 1), (5, 0), (0, 4), (20, 20)]:
        out = top_reasons(contrib, values, names, n_for, n_against)
        assert out == reference_reasons(contrib, values, n_for, n_against)
        # columns that are zero everywhere can be left out
        kept = [j for j in range(k) if contrib[:, j].any()]
        assert (
            top_reasons(contrib[:, kept], values, [names[j] for j in kept], n_for, n_against) == out
        )
    assert top_reasons(contrib, values, names, 0, 0) == [""] * n


@pytest.mark.parametrize(
    "feature",
    [
        "evt_pricing_view_30d",
        "grp_ready_to_buy_90d",
        "sessions_all",
        "days_since_last_pricing",
        "days_since_first_activity",
        "lead_age_days",
        "decay_score",
        "trend_7d_vs_prior_30d",
        "email_open_rate",
        "fit_bant_answered",
        "fit_budget_rank",
        "extra_lead_score_from_crm",
    ],
)
def test_top_reasons_phrase_every_value_as_describe_does(feature: str) -> None:
    """Values that print alike are phrased once: halves, signed zeros, tiny and huge."""
    edges = [
        -2.5,
        -1.5,
        -0.5,
        -0.49999,
        -0.0,
        0.0,
        1e-300,
        0.49999,
        0.5,
        0.50001,
        1.0,
        1.5,
        2.5,
        3.5,
        7.25,
        2.0**52 + 1.0,
        1e20,
        math.nan,
    ]
    values = np.random.default_rng(1).permutation(edges * 3 + [0.285, 0.125, 0.005])
    out = top_reasons(
        np.ones((len(values), 1)),
        pd.DataFrame({feature: values}),
        [feature],
        n_for=1,
        n_against=0,
        min_abs=0.5,
    )
    expected = [describe(feature, v) for v in values]
    assert out == [f"+ {e}" if e else "" for e in expected]
    missing = top_reasons(np.ones((2, 1)), pd.DataFrame({feature: [math.nan] * 2}), [feature])
    assert missing == [f"+ {describe(feature, None)}" if describe(feature, None) else ""] * 2


@pytest.mark.parametrize("contrib", [
    np.full((4, 3), 0.01),  # a weak model: nothing clears min_abs
    np.zeros((4, 0)),  # a model that splits on nothing
    np.array([[0.3], [-0.2], [0.0], [0.04]]),  # one feature, fewer than n_for + n_against
])
def test_weak_models_give_few_or_no_reasons_and_never_crash(contrib: np.ndarray) -> None:
    names = [f"evt_site_visit_{i}d" for i in (7, 30, 90)][: contrib.shape[1]]
    values = pd.DataFrame({n: np.ones(contrib.shape[0]) for n in names})
    out = top_reasons(contrib, values, names)
    assert len(out) == contrib.shape[0]
    expected = [bool((np.abs(row) >= 0.05).any()) for row in contrib]
    assert [bool(r) for r in out] == expected


# ------------------------------------------------------------ the phrase file's rules


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("days_since_last_ready_to_buy", 1.0, "asked for a demo, quote or consultation 1 day ago"),
        ("days_since_last_ready_to_buy", 2.0, "asked for a demo, quote or consultation 2 days ago"),
        ("sessions_7d", 1, "1 visit in the last 7 days"),
        ("sessions_7d", 4, "4 visits in the last 7 days"),
        ("grp_pricing_30d", 1, "1 look at prices in the last 30 days"),
        ("grp_pricing_30d", 2, "2 looks at prices in the last 30 days"),
        ("evt_demo_request_90d", 1, "asked for a demo once in the last 90 days"),
        ("evt_demo_request_90d", 2, "asked for a demo 2 times in the last 90 days"),
        ("bursts_all", 1, "1 burst of activity so far"),
        ("bursts_all", 3, "3 bursts of activity so far"),
        ("burst_gap_days", 1, "came back after 1 day of silence"),
    ],
)
def test_singular_and_plural_forms(feature: str, value: float, expected: str) -> None:
    assert describe(feature, value) == expected


def test_a_stale_event_against_says_its_age_and_that_interest_faded() -> None:
    assert describe("days_since_last_demo_request", 20, against=True) == (
        "asked for a demo 20 days ago; interest has faded since"
    )
    assert describe("days_since_last_ready_to_buy", 20.0, against=True) == (
        "asked for a demo, quote or consultation 20 days ago; interest has faded since"
    )
    # as a reason for, the same event reads plainly
    assert describe("days_since_last_ready_to_buy", 3.0) == (
        "asked for a demo, quote or consultation 3 days ago"
    )
    out = top_reasons(np.array([[-0.4]]), pd.DataFrame({"days_since_last_ready_to_buy": [20.0]}),
                      ["days_since_last_ready_to_buy"])
    assert out == ["− asked for a demo, quote or consultation 20 days ago; interest has faded "
                   "since"]


def test_a_count_against_carries_the_last_events_age_or_is_left_out() -> None:
    features = ["grp_ready_to_buy_90d"]
    contrib = np.array([[-0.5], [-0.5], [-0.5]])
    values = pd.DataFrame({"grp_ready_to_buy_90d": [2.0, 0.0, 1.0],
                           "days_since_last_ready_to_buy": [40.0, np.nan, np.nan]})
    out = top_reasons(contrib, values, features)
    assert out == [
        "− 2 requests for a demo, quote or consultation in the last 90 days, the last 40 days "
        "ago; interest has faded since",
        "− no requests for a demo, quote or consultation in the last 90 days",  # no event
        "",  # an event whose age is unknown: left out
    ]
    # the age is not among the values: the count against is left out, a zero count stays
    out = top_reasons(contrib, values[features], features)
    assert out == ["", "− no requests for a demo, quote or consultation in the last 90 days", ""]


@pytest.mark.parametrize(
    ("feature", "value"),
    [
        ("fit_industry", "unknown"),
        ("fit_industry", None),
        ("fit_seniority", "Unknown"),
        ("fit_email_domain_type", "unknown"),
        ("fit_log_company_size", math.nan),
        ("extra_lead_quality", "Not provided"),
        ("days_since_last_pricing", math.nan),
    ],
)
def test_an_unknown_or_missing_value_is_never_a_reason_for(feature: str, value: object) -> None:
    assert describe(feature, value) == ""
    frame = pd.DataFrame({feature: pd.Series([value, value], dtype=object)})
    if feature.startswith(("fit_log", "days_")):
        frame = frame.astype(float)
    out = top_reasons(np.array([[0.5], [-0.5]]), frame, [feature])
    assert out[0] == ""
    assert out[1].startswith("− ") and "unknown" not in out[1].lower()


def test_missing_values_against_name_what_is_missing() -> None:
    assert describe("fit_industry", "unknown", against=True) == "no industry given"
    assert describe("fit_function", None, against=True) == "no job function given"
    cats = pd.DataFrame({"fit_industry": pd.Categorical(["unknown", "software"])})
    out = top_reasons(np.array([[0.5], [0.5]]), cats, ["fit_industry"])
    assert out == ["", "+ industry: software"]


def test_jargon_is_replaced_with_plain_words() -> None:
    text = describe("days_since_last_ready_to_buy", 3.0)
    assert "ready-to-buy" not in text and "(" not in text
    assert "ready" not in describe("grp_ready_to_buy_30d", 2)


def test_editing_a_copy_of_the_phrase_file_changes_the_reasons(tmp_path) -> None:
    copy = tmp_path / "phrases.yaml"
    text = PHRASES_FILE.read_text(encoding="utf-8")
    edited = text.replace('demo_request: {done: "asked for a demo"',
                          'demo_request: {done: "booked a product demo"')
    edited = edited.replace('stale: "; interest has faded since"',
                            'stale: " (that was a while ago)"')
    assert edited != text
    copy.write_text(edited, encoding="utf-8")
    mine = load_phrases(copy)
    assert describe("evt_demo_request_30d", 1, phrases=mine) == (
        "booked a product demo once in the last 30 days"
    )
    assert describe("days_since_last_demo_request", 20, against=True, phrases=mine) == (
        "booked a product demo 20 days ago (that was a while ago)"
    )
    out = top_reasons(np.array([[0.4]]), pd.DataFrame({"evt_demo_request_7d": [2.0]}),
                      ["evt_demo_request_7d"], phrases=mine)
    assert out == ["+ booked a product demo 2 times in the last 7 days"]
    # the shipped file is untouched
    assert describe("evt_demo_request_30d", 1) == "asked for a demo once in the last 30 days"
    # an edit of the same copy is picked up
    copy.write_text(edited.replace("booked a product demo", "saw a demo"), encoding="utf-8")
    import os

    os.utime(copy, ns=(1, copy.stat().st_mtime_ns + 10**9))
    assert describe("evt_demo_request_30d", 1, phrases=load_phrases(copy)).startswith(
        "saw a demo once")


def test_a_broken_phrase_file_names_the_file_and_the_entry(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("plural: {times: {one: once}}\n", encoding="utf-8")
    with pytest.raises(PhraseError, match="bad.yaml: missing section"):
        load_phrases(bad)
    text = PHRASES_FILE.read_text(encoding="utf-8").replace(
        'times: {one: "once", other: "{n} times"}', 'times: {one: "once"}')
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(PhraseError, match=r"`plural.times` needs both `one:` and `other:`"):
        load_phrases(bad)
    with pytest.raises(PhraseError, match="not found"):
        load_phrases(tmp_path / "none.yaml")


def test_every_phrase_family_is_covered_by_the_shipped_file() -> None:
    shipped = load_phrases()
    for feature, value in [
        ("evt_site_visit_7d", 2), ("grp_research_30d", 2), ("events_30d", 2),
        ("active_days_30d", 1), ("days_since_first_activity", 4), ("decay_score", 0.2),
        ("trend_7d_vs_prior_30d", 0.1), ("email_click_rate", 0.1), ("days_since_email_open", 3),
        ("seq_email_click_visit_30d", 1), ("days_since_seq_email_click_visit", 2),
        ("landing_research_all", 3), ("bursts_all", 1), ("bursts_current_events", 2),
        ("burst_age_days", 1), ("burst_gap_days", 30), ("fit_bant_answered", 1.0),
        ("fit_region", "emea"),
    ]:
        text = describe(feature, value, phrases=shipped)
        assert text and "{" not in text, (feature, text)
