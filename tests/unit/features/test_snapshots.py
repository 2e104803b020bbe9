"""Snapshots, labels, censoring and the scoring spine on hand-built leads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.settings import SettingsError, SnapshotSettings
from features.snapshots import (
    ArrayMoments,
    UnionMoments,
    data_end,
    robust_max_of,
    scoring_spine,
    snapshot_report,
    tail_count,
    training_spine,
)

T0 = pd.Timestamp("2025-01-01 09:00:00")
D = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)
NAT = pd.NaT


def leads_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in ("created_at", "converted_at", "lost_at"):
        if col in frame:
            frame[col] = pd.to_datetime(frame[col]).astype("datetime64[us]")
    frame["lead_id"] = frame["lead_id"].astype("str")
    return frame


LEADS = leads_frame([
    # converted exactly at the age-1 as_of: not an example then (already converted)
    {"lead_id": "at_asof", "created_at": T0, "converted": 1, "converted_at": T0 + D,
     "lost_at": NAT},
    # converted exactly at age-1 as_of + horizon: positive at ages 1 and 7
    {"lead_id": "at_horizon", "created_at": T0, "converted": 1, "converted_at": T0 + 91 * D,
     "lost_at": NAT},
    # never converted: negative
    {"lead_id": "never", "created_at": T0, "converted": 0, "converted_at": NAT, "lost_at": NAT},
    # lost exactly at the age-7 as_of: example at age 1 only
    {"lead_id": "lost", "created_at": T0, "converted": 0, "converted_at": NAT,
     "lost_at": T0 + 7 * D},
    # converted, date unknown: dropped everywhere
    {"lead_id": "no_date", "created_at": T0, "converted": 1, "converted_at": NAT, "lost_at": NAT},
    # converted 1 microsecond after the age-7 horizon: negative at ages 1 and 7, positive at 30
    {"lead_id": "late", "created_at": T0, "converted": 1, "converted_at": T0 + 97 * D + US,
     "lost_at": NAT},
])
SETTINGS = SnapshotSettings(ages_days=(1, 7, 30), horizon_days=90)
END = T0 + 1000 * D


def labels(spine: pd.DataFrame) -> dict[tuple[str, int], int]:
    return {(r.lead_id, int(r.age_days)): int(r.label) for r in spine.itertuples()}


def test_labels_and_boundaries():
    got = labels(training_spine(LEADS, SETTINGS, END))
    assert got == {
        ("at_horizon", 1): 1, ("at_horizon", 7): 1, ("at_horizon", 30): 1,
        ("late", 1): 0, ("late", 7): 0, ("late", 30): 1,
        ("lost", 1): 0,
        ("never", 1): 0, ("never", 7): 0, ("never", 30): 0,
    }


def test_as_of_is_created_plus_age_and_rows_sorted():
    spine = training_spine(LEADS, SETTINGS, END)
    assert list(spine.columns) == ["lead_id", "as_of", "age_days", "created_at", "label"]
    row = spine[(spine.lead_id == "never") & (spine.age_days == 7)].iloc[0]
    assert row.as_of == T0 + 7 * D
    assert row.created_at == T0
    assert spine[["lead_id", "as_of"]].apply(tuple, axis=1).is_monotonic_increasing


def test_dropped_counts():
    spine = training_spine(LEADS, SETTINGS, END)
    assert spine.attrs["dropped"] == {
        "censored": 0, "already_converted": 3, "lost": 2,
        "converted_without_date": 3, "no_created_at": 0,
    }


def test_censoring_boundary():
    # as_of + horizon == data_end is known (kept); one microsecond more is censored
    end = T0 + 1 * D + 90 * D
    got = labels(training_spine(LEADS[LEADS.lead_id == "never"], SETTINGS, end))
    assert got == {("never", 1): 0}
    got = labels(training_spine(LEADS[LEADS.lead_id == "never"], SETTINGS, end - US))
    assert got == {}


def test_censored_positive_is_left_out_not_counted():
    # converts within the horizon, but the horizon runs past the data: still censored
    leads = LEADS[LEADS.lead_id == "at_horizon"]
    spine = training_spine(leads, SETTINGS, T0 + 90 * D)
    assert labels(spine) == {}
    assert spine.attrs["dropped"]["censored"] == 3


def test_without_lost_or_converted_columns():
    leads = LEADS[["lead_id", "created_at", "converted_at"]].iloc[[1, 2]]
    got = labels(training_spine(leads, SETTINGS, END))
    assert got[("at_horizon", 1)] == 1
    assert got[("never", 30)] == 0


def test_snapshot_report():
    rep = snapshot_report(LEADS, SETTINGS, END)
    assert rep["examples"] == 10
    assert rep["positives"] == 4
    assert rep["candidates"] == 18
    assert rep["leads_converted_without_date"] == 1
    assert rep["by_age"][30] == {"examples": 3, "positives": 2}


def test_scoring_spine_reasons():
    leads = leads_frame([
        {"lead_id": "open", "created_at": T0, "converted": 0, "converted_at": NAT, "lost_at": NAT},
        {"lead_id": "conv", "created_at": T0, "converted": 1, "converted_at": T0 + 5 * D,
         "lost_at": NAT},
        {"lead_id": "conv_later", "created_at": T0, "converted": 1,
         "converted_at": T0 + 50 * D, "lost_at": NAT},
        {"lead_id": "lost", "created_at": T0, "converted": 0, "converted_at": NAT,
         "lost_at": T0 + 10 * D},
        {"lead_id": "future", "created_at": T0 + 30 * D, "converted": 0, "converted_at": NAT,
         "lost_at": NAT},
        {"lead_id": "no_date", "created_at": T0, "converted": 1, "converted_at": NAT,
         "lost_at": NAT},
        {"lead_id": "no_created", "created_at": NAT, "converted": 0, "converted_at": NAT,
         "lost_at": NAT},
    ])
    at = T0 + 10 * D
    open_, not_open = scoring_spine(leads, at)
    assert open_["lead_id"].tolist() == ["open", "conv_later"]
    assert (open_["as_of"] == at).all()
    assert dict(zip(not_open.lead_id, not_open.reason, strict=True)) == {
        "conv": "converted", "lost": "lost", "future": "not yet created",
        "no_date": "converted", "no_created": "no created_at",
    }
    assert len(open_) + len(not_open) == len(leads)


def test_data_end_is_latest_known_moment():
    events = pd.DataFrame({"lead_id": ["never"], "timestamp": [T0 + 500 * D],
                           "event_type": ["site_visit"]})
    events["timestamp"] = events["timestamp"].astype("datetime64[us]")
    assert data_end(LEADS, events) == T0 + 500 * D
    assert data_end(LEADS) == T0 + 97 * D + US


def test_inputs_not_mutated():
    before = LEADS.copy(deep=True)
    training_spine(LEADS, SETTINGS, END)
    scoring_spine(LEADS, T0 + 3 * D)
    pd.testing.assert_frame_equal(LEADS, before)


@pytest.mark.parametrize("ages", [[0, 7], [-1], [1.5], [], "7"])
def test_settings_reject_bad_ages(ages):
    with pytest.raises(SettingsError, match="snapshots.ages_days"):
        SnapshotSettings.from_params({"ages_days": ages}, {"horizon_days": 90})


def test_settings_message_names_value():
    with pytest.raises(SettingsError) as err:
        SnapshotSettings(ages_days=(0, 7))
    assert str(err.value) == "`snapshots.ages_days` must be positive integers; got [0, 7]"
    with pytest.raises(SettingsError, match="label.horizon_days"):
        SnapshotSettings.from_params({}, {"horizon_days": 0})
    assert SnapshotSettings.from_params({"ages_days": [30, 1]}, {}).ages_days == (1, 30)


def _many_leads(n: int) -> pd.DataFrame:
    created = pd.Series(T0 + pd.to_timedelta(np.arange(n) * 3600, unit="s"))
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)],
                         "created_at": created.astype("datetime64[us]"),
                         "converted": np.zeros(n, dtype=np.int8)})


def test_data_end_drops_an_isolated_top_tail():
    leads = _many_leads(2000)
    last = leads["created_at"].max()
    poisoned = leads.copy()
    poisoned.loc[5, "created_at"] = pd.Timestamp("2062-01-01")
    assert data_end(poisoned) == last
    # A tail close to the rest (within 28 days) is real data and kept.
    near = leads.copy()
    near.loc[5, "created_at"] = last + pd.Timedelta(days=20)
    assert data_end(near) == last + pd.Timedelta(days=20)
    # Too few moments to tell a tail: the latest one counts.
    assert data_end(poisoned.iloc[:100]) == pd.Timestamp("2062-01-01")


def test_data_end_tail_rule_scales_with_the_typical_gap():
    leads = _many_leads(2000)
    sparse = leads.assign(created_at=T0 + (leads["created_at"] - T0) * 24 * 7)  # weekly
    last = sparse["created_at"].max()
    late = sparse.copy()
    late.loc[5, "created_at"] = last + pd.Timedelta(days=60)  # < 10 weekly gaps
    assert data_end(late) == last + pd.Timedelta(days=60)
    late.loc[5, "created_at"] = last + pd.Timedelta(days=80)  # > 10 weekly gaps
    assert data_end(late) == last


def test_data_end_export_moment_is_authoritative():
    leads = _many_leads(10)
    leads.attrs["exported_at"] = "2025-01-01T05:00:00"
    assert data_end(leads) == pd.Timestamp("2025-01-01 05:00:00")


def _reference_robust_max(values: np.ndarray) -> int:
    """The data-end rule written out on every moment (the definition robust_max_of keeps)."""
    values = np.sort(values)
    if len(values) < 1000:
        return int(values[-1])
    top = np.quantile(values, 0.999, method="lower")
    gaps = np.diff(np.unique(values))
    typical = int(np.median(gaps)) if len(gaps) else 0
    limit = top + max(pd.Timedelta(days=28).value // 1000, 10 * typical)
    return int(values[values <= limit][-1])


class _CountingMoments(ArrayMoments):
    """Array moments that tell whether the rule asked for every distinct moment."""

    asked_distinct = False

    def distinct(self) -> np.ndarray:
        self.asked_distinct = True
        return super().distinct()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), span_days=st.sampled_from([0.01, 3, 60, 540, 5000]),
       tail=st.lists(st.integers(0, 40_000), max_size=4), step=st.sampled_from([1, 60e6, 864e8]),
       split=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_the_summarised_data_end_rule_equals_the_rule_on_every_moment(n, span_days, tail, step,
                                                                       split, seed):
    """robust_max_of on a summary - split in two sets (leads and events), with a distinct
    lower bound that lets it skip the median gap - gives the rule's own answer."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01").value // 1000
    body = t0 + (rng.random(n) * span_days * 864e8 // step * step).astype(np.int64)
    values = np.concatenate([body, t0 + np.array(tail, dtype=np.int64) * 86_400_000_000])
    cut = int(split * len(values))
    a, b = values[:cut], values[cut:]
    lb = max(len(np.unique(a)), len(np.unique(b)))
    parts = [_CountingMoments(a, distinct_lb=len(np.unique(a))),
             _CountingMoments(b, distinct_lb=len(np.unique(b)))]
    summary = UnionMoments(parts)
    assert summary.distinct_lb == lb
    assert robust_max_of(summary) == _reference_robust_max(values)
    assert robust_max_of(ArrayMoments(values)) == _reference_robust_max(values)


def test_the_summarised_rule_skips_the_distinct_moments_of_a_dense_log():
    """30,000 moments over 540 days: the median gap cannot reach 2.8 days, so the rule
    never asks for every distinct moment (what keeps the Spark driver flat)."""
    rng = np.random.default_rng(0)
    values = (pd.Timestamp("2024-01-01").value // 1000
              + rng.integers(0, 540 * 86_400_000_000, 30_000))
    values[7] += 40 * 365 * 86_400_000_000  # a poisoned year
    moments = _CountingMoments(values, distinct_lb=len(np.unique(values)))
    assert robust_max_of(moments) == _reference_robust_max(values)
    assert not moments.asked_distinct
    assert len(moments.top(tail_count(moments.n))) == 31
