"""Hints and limits when reading an export: the delimiter that really splits the header, cp1251
for Cyrillic bytes (not cp1252), and a maximum cell size with an error naming file, column,
row and the setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import readers
from pipeline.errors import ConfigError, DataError
from pipeline.readers import ReadOptions, read_table, suggest_delimiter, suggest_encoding

RUSSIAN = "Иван,Компания Ромашка,Москва,менеджер по продажам"
FRENCH = "Hélène,Société Générale,Orléans,responsable des ventes"
GERMAN = "Jürgen,Müller GmbH,München,Vertriebsleiter"


# ------------------------------------------------------------------------ delimiter


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_delimiter_that_splits_every_line_is_named(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("\n".join(sep.join(r) for r in [
        ["lead_id", "created_at", "converted"], ["L1", "2025-01-01", "0"],
        ["L2", "2025-01-02", "1"]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_table(path, ReadOptions(), "leads")
    shown = "tab" if sep == "\t" else repr(sep)
    assert f"is `delimiter` {shown}? Set ingest.delimiter to {shown}" in str(err.value)


def test_the_most_consistent_split_wins_over_the_first_candidate() -> None:
    # ';' appears in every header name but splits the rows unevenly; '|' is the delimiter.
    lines = ["id;x|created;y|converted;z", "L1|2025-01-01|0", "L2;a;b|2025-01-02|1",
             "L3|2025-01-03|0"]
    assert suggest_delimiter(lines, ",") == "|"
    assert suggest_delimiter(["lead_id created_at"], ",") is None


# ------------------------------------------------------------------------- encoding


def test_cyrillic_bytes_suggest_cp1251() -> None:
    assert suggest_encoding(RUSSIAN.encode("cp1251"), "utf-8") == "cp1251"
    assert suggest_encoding(FRENCH.encode("cp1252"), "utf-8") is None
    assert suggest_encoding(GERMAN.encode("cp1252"), "utf-8") is None
    assert suggest_encoding(b"plain ascii", "utf-8") is None


def test_the_decode_error_names_cp1251_for_a_russian_export(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(("lead_id,first,company,city,title\n" + "\n".join(
        f"L{i},{RUSSIAN}" for i in range(20)) + "\n").encode("cp1251"))
    with pytest.raises(DataError) as err:
        read_table(path, ReadOptions(), "leads")
    assert "e.g. to 'cp1251'" in str(err.value) and "mojibake" in str(err.value)
    frame = read_table(path, ReadOptions(encoding="cp1251"), "leads")
    assert frame.loc[2, "company"] == "Компания Ромашка"


def test_a_western_export_still_gets_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(("lead_id,first,company,city,title\n"
                      f"L1,{FRENCH}\nL2,{GERMAN}\n").encode("cp1252"))
    with pytest.raises(DataError, match=r"e\.g\. to 'cp1252' or 'latin-1'"):
        read_table(path, ReadOptions(), "leads")


# ------------------------------------------------------------------------ field size


def test_a_cell_over_the_limit_names_file_column_row_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("lead_id,created_at,notes\nL1,2025-01-01,short\n"
                    f"L2,2025-01-02,\"{'x' * 2500}\"\n", encoding="utf-8")
    options = ReadOptions(max_field_size=1000)
    with pytest.raises(DataError) as err:
        read_table(path, options, "leads")
    message = str(err.value)
    assert str(path) in message and "column 'notes', row 3" in message
    assert "2,500 characters" in message and "`ingest.max_field_size` = 1,000" in message
    assert (err.value.column, err.value.n_rows) == ("notes", 1)
    assert read_table(path, ReadOptions(max_field_size=5000), "leads").loc[3, "notes"] \
        == "x" * 2500


def test_a_huge_line_is_refused_before_pandas_reads_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("lead_id,created_at,notes\nL1,2025-01-01,a\nL2,2025-01-02,\"" + "y" * 50_000
                    + "\"\n", encoding="utf-8")

    def never(*args, **kwargs):
        raise AssertionError("pandas must not read a file with a line over the limit")

    monkeypatch.setattr(pd, "read_csv", never)
    with pytest.raises(DataError, match=r"a line of more than 3,006 bytes at line 3, which must "
                                        r"hold a cell over the limit .*"
                                        r"`ingest.max_field_size` = 1,000"):
        read_table(path, ReadOptions(max_field_size=1000), "leads")


def test_the_default_limit_is_one_million_characters(tmp_path: Path) -> None:
    assert ReadOptions().max_field_size == 1_000_000
    path = tmp_path / "leads.csv"
    path.write_text(f"lead_id,notes\nL1,{'z' * 1_000_001}\n", encoding="utf-8")
    with pytest.raises(DataError, match="1,000,001 characters"):
        read_table(path, ReadOptions(), "leads")


def test_parquet_cells_are_limited_too(tmp_path: Path) -> None:
    path = tmp_path / "leads.parquet"
    pd.DataFrame({"lead_id": ["L1", "L2"], "notes": ["a", "b" * 2000]}).to_parquet(path)
    with pytest.raises(DataError, match="column 'notes', row 2"):
        read_table(path, ReadOptions(max_field_size=1000), "leads")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1MB", True])
def test_the_setting_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match=r"`ingest.max_field_size` must be a whole number"):
        ReadOptions.from_params({"max_field_size": bad})


def test_helpers_stay_separate_from_read_table() -> None:
    """The hint and limit code are their own functions (readers.py is shared)."""
    for name in ("suggest_delimiter", "suggest_encoding", "scan_line_lengths",
                 "check_field_sizes"):
        assert callable(getattr(readers, name))


def test_the_setting_goes_through_params_yaml(tmp_path: Path) -> None:
    """Every read option, max_field_size included, is a known `ingest:` key of params.yaml."""
    import yaml

    from pipeline.settings import load_params

    root = Path(__file__).parents[2]
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    assert params["ingest"]["max_field_size"] == 1_000_000  # shipped, documented default
    params["ingest"].update(max_field_size=10, min_date="2000-01-01", duplicates="error",
                            date_formats={"lost_at": "%d.%m.%Y"})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    options = ReadOptions.from_params(load_params(path).raw["ingest"])
    assert (options.max_field_size, options.min_date, options.duplicates) == (
        10, "2000-01-01", "error")
