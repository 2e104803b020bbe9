"""Leakage invariance of the point-in-time features (hypothesis, random event timings).

Nothing at or after a snapshot's as_of may reach its features:
- adding, removing or changing events at or after as_of changes no feature;
- the order of the events frame changes nothing;
- the features of a positive training example are the same with every post-conversion
  event deleted (the after-conversion-only event types never fire before as_of).
These fail if the event filter is `timestamp <= as_of` instead of `timestamp < as_of`:
event times are drawn with a strong bias to exactly as_of and to window edges.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import training_spine

AS_OF = pd.Timestamp("2025-06-01 10:00:00")
US = pd.Timedelta(microseconds=1)
DAY_US = 86_400_000_000
TYPES = ["site_visit", "pricing_view", "demo_request", "email_sent", "email_open",
         "email_click", "careers_view"]
AFTER_ONLY = ["contract_signed", "onboarding_view", "invoice_paid"]
FEATURES = FeatureSettings(event_groups={
    "research": ["site_visit"], "pricing": ["pricing_view"], "ready_to_buy": ["demo_request"],
    "email": ["email_sent", "email_open", "email_click"], "negative": ["careers_view"],
}, journey={"sequences": {"click_visit": ["email_click", "site_visit"]}})
FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# offsets from as_of in microseconds: edges (0, window starts, session/day gaps) are likely
_EDGES = [0, 1, -1, -7 * DAY_US, -7 * DAY_US - 1, -30 * DAY_US, -37 * DAY_US, -90 * DAY_US,
          -30 * 60_000_000, -(30 * 60_000_000) - 1, DAY_US, -2 * DAY_US,
          -5 * 60_000_000, -14 * DAY_US, -14 * DAY_US - 1]
offset = st.one_of(st.sampled_from(_EDGES),
                   st.integers(min_value=-120 * DAY_US, max_value=30 * DAY_US))
before = st.one_of(st.sampled_from([-1, -7 * DAY_US, -90 * DAY_US, -DAY_US]),
                   st.integers(min_value=-120 * DAY_US, max_value=-1))
at_or_after = st.one_of(st.just(0), st.sampled_from([1, DAY_US]),
                        st.integers(min_value=0, max_value=60 * DAY_US))
event = st.tuples(st.sampled_from(["a", "b"]), offset, st.sampled_from(TYPES))


def _events(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": pd.Series([r[0] for r in rows], dtype="str"),
        "timestamp": pd.Series([AS_OF + r[1] * US for r in rows], dtype="datetime64[us]"),
        "event_type": pd.Series([r[2] for r in rows], dtype="str"),
    })


LEADS = pd.DataFrame({
    "lead_id": pd.Series(["a", "b"], dtype="str"),
    "created_at": pd.Series([AS_OF - 40 * pd.Timedelta(days=1)] * 2, dtype="datetime64[us]"),
})
SPINE = pd.DataFrame({"lead_id": pd.Series(["a"], dtype="str"),
                      "as_of": pd.Series([AS_OF], dtype="datetime64[us]")})


def _features(events: pd.DataFrame) -> pd.DataFrame:
    return build_features(SPINE, LEADS, events, FEATURES)


def _assert_same(base: pd.DataFrame, other: pd.DataFrame) -> None:
    """Same values on shared columns; columns only in `other` (new event types) are 0."""
    shared = [c for c in base.columns if c in other.columns]
    pd.testing.assert_frame_equal(base[shared], other[shared], check_exact=True)
    for col in other.columns.difference(base.columns):
        assert (other[col] == 0).all(), col
    assert set(base.columns) - set(other.columns) <= {
        c for c in base.columns if c.startswith("evt_") and (base[c] == 0).all()}


@FAST
@given(
    st.lists(st.tuples(st.just("a"), before, st.sampled_from(TYPES)), max_size=12),
    st.lists(st.tuples(st.just("a"), at_or_after, st.sampled_from(TYPES + AFTER_ONLY)),
             min_size=1, max_size=8),
    st.lists(event, max_size=6),
)
def test_events_at_or_after_as_of_change_nothing(past, future, other):
    base = _features(_events(past + other))
    with_future = _features(_events(past + other + future))
    _assert_same(base, with_future)


@FAST
@given(
    st.lists(st.tuples(st.just("a"), before, st.sampled_from(TYPES)), max_size=10),
    st.lists(st.tuples(st.just("a"), at_or_after, st.sampled_from(TYPES)), min_size=1,
             max_size=8),
    st.data(),
)
def test_changing_or_removing_future_events_changes_nothing(past, future, data):
    base = _features(_events(past + future))
    changed = [
        (lead, data.draw(at_or_after), data.draw(st.sampled_from(TYPES + AFTER_ONLY)))
        for lead, _, _ in future
    ]
    keep = data.draw(st.lists(st.booleans(), min_size=len(changed), max_size=len(changed)))
    changed = [e for e, k in zip(changed, keep, strict=True) if k]
    _assert_same(base, _features(_events(past + changed)))


@FAST
@given(st.lists(event, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_event_order_changes_nothing(rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    pd.testing.assert_frame_equal(_features(_events(rows)), _features(_events(shuffled)),
                                  check_exact=True)


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 5),
                       st.integers(min_value=-20 * DAY_US, max_value=200 * DAY_US),
                       st.sampled_from(TYPES)), max_size=30),
    st.lists(st.integers(min_value=1, max_value=150 * DAY_US), min_size=6, max_size=6),
    st.lists(st.integers(min_value=0, max_value=40 * DAY_US), min_size=1, max_size=10),
)
def test_post_conversion_activity_never_reaches_positive_examples(rows, conv_offsets, extra):
    created = AS_OF - pd.Timedelta(days=300)
    ids = [f"L{i}" for i in range(6)]
    conv_at = [created + o * US for o in conv_offsets]
    leads = pd.DataFrame({
        "lead_id": pd.Series(ids, dtype="str"),
        "created_at": pd.Series([created] * 6, dtype="datetime64[us]"),
        "converted": [1, 1, 1, 0, 1, 0],
        "converted_at": pd.Series([c if i not in (3, 5) else pd.NaT
                                   for i, c in enumerate(conv_at)], dtype="datetime64[us]"),
    })
    events = [(ids[i], created + o * US, t) for i, o, t in rows]
    # the leak bait: activity that only exists once a lead has converted, incl. exactly at it
    for j, o in enumerate(extra):
        lead = j % 6
        if lead not in (3, 5):
            events.append((ids[lead], conv_at[lead] + o * US, AFTER_ONLY[j % 3]))
    frame = pd.DataFrame(events, columns=["lead_id", "timestamp", "event_type"]).astype(
        {"lead_id": "str", "timestamp": "datetime64[us]", "event_type": "str"})
    spine = training_spine(leads, SnapshotSettings(ages_days=(1, 7, 30, 90)),
                           created + pd.Timedelta(days=1000))
    positives = spine[spine["label"] == 1].reset_index(drop=True)
    if positives.empty:
        return
    full = build_features(positives, leads, frame, FEATURES)
    conv_of = dict(zip(leads["lead_id"], leads["converted_at"], strict=True))
    before_conv = frame[[ts < conv_of[lead] for lead, ts in
                         zip(frame["lead_id"], frame["timestamp"], strict=True)]]
    trimmed = build_features(positives, leads, before_conv, FEATURES)
    _assert_same(trimmed, full)
    for col in full.columns:
        if any(col.startswith(f"evt_{t}_") for t in AFTER_ONLY):
            assert (full[col] == 0).all(), col


@FAST
@given(booked=at_or_after, other=at_or_after)
def test_lead_datetime_at_or_after_as_of_changes_no_feature(booked, other):
    """A lead date (demo booked, unsubscribed) at or after as_of is masked: moving it
    anywhere in the future of the snapshot changes no feature of that snapshot."""
    spine = pd.DataFrame({"lead_id": pd.Series(["a"], dtype="str"),
                          "as_of": pd.Series([AS_OF], dtype="datetime64[us]")})

    def leads(off: int) -> pd.DataFrame:
        out = LEADS.copy()
        out["demo_booked_at"] = pd.Series([AS_OF + off * US] * 2, dtype="datetime64[us]")
        return out

    a = build_features(spine, leads(booked), _events([]), FEATURES)
    b = build_features(spine, leads(other), _events([]), FEATURES)
    assert "extra_demo_booked_at_days" in a.columns
    assert a["extra_demo_booked_at_days"].isna().all()
    pd.testing.assert_frame_equal(a, b)
