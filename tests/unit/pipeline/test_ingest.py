"""The ingest stage: every bad input stops with a clear DataError or becomes a counted reject."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from pipeline.contract import validate_events, validate_leads
from pipeline.errors import ConfigError, DataError, LeadpropError
from pipeline.readers import ReadOptions, read_table
from pipeline.stages.ingest import from_params, run

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ingest"
NOW = pd.Timestamp("2026-01-01")
HEADER = "lead_id,created_at,converted,converted_at,company_size"


def lead_rows(n: int) -> list[str]:
    """`n` valid CSV lead rows L01.., created in January 2025."""
    return [f"L{i:02d},2025-01-{1 + i % 28:02d},{i % 2},," for i in range(1, n + 1)]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def raw(columns: dict[str, list[str | None]]) -> pd.DataFrame:
    """A raw text frame numbered like `read_table` numbers a CSV (first data row = 2)."""
    frame = pd.DataFrame(columns, dtype="str")
    frame.index = pd.RangeIndex(2, 2 + len(frame))
    return frame


def clean_leads(n: int = 30) -> pd.DataFrame:
    leads, _ = validate_leads(
        raw(
            {
                "lead_id": [f"L{i:02d}" for i in range(1, n + 1)],
                "created_at": ["2025-01-01"] * n,
                "converted": ["0"] * n,
            }
        ),
        "leads.csv",
    )
    return leads


def events_frame(n: int = 30) -> dict[str, list[str | None]]:
    return {
        "lead_id": [f"L{1 + i % 30:02d}" for i in range(n)],
        "timestamp": [f"2025-03-{1 + i % 28:02d} 10:00:00" for i in range(n)],
        "event_type": ["site_visit"] * n,
    }


def run_into(tmp_path: Path, leads: Path, events: Path | None) -> dict:
    return run(leads, events, tmp_path / "interim", tmp_path / "reports", now=NOW)


# ------------------------------------------------------------------- fatal: the file


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"leads\.csv: the leads file does not exist") as err:
        run_into(tmp_path, tmp_path / "leads.csv", None)
    assert err.value.file == str(tmp_path / "leads.csv")


def test_missing_events_file(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(3)])
    with pytest.raises(DataError, match=r"events\.csv: the events file does not exist"):
        run_into(tmp_path, leads, tmp_path / "events.csv")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"leads\.csv: the leads file is empty \(0 bytes\)"):
        run_into(tmp_path, tmp_path / "leads.csv", None)


def test_header_only_file(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER])
    with pytest.raises(DataError, match=r"has a header \('lead_id', 'created_at'.*but no data"):
        run_into(tmp_path, leads, None)


def test_wrong_delimiter(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", ["lead_id;created_at;converted", "L1;2025-01-01;0"])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert "leads.csv: the leads file has 1 column 'lead_id;created_at;converted'" in message
    assert "is `delimiter` ';'?" in message


def test_undecodable_bytes(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(3), "Lé,2025-01-01,0,,"], "cp1252")
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert "leads.csv: the leads file is not valid utf-8 text at line 5 (byte 0xe9)" in message
    assert "check `encoding`" in message
    # ...and the configured encoding reads it.
    frame = read_table(leads, ReadOptions(encoding="cp1252"), "leads")
    assert frame["lead_id"].iloc[-1] == "Lé"


def test_row_with_more_fields_than_header(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(2), "L9,Jan 1, 2025,0,,"])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    assert "1 row of the leads file has more fields than the header" in str(err.value)
    assert "(e.g. line 4 has 6 fields where the header has 5)" in str(err.value)


def test_unknown_file_type(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.xlsx", ["x"])
    with pytest.raises(DataError, match=r"cannot tell how to read the leads file"):
        run_into(tmp_path, leads, None)


def test_damaged_parquet(tmp_path: Path) -> None:
    (tmp_path / "leads.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(
        DataError, match=r"leads\.parquet: the leads file is not a readable Parquet"
    ):
        run_into(tmp_path, tmp_path / "leads.parquet", None)


# ----------------------------------------------------------------- fatal: the columns


def test_missing_required_lead_column_lists_found_and_close_matches(tmp_path: Path) -> None:
    leads = write(
        tmp_path / "leads.csv", ["lead_id,created,converted,email", "L1,2025-01-01,0,a@b.c"]
    )
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert "leads.csv: the leads file has no column 'created_at'" in message
    assert "It has 4 columns: 'lead_id', 'created', 'converted', 'email'" in message
    assert "Did you mean 'created' for 'created_at'?" in message
    assert err.value.column == "created_at"


def test_missing_required_event_column(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(3)])
    events = write(tmp_path / "events.csv", ["lead_id,ts,Event_Type", "L01,2025-01-02,site_visit"])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, events)
    message = str(err.value)
    assert "events.csv: the events file has no columns 'timestamp', 'event_type'" in message
    assert "'Event_Type' for 'event_type'" in message


def test_duplicate_lead_ids(tmp_path: Path) -> None:
    rows = lead_rows(5) + ["L02,2025-02-01,0,,", "L04,2025-02-01,1,,", "L04,2025-02-02,1,,"]
    leads = write(tmp_path / "leads.csv", [HEADER, *rows])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert (
        "leads.csv: column 'lead_id' has 2 ids that appear more than once (5 rows in all" in message
    )
    assert "'L02' in rows 3, 7" in message
    assert (err.value.column, err.value.n_rows, err.value.example) == ("lead_id", 5, "L02")


def test_non_binary_outcome(tmp_path: Path) -> None:
    rows = lead_rows(4) + ["L05,2025-01-05,won,,", "L06,2025-01-05,won,,", "L07,2025-01-05,2,,"]
    leads = write(tmp_path / "leads.csv", [HEADER, *rows])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert "leads.csv: column 'converted' must hold the outcome as 0 or 1" in message
    assert (
        "3 rows hold 2 other values: 'won' (2 rows, e.g. row 6), '2' (1 row, e.g. row 8)" in message
    )
    assert (err.value.column, err.value.n_rows) == ("converted", 3)


def test_mostly_unparseable_dates_name_date_format(tmp_path: Path) -> None:
    rows = [f"L{i},{d}/01/2025,0,," for i, d in enumerate(["13", "14", "15"])] + lead_rows(3)
    leads = write(tmp_path / "leads.csv", [HEADER, *rows])
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, None)
    message = str(err.value)
    assert "leads.csv: column 'created_at' has 3 of 6 values that are not dates" in message
    assert "(rows 2, 3, 4; e.g. '13/01/2025', '14/01/2025')" in message
    assert "ingest.date_formats: {created_at: '%d/%m/%Y'}" in message  # this column only
    assert "'%d/%m/%Y'" in message  # the guess
    assert (err.value.column, err.value.n_rows, err.value.example) == (
        "created_at",
        3,
        "13/01/2025",
    )


def test_mostly_unparseable_event_timestamps(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(3)])
    events = write(
        tmp_path / "events.csv",
        ["lead_id,timestamp,event_type", "L01,2025-13-45,site_visit", "L02,yesterday,site_visit",
         "L03,2025-01-09,site_visit"],
    )  # fmt: skip
    with pytest.raises(DataError) as err:
        run_into(tmp_path, leads, events)
    message = str(err.value)
    assert "events.csv: column 'timestamp' has 2 of 3 values that are not dates" in message
    assert "(rows 2, 3; e.g. '2025-13-45', 'yesterday')" in message
    assert "set ingest.date_format" in message


def test_company_size_that_is_not_a_count() -> None:
    frame = raw(
        {
            "lead_id": ["L1", "L2", "L3"],
            "created_at": ["2025-01-01"] * 3,
            "converted": ["0"] * 3,
            "company_size": ["11-50", "51-200", "7"],
        }
    )
    with pytest.raises(DataError, match=r"column 'company_size' has 2 of 3 values that are not "
                       r"whole numbers >= 0 \(rows 2, 3; e\.g\. '11-50', '51-200'\)"):  # fmt: skip
        validate_leads(frame, "leads.csv")


def test_most_events_of_unknown_leads_stop_the_run() -> None:
    frame = raw(
        {"lead_id": ["X1", "X2", "L01"], "timestamp": ["2025-02-01"] * 3, "event_type": ["a"] * 3}
    )
    with pytest.raises(DataError) as err:
        validate_events(frame, clean_leads(), "events.csv", now=NOW)
    message = str(err.value)
    assert "events.csv: 2 of 3 rows (67%) of the events file would be rejected" in message
    assert "2 × lead_id is not in the leads file (rows 2, 3)" in message
    assert "lead_id values are the ones in the leads file" in message


def test_reserved_column_name() -> None:
    frame = raw(
        {"lead_id": ["L1"], "created_at": ["2025-01-01"], "converted": ["0"], "reason": ["x"]}
    )
    with pytest.raises(DataError, match=r"column named 'reason'"):
        validate_leads(frame, "leads.csv")


def test_data_errors_are_user_facing_and_picklable(tmp_path: Path) -> None:
    with pytest.raises(LeadpropError) as err:
        run_into(tmp_path, tmp_path / "leads.csv", None)
    assert isinstance(err.value, DataError)
    copy = pickle.loads(pickle.dumps(err.value))
    assert (str(copy), copy.file) == (str(err.value), err.value.file)
    assert not (tmp_path / "interim").exists()  # nothing written on failure


# ---------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delimiter": ";;"}, r"`ingest.delimiter` must be one character; got ';;'"),
        ({"encoding": "utf-9"}, r"`ingest.encoding` must be a known text encoding"),
        ({"date_format": "DD/MM/YYYY"}, r"`ingest.date_format` must be a strftime-style"),
        ({"decimal": ","}, r"`ingest.decimal` must be one character other than the delimiter"),
        ({"max_bad_share": 1.5}, r"`ingest.max_bad_share` must be >= 0 and < 1; got 1.5"),
    ],
)
def test_bad_read_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReadOptions(**kwargs)


def test_read_options_from_params() -> None:
    options = ReadOptions.from_params({"now": None, "delimiter": ";", "na_values": ["", "NULL"]})
    assert (options.delimiter, options.na_values) == (";", ("", "NULL"))
    with pytest.raises(ConfigError, match=r"`ingest.delimeter` is not a known setting"):
        ReadOptions.from_params({"delimeter": ";"})


def test_bad_now(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`ingest.now` must be a date"):
        run(FIXTURES / "leads.csv", None, tmp_path, tmp_path, now="soon")


# -------------------------------------------------------------------- rejected rows


def test_lead_row_rejects_are_counted_with_reasons() -> None:
    n = 40
    columns = {
        "lead_id": [f"L{i:02d}" for i in range(n)],
        "created_at": ["2025-01-10"] * n,
        "converted": ["1"] * n,
        "converted_at": [None] * n,
    }
    columns["lead_id"][0] = "  "  # empty id (whitespace only)
    columns["created_at"][1] = "2025-02-30"  # not a date, 1 of 40 values: under 5 %
    columns["created_at"][2] = None  # empty
    columns["converted_at"][3] = "2025-01-01"  # before created_at
    columns["converted"][4] = None  # outcome missing
    leads, rejects = validate_leads(raw(columns), "leads.csv")

    assert len(leads) + len(rejects) == n
    assert rejects[["source_row", "reason"]].to_dict("list") == {
        "source_row": [2, 3, 4, 5, 6],
        "reason": [
            "lead_id is empty",
            "created_at is not a date",
            "created_at is empty",
            "converted_at is before created_at",
            "converted is empty",
        ],
    }
    assert rejects["created_at"].iloc[1] == "2025-02-30"  # raw value kept for the user
    # converted without converted_at is allowed: the date is just unknown
    assert leads["converted"].eq(1).all() and leads["converted_at"].isna().all()


def test_event_row_rejects_are_counted_with_reasons() -> None:
    columns = events_frame(40)
    columns["lead_id"][0] = "L99"  # unknown lead
    columns["lead_id"][1] = "R1"  # a rejected lead
    columns["timestamp"][2] = "2025-02-31"  # not a date, 1 of 40: under 5 %
    columns["timestamp"][3] = "2026-01-02"  # after now
    columns["event_type"][4] = ""  # empty
    columns["lead_id"][5] = None  # empty
    events, rejects = validate_events(
        raw(columns), clean_leads(), "events.csv", now=NOW, rejected_lead_ids=["R1"]
    )
    assert len(events) + len(rejects) == 40
    assert rejects[["source_row", "reason"]].to_dict("list") == {
        "source_row": [2, 3, 4, 5, 6, 7],
        "reason": [
            "lead_id is not in the leads file",
            "lead_id belongs to a rejected lead",
            "timestamp is not a date",
            "timestamp is in the future",
            "event_type is empty",
            "lead_id is empty",
        ],
    }


def test_several_reasons_for_one_row_are_joined() -> None:
    columns = events_frame(30)
    columns["lead_id"][0] = "L99"
    columns["timestamp"][0] = "2027-01-01"
    _, rejects = validate_events(raw(columns), clean_leads(), "events.csv", now=NOW)
    assert rejects["reason"].tolist() == [
        "lead_id is not in the leads file; timestamp is in the future"
    ]


def test_future_defaults_to_the_wall_clock() -> None:
    columns = events_frame(30)
    columns["timestamp"][0] = str(pd.Timestamp.now() + pd.Timedelta(days=400))
    _, rejects = validate_events(raw(columns), clean_leads(), "events.csv")
    assert rejects["reason"].tolist() == ["timestamp is in the future"]


# ------------------------------------------------------------------------ happy path


def test_run_writes_typed_tables_rejects_and_report(tmp_path: Path) -> None:
    counts = run_into(tmp_path, FIXTURES / "leads.csv", FIXTURES / "events.csv")

    assert counts == {
        "leads": {"rows_in": 6, "rows_clean": 4, "rows_rejected": 2, "base_rate": 0.5},
        "events": {"rows_in": 10, "rows_clean": 6, "rows_rejected": 4},
    }
    interim = tmp_path / "interim"
    leads = pd.read_parquet(interim / "leads.parquet")
    events = pd.read_parquet(interim / "events.parquet")
    rejects_leads = pd.read_csv(interim / "rejects_leads.csv", dtype=str)
    rejects_events = pd.read_csv(interim / "rejects_events.csv", dtype=str)
    assert leads["lead_id"].tolist() == ["L001", "L002", "L003", "L004"]
    assert leads["company_size"].tolist() == [120, pd.NA, 15, 2500]
    assert events[["lead_id", "event_type"]].values.tolist() == [
        ["L001", "site_visit"],
        ["L001", "pricing_view"],
        ["L001", "email_open"],
        ["L002", "site_visit"],
        ["L003", "demo_request"],
        ["L004", "case_study_view"],
    ]
    assert rejects_leads["reason"].tolist() == [
        "converted_at is before created_at",
        "lead_id is empty",
    ]
    assert rejects_events["reason"].tolist() == [
        "lead_id belongs to a rejected lead",
        "lead_id is not in the leads file",
        "timestamp is in the future",
        "event_type is empty",
    ]
    assert rejects_events["source_row"].tolist() == ["7", "8", "9", "10"]

    report = json.loads((tmp_path / "reports" / "data_quality.json").read_text())
    for table in ("leads", "events"):
        section = report[table]
        assert section["rows_in"] == section["rows_clean"] + section["rows_rejected"]
        assert sum(section["reject_reasons"].values()) == section["rows_rejected"]
    assert report["leads"]["base_rate"] == 0.5
    assert report["leads"]["date_ranges"]["created_at"] == {
        "min": "2025-01-06T09:15:00",
        "max": "2025-01-12T00:00:00",
    }
    assert report["leads"]["missing"]["company_size"] == {"count": 1, "share": 0.25}
    assert report["events"]["reject_reasons"]["timestamp is in the future"] == 1


def test_run_without_events_writes_an_empty_typed_events_table(tmp_path: Path) -> None:
    counts = run_into(tmp_path, FIXTURES / "leads.csv", None)

    assert counts["events"] == {"rows_in": 0, "rows_clean": 0, "rows_rejected": 0}
    events = pd.read_parquet(tmp_path / "interim" / "events.parquet")
    assert events.empty
    assert events.dtypes.astype(str).to_dict() == {
        "lead_id": "str",
        "timestamp": "datetime64[us]",
        "event_type": "str",
    }
    header = (tmp_path / "interim" / "rejects_events.csv").read_text().strip()
    assert header == "source_row,reason,lead_id,timestamp,event_type"


def test_header_only_rejects_when_nothing_is_rejected(tmp_path: Path) -> None:
    leads = write(tmp_path / "leads.csv", [HEADER, *lead_rows(3)])
    run_into(tmp_path, leads, None)
    header = (tmp_path / "interim" / "rejects_leads.csv").read_text().strip()
    assert header == "source_row,reason," + HEADER


def test_excel_style_csv_with_bom_and_padding(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_bytes(b"\xef\xbb\xbf lead_id ,created_at,converted\r\n L1 ,2025-01-01 , 1\r\n")
    counts = run_into(tmp_path, leads, None)
    assert counts["leads"]["rows_clean"] == 1
    out = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert out[["lead_id", "converted"]].values.tolist() == [["L1", 1]]


def test_from_params_reads_paths_now_and_options(tmp_path: Path) -> None:
    from types import SimpleNamespace

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    write(
        raw_dir / "leads.csv",
        [HEADER.replace(",", ";"), *(r.replace(",", ";") for r in lead_rows(3))],
    )
    params = SimpleNamespace(
        paths=SimpleNamespace(raw=raw_dir, interim=tmp_path / "interim", reports=tmp_path / "rep"),
        ingest_now=pd.Timestamp("2026-01-01"),
        raw={"ingest": {"now": "2026-01-01", "delimiter": ";"}},
    )
    counts = from_params(params)  # no events.csv in raw/: optional
    assert counts["leads"]["rows_clean"] == 3
    assert (tmp_path / "interim" / "events.parquet").exists()
    assert (tmp_path / "rep" / "data_quality.json").exists()


def test_source_dates_after_exported_at_are_rejected_or_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from pipeline.sources import load_source
    from pipeline.stages.ingest import run_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "leads.csv").write_text(
        "ID,Created,Stage,Closed,Signed\n"
        "1,2024-02-01,Won,2024-02-20,2024-01-15\n"
        "2,2024-02-02,Won,2062-02-20,2024-01-16\n"    # won in 2062: a typo
        "3,2024-02-03,Open,,2062-01-17\n"             # a date extra in 2062
        "4,2024-02-04,Open,,2024-01-18\n", encoding="utf-8")
    (tmp_path / "src.yaml").write_text(yaml.safe_dump({
        "leads": {"path": "leads.csv", "map": {"lead_id": "ID", "created_at": "Created"},
                  "roles": {"Signed": {"role": "fit", "type": "date"}}},
        "outcome": {"column": "Stage", "positive": ["Won"], "negative": ["Lost", "Open"],
                    "date": "Closed"},
        "exported_at": "2024-03-01",
    }), encoding="utf-8")
    run_source(load_source("src.yaml"), tmp_path / "interim", tmp_path / "reports")
    rejects = pd.read_csv(tmp_path / "interim" / "rejects_leads.csv", dtype=str)
    assert rejects["reason"].tolist() == ["converted_at is after the export moment 2024-03-01"]
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert leads["lead_id"].tolist() == ["1", "3", "4"]
    signed = [c for c in leads.columns if c.lower().startswith("signed")][0]
    assert leads[signed].isna().tolist() == [False, True, False]


def test_date_only_values_set_to_created_at_are_counted_in_the_report(tmp_path: Path) -> None:
    lines = ["lead_id,created_at,converted,converted_at,lost_at",
             "L1,2025-01-05 09:30:00,1,2025-01-05,",
             "L2,2025-01-05 09:30:00,0,,2025-01-05",
             "L3,2025-01-05 09:30:00,0,,2025-01-06"]
    run_into(tmp_path, write(tmp_path / "leads.csv", lines), None)
    report = json.loads((tmp_path / "reports" / "data_quality.json").read_text())
    assert report["leads"]["rows_rejected"] == 0
    assert report["leads"]["dates_clipped_to_created_at"] == {"converted_at": 1, "lost_at": 1}
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert leads["converted_at"].iloc[0] == pd.Timestamp("2025-01-05 09:30:00")
