"""Reason codes: golden phrases and the top-k selection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.reasons import describe, top_reasons


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
            "3 ready-to-buy actions (demo, quote, consultation, chat) in the last 90 days",
        ),
        ("days_since_last_pricing", 12.4, "last pricing actions 12 days ago"),
        ("days_since_last_pricing", math.nan, "no pricing actions yet"),
        ("fit_email_domain_type", "free_mail", "free-mail address"),
        ("fit_seniority", "c_level", "seniority: c level"),
        ("fit_bant_answered", 2.0, "answered 2 of 3 qualifying questions"),
        ("fit_log_company_size", math.log1p(250), "company of about 250 employees"),
        ("email_open_rate", 0.25, "email open rate 25%"),
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
            f"− {describe(values.columns[j], values.iloc[i, j])}"
            for j in down
            if row[j] <= -min_abs
        ]
        out.append("; ".join(parts))
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
