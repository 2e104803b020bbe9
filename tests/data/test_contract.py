"""Pins the data contract (docs/contract.md): types, required columns, sorting, accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract import (
    EVENTS_REQUIRED,
    EVENTS_SCHEMA,
    LEADS_REQUIRED,
    LEADS_SCHEMA,
    data_quality_report,
    empty_rejects,
    validate_events,
    validate_leads,
)
from pipeline.errors import ConfigError, DataError
from pipeline.readers import ReadOptions, read_table
from pipeline.stages.ingest import run

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ingest"
NOW = pd.Timestamp("2026-01-01")
LENIENT = ReadOptions(max_bad_share=0.99, max_reject_share=1.0)


def raw(columns: dict[str, list[str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(columns, dtype="str")
    frame.index = pd.RangeIndex(2, 2 + len(frame))
    return frame


@pytest.fixture(scope="module")
def fixture_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    leads, rejects_leads = validate_leads(
        read_table(FIXTURES / "leads.csv", ReadOptions(), "leads"), "leads.csv"
    )
    events, rejects_events = validate_events(
        read_table(FIXTURES / "events.csv", ReadOptions(), "events"),
        leads,
        "events.csv",
        now=NOW,
        rejected_lead_ids=["L005"],
    )
    return leads, rejects_leads, events, rejects_events


def test_required_columns_are_the_documented_ones() -> None:
    assert LEADS_REQUIRED == ("lead_id", "created_at", "converted")
    assert EVENTS_REQUIRED == ("lead_id", "timestamp", "event_type")
    doc = (ROOT / "docs" / "contract.md").read_text()
    for column in {*LEADS_REQUIRED, *EVENTS_REQUIRED}:
        assert f"| `{column}` |" in doc


def test_leads_are_typed(fixture_tables) -> None:
    leads = fixture_tables[0]
    assert leads.dtypes.astype(str).to_dict() == {
        "lead_id": "str",
        "created_at": "datetime64[us]",
        "source": "str",
        "email": "str",
        "first_name": "str",
        "company_size": "Int64",
        "industry": "str",
        "country": "str",
        "converted": "int8",
        "converted_at": "datetime64[us]",
        "utm_campaign": "str",  # unknown extra column: kept, as text
    }
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2025-01-06 09:15"),
        pd.Timestamp("2025-01-07"),
        pd.Timestamp("2025-01-09 17:40"),
        pd.Timestamp("2025-01-12"),
    ]
    assert leads["converted"].tolist() == [1, 0, 1, 0]
    assert leads["email"].tolist()[:2] == ["ana@acme.io", "bob@gmail.com"]  # kept in interim
    LEADS_SCHEMA.validate(leads)


def test_events_are_typed_and_sorted_by_lead_then_time(fixture_tables) -> None:
    events = fixture_tables[2]
    assert events.dtypes.astype(str).to_dict() == {
        "lead_id": "str",
        "timestamp": "datetime64[us]",
        "event_type": "str",
        "page": "str",
        "channel": "str",
    }
    assert list(events.index) == list(range(len(events)))
    keys = list(zip(events["lead_id"], events["timestamp"], strict=True))
    assert keys == sorted(keys)
    EVENTS_SCHEMA.validate(events)


def test_ties_keep_the_file_order() -> None:
    leads, _ = validate_leads(
        raw({"lead_id": ["A", "B"], "created_at": ["2025-01-01"] * 2, "converted": ["0", "1"]}),
        "leads.csv",
    )
    events, _ = validate_events(
        raw(
            {
                "lead_id": ["B", "A", "A", "A"],
                "timestamp": ["2025-01-03", "2025-01-02", "2025-01-01", "2025-01-02"],
                "event_type": ["x", "first", "y", "second"],
            }
        ),
        leads,
        "events.csv",
        now=NOW,
    )
    assert events["event_type"].tolist() == ["y", "first", "second", "x"]


def test_every_input_row_is_clean_or_rejected(fixture_tables) -> None:
    leads, rejects_leads, events, rejects_events = fixture_tables
    assert len(leads) + len(rejects_leads) == 6
    assert len(events) + len(rejects_events) == 10
    assert list(rejects_leads.columns[:2]) == ["source_row", "reason"]
    assert rejects_leads["source_row"].tolist() == [6, 7]  # spreadsheet rows, header = 1
    assert rejects_leads["lead_id"].fillna("").tolist() == ["L005", ""]


def test_dates_are_naive_utc() -> None:
    leads, _ = validate_leads(
        raw(
            {
                "lead_id": ["A", "B", "C"],
                "created_at": [
                    "2025-03-01T10:00:00+02:00",
                    "2025-03-01 10:00:00",
                    "2025-03-01T00:00:00Z",
                ],
                "converted": ["0"] * 3,
            }
        ),
        "leads.csv",
    )
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2025-03-01 08:00"),
        pd.Timestamp("2025-03-01 10:00"),
        pd.Timestamp("2025-03-01 00:00"),
    ]
    assert leads["created_at"].dt.tz is None


@pytest.mark.parametrize(
    "options",
    [ReadOptions(date_format="%d/%m/%Y %H:%M"), ReadOptions(dayfirst=True)],
    ids=["date_format", "dayfirst"],
)
def test_configured_date_formats(options: ReadOptions) -> None:
    leads, _ = validate_leads(
        raw(
            {
                "lead_id": ["A", "B"],
                "created_at": ["03/02/2025 10:30", "25/12/2025 08:00"],
                "converted": ["0", "1"],
            }
        ),
        "leads.csv",
        options,
    )
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2025-02-03 10:30"),
        pd.Timestamp("2025-12-25 08:00"),
    ]


def test_outcome_spellings() -> None:
    leads, _ = validate_leads(
        raw(
            {
                "lead_id": list("ABCDEFGH"),
                "created_at": ["2025-01-01"] * 8,
                "converted": ["1", "0", "True", "false", "YES", "no", "1.0", "0.0"],
            }
        ),
        "leads.csv",
    )
    assert leads["converted"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]


def test_company_size_counts_with_configured_decimal() -> None:
    leads, _ = validate_leads(
        raw(
            {
                "lead_id": ["A", "B", "C"],
                "created_at": ["2025-01-01"] * 3,
                "converted": ["0"] * 3,
                "company_size": ["12", "40,0", None],
            }
        ),
        "leads.csv",
        ReadOptions(delimiter=";", decimal=","),
    )
    assert leads["company_size"].tolist() == [12, 40, pd.NA]


def test_typed_parquet_input_gives_the_same_tables(tmp_path: Path, fixture_tables) -> None:
    leads = fixture_tables[0]
    aware = leads.assign(created_at=leads["created_at"].dt.tz_localize("UTC"))
    aware.to_parquet(tmp_path / "leads.parquet")
    again, rejects = validate_leads(
        read_table(tmp_path / "leads.parquet", ReadOptions(), "leads"), "leads.parquet"
    )
    assert rejects.empty
    pd.testing.assert_frame_equal(again, leads)


def test_interim_parquet_round_trips_with_its_types(tmp_path: Path) -> None:
    run(FIXTURES / "leads.csv", FIXTURES / "events.csv", tmp_path, tmp_path, now=NOW)
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    events = pd.read_parquet(tmp_path / "events.parquet")
    LEADS_SCHEMA.validate(leads)
    EVENTS_SCHEMA.validate(events)
    assert str(leads["converted"].dtype) == "int8"
    assert str(leads["company_size"].dtype) == "Int64"
    assert str(events["timestamp"].dtype) == "datetime64[us]"


def test_report_holds_no_personal_data(tmp_path: Path) -> None:
    run(FIXTURES / "leads.csv", FIXTURES / "events.csv", tmp_path, tmp_path, now=NOW)
    text = (tmp_path / "data_quality.json").read_text()
    for personal in ("email", "first_name", "ana@acme.io", "Ana", "@"):
        assert personal not in text
    report = json.loads(text)
    assert "industry" in report["leads"]["missing"]


def test_report_counts_reconcile(fixture_tables) -> None:
    leads, rejects_leads, events, rejects_events = fixture_tables
    report = data_quality_report(leads, rejects_leads, events, rejects_events, now=NOW)
    assert report["leads"]["rows_in"] == 6
    assert report["leads"]["reject_reasons"] == {
        "converted_at is before created_at": 1,
        "lead_id is empty": 1,
    }
    assert report["events"]["rows_in"] == 10
    assert report["events"]["leads_with_events"] == 4
    assert report["now"] == "2026-01-01T00:00:00"


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (lambda df: pd.concat([df, df.head(1)], ignore_index=True), "duplicate values"),
        (
            lambda df: df.assign(converted=df["converted"].where(df.index > 0, 2).astype("int8")),
            "isin",
        ),
        (
            lambda df: df.assign(converted_at=df["created_at"] - pd.Timedelta(days=1)),
            "converted_at",
        ),
        (lambda df: df.assign(company_size=df["company_size"].astype("float64")), "type Int64"),
    ],
    ids=["duplicate_ids", "outcome_2", "converted_before_created", "float_size"],
)
def test_leads_schema_refuses_broken_tables(fixture_tables, broken, check: str) -> None:
    with pytest.raises(pa.errors.SchemaError, match=check):
        LEADS_SCHEMA.validate(broken(fixture_tables[0]))


# -------------------------------------------------------------------------- property

LEAD_DATES = ["2025-01-05", "2025-02-01 12:00:00", "", "not a date", "2025-13-01"]
OUTCOMES = ["0", "1", "", "1"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["id", "id", "id", "", " "]),
            st.sampled_from(LEAD_DATES),
            st.sampled_from(OUTCOMES),
            st.sampled_from(["", "2025-01-01", "2025-03-01"]),
            st.sampled_from(["", "2031-01-01", "2025-06-01", "bad", "ghost"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_accounting_holds_for_any_mix_of_rows(rows) -> None:
    ids = [f"L{i}" if kind == "id" else kind for i, (kind, *_rest) in enumerate(rows)]
    frame = raw(
        {
            "lead_id": ids,
            "created_at": [r[1] for r in rows],
            "converted": [r[2] for r in rows],
            "converted_at": [r[3] for r in rows],
        }
    )
    try:
        leads, rejects = validate_leads(frame, "leads.csv", LENIENT)
    except DataError:
        return  # a whole column unreadable: refusing the file is allowed
    # Every row is clean, rejected or an exact duplicate of an earlier row (dropped, counted).
    repeat = frame.duplicated()
    assert leads.attrs["duplicates_dropped"] == int(repeat.sum())
    assert len(leads) + len(rejects) + int(repeat.sum()) == len(frame)
    assert sorted(
        rejects["source_row"].tolist() + [ids.index(i) + 2 for i in leads["lead_id"]]
    ) == list(frame.index[~repeat])
    assert rejects["reason"].str.len().gt(0).all()

    event_ids = ["ghost" if r[4] == "ghost" else ids[i] for i, r in enumerate(rows)]
    stamps = ["2025-06-01" if r[4] == "ghost" else r[4] for r in rows]
    events_raw = raw(
        {"lead_id": event_ids, "timestamp": stamps, "event_type": [r[2] or None for r in rows]}
    )
    try:
        events, rejected_events = validate_events(events_raw, leads, "events.csv", LENIENT, NOW)
    except DataError:
        return
    n_repeat = int(events_raw.duplicated().sum())
    assert events.attrs["duplicates_dropped"] == n_repeat
    assert len(events) + len(rejected_events) + n_repeat == len(events_raw)
    assert events["lead_id"].isin(leads["lead_id"]).all()
    assert (events["timestamp"] <= NOW).all()


def test_lead_dates_after_the_export_moment_or_before_min_date_are_rejected() -> None:
    frame = raw({
        "lead_id": ["ok", "future_lost", "future_created", "ancient", "ok2"],
        "created_at": ["2025-05-01", "2025-05-01", "2062-05-01", "1900-01-01", "2025-06-30"],
        "converted": ["0", "0", "0", "1", "0"],
        "lost_at": [None, "2062-05-01", None, None, "2025-06-30 23:00:00"],
        "converted_at": [None, None, None, "1900-02-01", None],
    })
    leads, rejects = validate_leads(frame, "leads.csv", LENIENT,
                                    now=pd.Timestamp("2025-06-30 23:00:00"))
    assert leads["lead_id"].tolist() == ["ok", "ok2"]  # == the export moment is kept
    assert dict(zip(rejects["source_row"], rejects["reason"], strict=True)) == {
        3: "lost_at is after the export moment 2025-06-30 23:00:00",
        4: "created_at is after the export moment 2025-06-30 23:00:00",
        5: "created_at is before 1990-01-01 (ingest.min_date); "
           "converted_at is before 1990-01-01 (ingest.min_date)",
    }
    _, rejects = validate_leads(frame.iloc[:2], "leads.csv", now=pd.Timestamp("2025-06-30"))
    assert rejects["reason"].tolist() == ["lost_at is after the export moment 2025-06-30"]


def test_min_date_is_a_read_option() -> None:
    frame = raw({"lead_id": ["a", "b"], "created_at": ["1985-03-01", "2025-01-01"],
                 "converted": ["0", "0"]})
    leads, _ = validate_leads(frame, "leads.csv", ReadOptions(min_date="1980-01-01"), now=NOW)
    assert leads["lead_id"].tolist() == ["a", "b"]
    assert ReadOptions.from_params({"min_date": pd.Timestamp("1980-01-01").date()}).min_date \
        == "1980-01-01"
    with pytest.raises(ConfigError, match="ingest.min_date.*'soon'"):
        ReadOptions(min_date="soon")


def _one_lead() -> pd.DataFrame:
    """A valid leads table of one lead `a`, created 2025-01-01 (for event tests)."""
    leads, _ = validate_leads(raw({"lead_id": ["a"], "created_at": ["2025-01-01"],
                                   "converted": ["0"]}), "leads.csv", now=NOW)
    return leads


def test_events_before_min_date_are_rejected() -> None:
    leads = _one_lead()
    events, rejects = validate_events(
        raw({"lead_id": ["a", "a"], "timestamp": ["1970-01-01", "2025-01-02"],
             "event_type": ["x", "y"]}), leads, "events.csv", LENIENT, now=NOW)
    assert events["event_type"].tolist() == ["y"]
    assert rejects["reason"].tolist() == ["timestamp is before 1990-01-01 (ingest.min_date)"]


def test_a_date_only_value_on_the_creation_day_is_that_day(tmp_path: Path) -> None:
    frame = raw({
        "lead_id": ["same_day", "day_before", "datetime_before", "later"],
        "created_at": ["2025-03-01 14:00:00"] * 4,
        "converted": ["0", "0", "0", "1"],
        "lost_at": ["2025-03-01", "2025-02-28", "2025-03-01 13:59:00", None],
        "converted_at": [None, None, None, "2025-03-02"],
    })
    leads, rejects = validate_leads(frame, "leads.csv", LENIENT, now=NOW)
    assert leads["lead_id"].tolist() == ["same_day", "later"]
    assert rejects["reason"].tolist() == ["lost_at is before created_at"] * 2
    assert leads["lost_at"].iloc[0] == pd.Timestamp("2025-03-01 14:00:00")  # clipped
    assert leads["converted_at"].iloc[1] == pd.Timestamp("2025-03-02")  # untouched
    assert frame["lost_at"].iloc[0] == "2025-03-01"  # the input is not changed
    report = data_quality_report(leads, rejects)
    assert report["leads"]["dates_clipped_to_created_at"] == {"lost_at": 1}


@pytest.mark.parametrize(
    "options",
    [ReadOptions(), ReadOptions(date_format="%d.%m.%Y %H:%M:%S"),
     ReadOptions(date_format="%d.%m.%Y %H:%M"), ReadOptions(date_format="%d.%m.%Y"),
     ReadOptions(dayfirst=True)],
    ids=["iso", "format_seconds", "format_minutes", "format_date", "dayfirst"],
)
def test_mixed_precision_in_one_column_parses(options: ReadOptions) -> None:
    iso = options.date_format is None and not options.dayfirst
    values = (["2025-02-03 10:30:15", "2025-02-03 10:30", "2025-02-03"] if iso
              else ["03.02.2025 10:30:15", "03.02.2025 10:30", "03.02.2025"])
    leads, rejects = validate_leads(raw({"lead_id": ["A", "B", "C"], "created_at": values,
                                         "converted": ["0", "0", "0"]}), "leads.csv", options,
                                    now=NOW)
    assert rejects.empty
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2025-02-03 10:30:15"), pd.Timestamp("2025-02-03 10:30"),
        pd.Timestamp("2025-02-03")]


def test_any_unparsed_date_is_logged_and_noted(caplog: pytest.LogCaptureFixture) -> None:
    n = 40
    frame = raw({"lead_id": [f"L{i}" for i in range(n)],
                 "created_at": ["2025-01-01"] * (n - 1) + ["soon"],
                 "converted": ["0"] * n})
    with caplog.at_level("WARNING", logger="pipeline.contract"):
        leads, rejects = validate_leads(frame, "leads.csv", now=NOW)
    assert len(rejects) == 1
    assert any("column 'created_at' has 1 value that is not read as dates (row 41; "
               "e.g. 'soon')" in r.getMessage() for r in caplog.records)
    report = data_quality_report(leads, rejects)
    assert report["leads"]["unparsed_dates"] == {"created_at": {"count": 1, "rows": [41]}}
    assert data_quality_report(*validate_leads(frame.iloc[:-1], "leads.csv", now=NOW)
                               )["leads"]["unparsed_dates"] == {}


def test_exact_duplicate_rows_are_dropped_and_counted() -> None:
    frame = raw({"lead_id": ["a", "b", "a", "a", "c"],
                 "created_at": ["2025-01-01", "2025-01-02", "2025-01-01", "2025-01-01",
                                "2025-01-03"],
                 "converted": ["0", "1", "0", "0", "0"],
                 "lost_at": [None, None, None, None, None]})
    leads, rejects = validate_leads(frame, "leads.csv", now=NOW)
    assert leads["lead_id"].tolist() == ["a", "b", "c"]
    assert rejects.empty
    report = data_quality_report(leads, rejects)
    assert report["leads"]["duplicates_dropped"] == 2
    assert report["leads"]["rows_in"] == 3  # after the duplicates: rows_in = clean + rejected
    with pytest.raises(DataError, match=r"leads.csv: 2 rows of the leads file repeat an "
                       r"earlier row in every column \(rows 4, 5; e.g. row 4 is a copy of "
                       r"row 2\)"):
        validate_leads(frame, "leads.csv", ReadOptions(duplicates="error"), now=NOW)
    # Same id, another value: not an exact duplicate, so still refused as a duplicate id.
    clash = frame.assign(converted=["0", "1", "1", "0", "0"])
    with pytest.raises(DataError, match="appear more than once"):
        validate_leads(clash, "leads.csv", now=NOW)
    with pytest.raises(ConfigError, match="ingest.duplicates"):
        ReadOptions(duplicates="keep")


def test_exact_duplicate_events_are_dropped_and_counted() -> None:
    leads = _one_lead()
    events, _ = validate_events(
        raw({"lead_id": ["a", "a", "a"], "timestamp": ["2025-01-02"] * 3,
             "event_type": ["x", "x", "y"]}), leads, "events.csv", now=NOW)
    assert events["event_type"].tolist() == ["x", "y"]
    assert data_quality_report(leads, empty_rejects([]), events,
                               empty_rejects([]))["events"]["duplicates_dropped"] == 1


def _two_formats() -> pd.DataFrame:
    return raw({
        "lead_id": [f"L{i}" for i in range(6)],
        "created_at": [f"2025-03-0{i + 1} 10:00" for i in range(6)],
        "converted": ["0"] * 6,
        "lost_at": [f"2{i}.03.2025" for i in range(6)],
    })


def test_each_date_column_may_have_its_own_format() -> None:
    options = ReadOptions(date_formats={"lost_at": "%d.%m.%Y"})
    leads, rejects = validate_leads(_two_formats(), "leads.csv", options, now=NOW)
    assert rejects.empty
    assert leads["lost_at"].tolist() == [pd.Timestamp(f"2025-03-2{i}") for i in range(6)]
    assert leads["created_at"].iloc[0] == pd.Timestamp("2025-03-01 10:00")


def test_date_advice_names_a_format_for_the_failing_column_only() -> None:
    """Two columns written two ways: the advice fixes the failing column without moving the
    other (following it must work, not flip the error to the other column)."""
    with pytest.raises(DataError) as err:
        validate_leads(_two_formats(), "leads.csv", ReadOptions(), now=NOW)
    message = str(err.value)
    assert "'lost_at'" in message and "ingest.date_formats: {lost_at: '%d.%m.%Y'}" in message
    validate_leads(_two_formats(), "leads.csv", ReadOptions(date_formats={"lost_at": "%d.%m.%Y"}),
                   now=NOW)


def test_date_formats_must_be_a_mapping_of_formats() -> None:
    with pytest.raises(ConfigError, match="date_formats"):
        ReadOptions(date_formats={"lost_at": "dd.mm.yyyy"})
    assert ReadOptions.from_params({"date_formats": {"lost_at": "%d.%m.%Y"}}).for_column(
        "lost_at").date_format == "%d.%m.%Y"
