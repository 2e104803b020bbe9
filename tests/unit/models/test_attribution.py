"""Score-change attribution adds up and names the cause (one event ageing out of a window)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.attribution import attribute_changes, describe_feature
from models.bundle import ScoringBundle
from models.settings import parse_bands, parse_calibration, parse_split, parse_train
from models.training import train_all

FEATURES = ["grp_pricing_30d", "grp_pricing_all", "days_since_last_pricing", "events_30d",
            "fit_industry"]
GROUPS = {"grp_pricing_30d": "behaviour:pricing", "grp_pricing_all": "behaviour:pricing",
          "days_since_last_pricing": "behaviour:pricing"}   # the bundle's `groups`


def snapshots(n_leads: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 2 * n_leads
    all_ = rng.poisson(1.5, n).astype(float)
    recent = np.minimum(all_, rng.poisson(0.7, n)).astype(float)
    days = np.where(all_ > 0, rng.uniform(0, 90, n), np.nan)
    events = rng.poisson(4, n).astype(float)
    industry = rng.choice(["software", "retail", "unknown"], n)
    logit = 1.2 * recent + 0.3 * all_ - 0.02 * np.nan_to_num(days, nan=90) \
        + 0.5 * (industry == "software") - 2.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(
        np.sort(rng.uniform(0, 365, n_leads)), unit="D")
    lead = np.repeat(np.arange(n_leads), 2)
    return pd.DataFrame({
        "grp_pricing_30d": recent, "grp_pricing_all": all_, "days_since_last_pricing": days,
        "events_30d": events, "fit_industry": pd.Categorical(industry), "label": label,
        "lead_id": [f"L{i:05d}" for i in lead],
        "created_at": created[lead].astype("datetime64[us]"),
        "as_of": (created[lead] + pd.to_timedelta(np.tile([1, 30], n_leads), unit="D"))
        .astype("datetime64[us]"),
    })


def train(seed: int, leaves: int) -> ScoringBundle:
    bands = {"temperature": {"policy": "share",
                             "bands": [{"name": "cold"}, {"name": "hot", "top_share": 0.2}]}}
    return train_all(
        snapshots(2000, seed), FEATURES,
        parse_split({"train": 0.6, "calibration": 0.2, "test": 0.2}),
        parse_train({"lightgbm": {"n_estimators": 80, "num_leaves": leaves},
                     "serve": "lightgbm", "tune": {"enabled": False}}),
        parse_calibration({"method": "isotonic"}), parse_bands(bands), 90,
    ).bundle


@pytest.fixture(scope="module")
def bundles() -> tuple[ScoringBundle, ScoringBundle]:
    return train(seed=1, leaves=7), train(seed=2, leaves=5)


def rows() -> pd.DataFrame:
    """Leads with one pricing action 10 days before the old batch: a week later it is
    still in the 30-day window for some, and has left it for the others."""
    n = 40
    return pd.DataFrame({
        "grp_pricing_30d": np.ones(n), "grp_pricing_all": np.full(n, 2.0),
        "days_since_last_pricing": np.full(n, 25.0), "events_30d": np.full(n, 3.0),
        "fit_industry": pd.Categorical(["software"] * 20 + ["retail"] * 20),
    }, index=pd.Index([f"N{i}" for i in range(n)], name="lead_id"))


@pytest.mark.parametrize("max_exact", [6, 1])  # exact Shapley, and sampled orders
def test_parts_add_up_to_the_change_for_every_lead(bundles, max_exact: int) -> None:
    old_b, new_b = bundles
    old = rows()
    new = old.assign(grp_pricing_30d=np.where(np.arange(len(old)) % 2 == 0, 0.0, 1.0),
                     days_since_last_pricing=32.0, events_30d=1.0)
    got = attribute_changes(old_b, new_b, old, new, max_exact=max_exact,
                            families=GROUPS)
    parts = got.filter(like="data_part[").sum(axis=1) + got["model_part"]
    assert np.allclose(parts, got["score_change"], atol=1e-9)
    expected = new_b.predict_frame(new)["score"] - old_b.predict_frame(old)["score"]
    assert (got["score_change"] == expected.to_numpy()).all()
    assert {"data_part[behaviour:pricing]", "data_part[behaviour:activity]"} <= set(got.columns)
    assert "data_part[fit:industry]" not in got.columns    # did not move: no share


def test_one_event_ageing_out_is_named_and_nothing_else_moves(bundles) -> None:
    _, model = bundles
    old = rows()
    new = old.assign(grp_pricing_30d=0.0)   # the pricing visit left the 30-day window
    got = attribute_changes(model, model, old, new, families=GROUPS)
    assert (got["model_part"] == 0).all()
    moved = [c for c in got.columns if c.startswith("data_part[")]
    assert moved == ["data_part[behaviour:pricing]"]
    assert (got["score_change"] < 0).any()
    assert np.allclose(got["data_part[behaviour:pricing]"], got["score_change"])
    down = got[got["score_change"] <= -1]
    assert all("pricing actions in the last 30 days 1 → 0" in r for r in down["change_reasons"])
    assert all(r.startswith(f"{int(c):+d}:") for r, c in
               zip(down["change_reasons"], down["score_change"], strict=True))


def test_a_retrained_model_on_the_same_features_is_all_model_part(bundles) -> None:
    old_b, new_b = bundles
    feats = rows()
    got = attribute_changes(old_b, new_b, feats, feats, families=GROUPS,
                            model_words="model retrained (3 → 4)")
    assert not [c for c in got.columns if c.startswith("data_part[")]
    assert (got["model_part"] == got["score_change"]).all()
    changed = got[got["score_change"].abs() >= 1]
    assert len(changed) and all(r.endswith("model retrained (3 → 4)")
                                for r in changed["change_reasons"])


def test_mismatched_leads_are_refused(bundles) -> None:
    model = bundles[0]
    with pytest.raises(ValueError, match="same leads"):
        attribute_changes(model, model, rows(), rows().iloc[::-1])


def test_words() -> None:
    assert describe_feature("grp_demo_7d", 0.0, 1.0) == "demo actions in the last 7 days 0 → 1"
    assert describe_feature("fit_industry", "retail", "software") == \
        "industry retail → software"
    assert describe_feature("days_since_last_demo", np.nan, 2.5) == \
        "days since the last demo action none → 2.5"


def test_a_published_score_the_rebuild_misses_is_the_revised_part(bundles) -> None:
    _, model = bundles
    old = rows()
    new = old.assign(grp_pricing_30d=0.0)
    published = model.predict_frame(old)["score"].to_numpy(float) + 3.0   # export revised
    got = attribute_changes(model, model, old, new, families=GROUPS, old_scores=published,
                            signs=("▲ +", "▼ −"))
    expected = model.predict_frame(new)["score"].to_numpy(float) - published
    assert np.allclose(got["score_change"], expected, atol=1e-12)
    assert (got["data_part[revised]"] == -3.0).all()
    parts = got.filter(like="data_part[").sum(axis=1) + got["model_part"]
    assert np.allclose(parts, got["score_change"], atol=1e-9)
    assert all(r.startswith(("▲ +", "▼ −")) for r in got["change_reasons"])
    assert got["change_reasons"].str.contains("revised in the export").any()
