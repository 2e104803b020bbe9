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
