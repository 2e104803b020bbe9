"""The assembled feature frame, report groups and the scoring-alignment helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import (
    align_features,
    basic_feature_columns,
    build_features,
    category_levels,
    feature_columns,
    feature_groups,
)
from features.settings import FeatureSettings, SettingsError, SnapshotSettings
from features.snapshots import training_spine

T0 = pd.Timestamp("2025-01-01 08:00")
D = pd.Timedelta(days=1)
SETTINGS = FeatureSettings(event_groups={"research": ["site_visit"], "pricing": ["pricing_view"]})


def leads() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": pd.Series(["a", "b"], dtype="str"),
        "created_at": pd.Series([T0, T0 + D]).astype("datetime64[us]"),
        "email": pd.Series(["ann.lee@acme.io", None], dtype="str"),
        "industry": pd.Series(["software", "retail"], dtype="str"),
        "converted": [1, 0],
        "converted_at": pd.Series([T0 + 20 * D, pd.NaT]).astype("datetime64[us]"),
        "demo_booked_at": pd.Series([T0 + 3 * D, pd.NaT]).astype("datetime64[us]"),
    })


def events() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": pd.Series(["a", "a", "b", "a"], dtype="str"),
        "timestamp": pd.Series([T0 + 2 * D, T0 + 25 * D, T0 + 2 * D, T0 + 3 * D]
                               ).astype("datetime64[us]"),
        "event_type": pd.Series(["site_visit", "invoice_paid", "pricing_view", "Demo Request!"],
                                dtype="str"),
    })


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    spine = training_spine(leads(), SnapshotSettings(ages_days=(1, 7)), T0 + 200 * D)
    return build_features(spine, leads(), events(), SETTINGS)


def test_spine_first_then_features_in_fixed_order(frame):
    cols = list(frame.columns)
    assert cols[:6] == ["lead_id", "as_of", "age_days", "created_at", "label", "lead_age_days"]
    assert cols[6:10] == ["evt_demo_request_7d", "evt_demo_request_30d",
                          "evt_demo_request_90d", "evt_demo_request_all"]
    assert "fit_email_domain_type" in cols and "email" not in cols
    assert cols[-1] == "extra_demo_booked_at_days"


def test_values(frame):
    a7 = frame[(frame.lead_id == "a") & (frame.age_days == 7)].iloc[0]
    assert a7.label == 1
    assert a7.lead_age_days == 7.0
    assert a7.evt_site_visit_all == 1 and a7.evt_demo_request_all == 1
    assert a7.evt_invoice_paid_all == 0  # after conversion: never before as_of
    assert a7.extra_demo_booked_at_days == 4.0
    assert a7.fit_industry == "software"
    b1 = frame[(frame.lead_id == "b") & (frame.age_days == 1)].iloc[0]
    assert b1.evt_pricing_view_all == 0 and b1.days_since_last_pricing != b1.days_since_last_pricing


def test_basic_feature_set_is_counts_age_and_raw_fields(frame):
    basic = basic_feature_columns(feature_columns(frame))
    assert basic[0] == "lead_age_days"
    assert "evt_site_visit_all" in basic and "events_all" in basic and "fit_industry" in basic
    # no windows, recency, engagement, decay or derived fit signals
    for col in ("evt_site_visit_7d", "grp_research_all", "days_since_last_research",
                "decay_score", "email_open_rate", "fit_email_domain_type", "fit_region",
                "extra_demo_booked_at_days"):
        assert col in frame.columns and col not in basic


def test_build_is_deterministic(frame):
    spine = training_spine(leads(), SnapshotSettings(ages_days=(1, 7)), T0 + 200 * D)
    again = build_features(spine, leads(), events().iloc[::-1], SETTINGS)
    pd.testing.assert_frame_equal(frame, again, check_exact=True)


def test_exclude_drops_feature_by_name_or_source():
    spine = training_spine(leads(), SnapshotSettings(ages_days=(1,)), T0 + 200 * D)
    s = FeatureSettings(event_groups=SETTINGS.event_groups,
                        exclude=("demo_booked_at", "evt_site_visit_all", "industry"))
    out = build_features(spine, leads(), events(), s)
    assert "extra_demo_booked_at_days" not in out.columns
    assert "evt_site_visit_all" not in out.columns and "evt_site_visit_7d" in out.columns
    assert "fit_industry" not in out.columns


def test_spine_lead_missing_from_leads_is_an_error():
    spine = pd.DataFrame({"lead_id": ["zz"], "as_of": [T0]})
    with pytest.raises(ValueError, match="missing from leads"):
        build_features(spine, leads(), events(), SETTINGS)


def test_feature_groups(frame):
    groups = feature_groups(feature_columns(frame), SETTINGS)
    assert groups["lead_age_days"] == "lead_age"
    assert groups["evt_site_visit_7d"] == "behaviour:research"
    assert groups["evt_invoice_paid_all"] == "behaviour:ungrouped_events"
    assert groups["grp_pricing_30d"] == "behaviour:pricing"
    assert groups["days_since_last_pricing"] == "behaviour:pricing"
    assert groups["decay_research"] == "behaviour:research"
    assert groups["sessions_all"] == "behaviour:activity"
    assert groups["decay_score"] == "behaviour:activity"
    assert groups["email_open_rate"] == "behaviour:email_engagement"
    assert groups["fit_email_local_kind"] == "fit:email"
    assert groups["fit_budget_rank"] == "fit:bant"
    assert groups["extra_demo_booked_at_days"] == "extra:demo_booked_at_days"
    assert "label" not in groups


def test_align_features_for_scoring(frame):
    columns = feature_columns(frame)
    levels = category_levels(frame[columns])
    assert levels["fit_industry"] == ["retail", "software", "unknown", "other"]
    scoring = pd.DataFrame({
        "fit_industry": pd.Categorical(["banking", None, "retail"]),
        "evt_site_visit_7d": [1, 2, 3],
        "evt_brand_new_type_all": [5, 5, 5],
    })
    out = align_features(scoring, columns, levels)
    assert list(out.columns) == columns
    assert out["fit_industry"].tolist() == ["other", "unknown", "retail"]
    assert list(out["fit_industry"].cat.categories) == levels["fit_industry"]
    assert out["evt_pricing_view_30d"].tolist() == [0, 0, 0]
    assert np.isnan(out["days_since_last_pricing"]).all()
    assert out["evt_site_visit_7d"].tolist() == [1, 2, 3]


def test_feature_settings_validation():
    with pytest.raises(SettingsError, match="more than one group"):
        FeatureSettings(event_groups={"a": ["x"], "b": ["x"]})
    with pytest.raises(SettingsError, match="features.windows_days"):
        FeatureSettings(windows_days=(7, 0))
    with pytest.raises(SettingsError, match="features.decay_half_life_days"):
        FeatureSettings(decay_half_life_days=0)
    with pytest.raises(SettingsError, match="features.colour"):
        FeatureSettings.from_params({"colour": "red"})
    with pytest.raises(SettingsError, match="must not share"):
        FeatureSettings(exclude=("x",), safe=("x",))
    s = FeatureSettings.from_params({"event_groups": {"research": ["site_visit"]},
                                     "windows_days": [30, 7], "exclude": None})
    assert s.windows_days == (7, 30) and s.exclude == ()
    assert s.type_to_group == {"site_visit": "research"}
    assert hash(s) == hash(FeatureSettings.from_params({"event_groups": {"research":
                                                                         ["site_visit"]},
                                                        "windows_days": [7, 30]}))
