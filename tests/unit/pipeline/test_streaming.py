"""Streaming scoring (`pipeline.streaming`): buckets of leads with their events read from the
file, scored by the core one chunk at a time, equal to the one-shot result row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, feature_columns
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, training_spine
from models.training import train_all
from pipeline import streaming
from pipeline.contract import validate_events, validate_leads
from pipeline.errors import ConfigError, DataError
from pipeline.readers import ReadOptions, read_table
from pipeline.settings import parse_params
from tests.helpers import tiny_training

T0 = pd.Timestamp("2025-01-01")
AS_OF = pd.Timestamp("2025-10-01")
NOW = pd.Timestamp("2026-01-01")
PARAMS = {
    "features": {"windows_days": [7, 30], "event_groups": {
        "research": ["site_visit"], "pricing": ["pricing_view"], "ready_to_buy": ["demo_request"]}},
    **tiny_training(),
}


def make_export(n: int = 600, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw text leads (with an extra column that is numeric text except for one lead) and
    events; a few events are bad (unknown lead, unparseable time) and one row is repeated."""
    rng = np.random.default_rng(seed)
    created = (T0 + pd.to_timedelta(rng.uniform(0, 260, n), unit="D")).floor("s")
    title = rng.choice(["CEO", "VP Sales", "Engineer", "Intern"], n)
    intent = rng.normal(size=n) + np.isin(title, ["CEO", "VP Sales"])
    conv = rng.random(n) < 1 / (1 + np.exp(1.5 - 1.5 * intent))
    conv_at = created + pd.to_timedelta(1 + rng.exponential(20, n), unit="D")
    ids = [f" L{i:04d}" if i % 50 == 0 else f"L{i:04d}" for i in range(n)]
    region = rng.choice(["10", "20", "35", ""], n).astype(object)
    region[n // 2] = "north"  # one lead makes the column text, wherever its bucket falls
    leads = pd.DataFrame({
        "lead_id": ids,
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
        "source": rng.choice(["organic_search", "paid_search", "referral"], n),
        "job_title": title, "region_code": region,
        "converted": conv.astype(int).astype(str),
        "converted_at": np.where(conv, conv_at.strftime("%Y-%m-%d %H:%M:%S"), ""),
    })
    rows = []
    for i in range(n):
        k = rng.poisson(2 + 5 / (1 + np.exp(-intent[i])))
        ts = created[i] + pd.to_timedelta(rng.exponential(25, k), unit="D")
        types = rng.choice(["site_visit", "pricing_view", "demo_request", "email_open"], k)
        rows += [(ids[i].strip(), t.floor("s").strftime("%Y-%m-%d %H:%M:%S"), e)
                 for t, e in zip(ts, types, strict=True)]
    rng.shuffle(rows)
    rows += [("NOPE", "2025-03-01 10:00:00", "site_visit"), ("L0003", "soon", "site_visit"),
             rows[5]]
    events = pd.DataFrame(rows, columns=["lead_id", "timestamp", "event_type"])
    return leads, events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("streaming")
    leads_raw, events_raw = make_export()
    leads_raw.to_csv(root / "leads.csv", index=False)
    events_raw.to_csv(root / "events.csv", index=False)
    params = parse_params(PARAMS)
    fs = FeatureSettings.from_params(params.features)
    leads, rejects = validate_leads(read_table(root / "leads.csv"), "leads.csv")
    events, _ = validate_events(read_table(root / "events.csv"), leads, "events.csv",
                                now=NOW)
    spine = training_spine(leads, SnapshotSettings.from_params({"ages_days": [1, 7, 30]},
                                                              {"horizon_days": 30}),
                           data_end(leads, events))
    frame = build_features(spine, leads, events, fs)
    cols = feature_columns(frame)
    bundle = train_all(frame, cols, params.split, params.train, params.calibration,
                       params.bands, horizon_days=30).bundle
    return {"root": root, "leads": leads, "events": events, "bundle": bundle, "fs": fs,
            "events_csv": root / "events.csv"}


def _validator(world: dict):
    def validate(raw: pd.DataFrame):
        return validate_events(raw, world["leads"], str(world["events_csv"]), ReadOptions(),
                               NOW)
    return validate


def _one_shot(world: dict):
    from models.scoring import score_open_leads

    return score_open_leads(world["leads"], world["events"], world["bundle"], world["fs"], AS_OF)


# ---------------------------------------------------------------------------- buckets


def test_bucket_assignment_is_stable_and_covers_every_lead_once():
    ids = pd.Series([f"L{i}" for i in range(5000)])
    a = streaming.bucket_of(ids, 16)
    assert np.array_equal(a, streaming.bucket_of(ids.copy(), 16))  # same on every call
    assert a.min() >= 0 and a.max() <= 15
    assert len(a) == len(ids)  # one bucket per lead: each lead is in exactly one
    counts = np.bincount(a, minlength=16)
    assert counts.sum() == 5000 and counts.min() > 200  # spread, none empty
    # the id as stripped text decides: ' 42', '42' and 42 share a bucket
    b = streaming.bucket_of(pd.Series([" 42", "42", 42]), 16)
    assert b[0] == b[1] == b[2]
    # golden values pin the hash: the same buckets on every run, process and machine
    assert streaming.bucket_of(pd.Series(["a", "lead-1", "12345"]), 97).tolist() == [26, 67, 19]


def test_plan_chunks_covers_every_bucket_once_within_budget():
    counts = [5, 0, 7, 3, 9, 0, 1, 12]
    chunks = streaming.plan_chunks(counts, 10)
    assert sorted(b for c in chunks for b in c) == list(range(8))
    assert chunks == [[0, 1], [2, 3], [4, 5, 6], [7]]
    assert all(sum(counts[b] for b in c) <= 10 or len(c) == 1 for c in chunks)
    with pytest.raises(ConfigError, match="chunk_events"):
        streaming.plan_chunks(counts, 0)


# ------------------------------------------------------------------------------ spill


def test_a_bucket_read_returns_only_its_leads_events(world, tmp_path):
    spill = streaming.spill_events(world["events_csv"], ReadOptions(), 8, tmp_path)
    raw = read_table(world["events_csv"])
    assert spill.n_rows == len(raw) == int(spill.counts.sum())
    want = streaming.bucket_of(raw["lead_id"], 8)
    for b in range(8):
        part = spill.read([b])
        expected = raw.loc[want == b]
        assert len(part) == spill.counts[b] == len(expected) > 0
        assert set(streaming.bucket_of(part["lead_id"], 8)) == {b}
        # same rows, same row numbers, same text as the whole-file reader
        pd.testing.assert_frame_equal(part, expected, check_index_type=False,
                                      check_dtype=False)


def test_spill_parquet_keeps_row_numbers(world, tmp_path):
    path = tmp_path / "events.parquet"
    world["events"].to_parquet(path)
    spill = streaming.spill_events(path, ReadOptions(), 4, tmp_path)
    back = pd.concat([spill.read([b]) for b in range(4)]).sort_index()
    assert back.index.tolist() == list(range(1, len(world["events"]) + 1))
    pd.testing.assert_frame_equal(back.reset_index(drop=True), world["events"],
                                  check_dtype=False)


def test_spill_refuses_a_file_without_lead_id(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame({"lead": ["a"], "timestamp": ["2025-01-01"], "event_type": ["x"]}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match="no column 'lead_id'"):
        streaming.spill_events(path, ReadOptions(), 4, tmp_path)


# ------------------------------------------------------------------------ chunk loop


@pytest.mark.parametrize("chunk_events", [120, 700, 10**9])
def test_chunked_equals_one_shot(world, tmp_path, chunk_events):
    whole = _one_shot(world)
    spill = streaming.spill_events(world["events_csv"], ReadOptions(), 16, tmp_path)
    out = streaming.score_in_chunks(world["leads"], spill, world["bundle"], world["fs"],
                                    AS_OF, chunk_events=chunk_events,
                                    validate=_validator(world), chunk_size=37)
    if chunk_events == 120:
        assert out.n_chunks >= 8
        assert out.peak_chunk_events <= max(120, int(spill.counts.max()))
    pd.testing.assert_frame_equal(out.scored.table, whole.table)
    pd.testing.assert_frame_equal(out.scored.not_open, whole.not_open)
    _, rejects = validate_events(read_table(world["events_csv"]), world["leads"],
                                 str(world["events_csv"]), ReadOptions(), NOW)
    n = len(read_table(world["events_csv"]))
    assert {n - 1, n} <= set(rejects["source_row"])  # the unknown lead's and the 'soon' rows
    pd.testing.assert_frame_equal(out.rejects_events, rejects)
    assert out.n_events == len(read_table(world["events_csv"]))


def test_chunked_interim_parquet_equals_one_shot(world, tmp_path):
    path = tmp_path / "events.parquet"
    world["events"].to_parquet(path)  # the typed table ingest writes: no validation
    spill = streaming.spill_events(path, ReadOptions(), 8, tmp_path)
    out = streaming.score_in_chunks(world["leads"], spill, world["bundle"], world["fs"],
                                    AS_OF, chunk_events=200)
    assert out.n_chunks > 4 and out.rejects_events is None
    whole = _one_shot(world)
    pd.testing.assert_frame_equal(out.scored.table, whole.table)
    pd.testing.assert_frame_equal(out.scored.not_open, whole.not_open)


def test_every_chunk_reads_only_its_buckets(world, tmp_path):
    spill = streaming.spill_events(world["events_csv"], ReadOptions(), 16, tmp_path)
    out = streaming.score_in_chunks(world["leads"], spill, world["bundle"], world["fs"],
                                    AS_OF, chunk_events=150, validate=_validator(world))
    reads = list(spill.reads)
    assert len(reads) == out.n_chunks > 1
    assert sorted(b for r in reads for b in r) == list(range(16))  # each bucket read once
    assert out.peak_chunk_events == max(int(spill.counts[r].sum()) for r in reads)
    assert out.peak_chunk_events < spill.n_rows / 2


def test_memory_errors_become_a_clear_config_error():
    import pyarrow as pa

    for err in (MemoryError(), pa.ArrowMemoryError("malloc of size 64 failed")):
        with pytest.raises(ConfigError) as info, \
                streaming.memory_guard("scoring", chunk_events=4_000_000, chunk_size=100_000):
            raise err
        text = str(info.value)
        assert "ran out of memory" in text and "score.chunk_events" in text
        assert "4,000,000" in text and "1,000,000" in text and "GB" in text
    with pytest.raises(ConfigError, match=r"up to 1,200,000\): lower .*e\.g\. 300,000"), \
            streaming.memory_guard("scoring", 4_000_000, state={"events": 1_200_000}):
        raise MemoryError()
    with pytest.raises(KeyError), streaming.memory_guard("scoring", chunk_events=10):
        raise KeyError("x")  # other errors pass through untouched


def test_describe_memory_names_the_limits():
    text = streaming.describe_memory({"available": 3 * 2**30, "cgroup_limit": 6 * 2**30,
                                      "cgroup_used": 2**30, "address_limit": 2 * 2**30})
    assert text == ("2.0 GB of address space allowed (ulimit -v), a 6.0 GB container memory "
                    "limit (1.0 GB in use), 3.0 GB free on the machine")


def test_memory_warning_before_a_chunk_that_will_not_fit():
    small = {"available": 20 * 2**30, "cgroup_limit": 2 * 2**30, "cgroup_used": 2**30,
             "address_limit": None}
    text = streaming.memory_warning(4_000_000, small)  # ~1.9 GB needed, 1 GB left
    assert text is not None and "score.chunk_events" in text and "1,073,741" in text
    assert streaming.memory_warning(1_000_000, small) is None  # ~0.5 GB: fits
    roomy = {"available": 20 * 2**30, "cgroup_limit": None, "cgroup_used": None}
    assert streaming.memory_warning(4_000_000, roomy) is None
    assert streaming.memory_warning(4_000_000, {}) is None  # nothing known: no guess



@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_spill_refuses_an_over_long_cell_like_read_table(tmp_path, suffix):
    frame = pd.DataFrame({"lead_id": ["L1", "L2", "L3"], "timestamp": ["2025-01-01"] * 3,
                          "event_type": ["visit", "x" * 60, "visit"]})
    path = tmp_path / f"events{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    options = ReadOptions(max_field_size=40)
    with pytest.raises(DataError) as whole:
        read_table(path, options, "events")
    with pytest.raises(DataError) as streamed:
        streaming.spill_events(path, options, 4, tmp_path)
    assert "max_field_size" in str(streamed.value)
    assert str(streamed.value) == str(whole.value)
