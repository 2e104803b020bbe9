"""Source configurations: validation, mapping an export onto the contract, and every bad
input stopping early with a message that says what to fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pipeline import sources
from pipeline.errors import ConfigError, DataError
from pipeline.settings import load_params
from pipeline.sources import (
    Export,
    column_name,
    effective_params,
    load_source,
    map_export,
    parse_numbers,
    parse_source,
    read_export,
    type_columns,
)
from pipeline.stages.ingest import run_source

ROOT = Path(__file__).parents[3]

BASE: dict[str, Any] = {
    "leads": {
        "path": "leads.csv",
        "read": {"delimiter": ";", "encoding": "cp1251", "decimal": ",",
                 "date_format": "%d.%m.%Y", "na_values": ["", "-"]},
        "map": {"lead_id": "ID", "created_at": "Создан", "source": "Источник"},
        "roles": {"Визиты": {"role": "exclude", "reason": "as of the export"},
                  "Чек": {"role": "fit", "type": "number"}},
    },
    "outcome": {"column": "Статус", "positive": ["Успешно"], "negative": ["Отказ", "В работе"],
                "date": "Закрыт"},
}
HEADER = "ID;Создан;Источник;Статус;Визиты;Чек;Закрыт"
ROWS = [
    "1;01.02.2024;Директ;Успешно;5;12 345,50;20.02.2024",
    "2;02.02.2024;Сайт;Отказ;1;100,25;-",
    "3;03.02.2024;Директ;В работе;-;7,5;-",
    "4;04.02.2024;Сайт;Отказ;2;-;-",
]


def config(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. config(**{"leads.read.decimal": "."})."""
    out = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def raw(header: str = HEADER, rows: list[str] = ROWS) -> pd.DataFrame:
    """A raw export frame numbered like read_table numbers a CSV (first data row = 2)."""
    names = header.split(";")
    frame = pd.DataFrame([r.split(";") for r in rows], columns=names, dtype="str")
    frame = frame.replace({"": None, "-": None})
    frame.index = pd.RangeIndex(2, 2 + len(frame))
    return frame


def write_csv(path: Path, header: str = HEADER, rows: list[str] = ROWS,
              encoding: str = "cp1251", sep: str = ";") -> Path:
    lines = [header, *rows]
    path.write_bytes(("\r\n".join(line.replace(";", sep) for line in lines) + "\r\n")
                     .encode(encoding))
    return path


def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any],
           name: str = "src.yaml") -> sources.SourceConfig:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return load_source(name)


# --------------------------------------------------------------------- the config


@pytest.mark.parametrize("name", ["example.yaml", "xeducation.yaml", "amocrm_fixture.yaml",
                                  "eventlog_fixture.yaml", "directmail.yaml"])
def test_shipped_configurations_are_valid(name: str) -> None:
    cfg = load_source(ROOT / "sources" / name)
    assert cfg.leads.roles


def test_parsed_config_has_interim_names_decisions_and_mode() -> None:
    cfg = parse_source(config(**{"leads.roles.Теги": {"role": "fit", "safe": True,
                                                      "reason": "set by the form"}}))
    assert cfg.time_aware
    assert cfg.exclude == ("vizity",)
    assert cfg.safe == ("tegi", "extra_tegi")
    assert cfg.leads.read.decimal == ","
    lead_level = parse_source(config(**{"leads.map": {"lead_id": "ID"}}))
    assert not lead_level.time_aware


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"leeds": {}}, "`leeds`. Did you mean `leads`?"),
        ({"leads.read.delimeter": ","},
         "`leads.read.delimeter`. Did you mean `leads.read.delimiter`?"),
        ({"leads.map.lead_di": "ID"}, "`leads.map.lead_di`. Did you mean `leads.map.lead_id`?"),
        ({"outcome.positiv": ["x"]}, "`outcome.positiv`. Did you mean `outcome.positive`?"),
        ({"leads.roles.Чек": {"rol": "fit"}}, "Did you mean `leads.roles.Чек.role`?"),
        ({"leads.roles.Чек": "exlude"}, "got 'exlude'. Did you mean 'exclude'?"),
        ({"leads.roles.Чек": {"role": "fit", "type": "numbr"}}, "Did you mean 'number'?"),
        ({"params.bnds": {}}, "`params.bnds`. Did you mean `params.bands`?"),
    ],
)
def test_misspelled_keys_and_values_name_close_matches(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match="unknown key|must be one of") as err:
        parse_source(config(**changes), "my.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("my.yaml: ")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"outcome.positive": [True]}, "quote the value, e.g. 'Yes'"),
        ({"outcome.negative": ["Успешно"]}, "in both `outcome.positive` and `outcome.negative`"),
        ({"outcome.lost": ["Другое"]}, "`outcome.lost` must be a subset"),
        ({"outcome.lost": ["Отказ"], "outcome.date": None},
         "`outcome.lost` dates lost leads with `outcome.date`"),
        ({"outcome.column": None}, "`outcome` needs `column:`"),
        ({"outcome": {"event": "won"}}, "needs an `events:` section"),
        ({"leads.read.delimiter": ";;"}, "`leads.read.delimiter` must be one character"),
        ({"leads.read.encoding": "cp9999"}, "`leads.read.encoding` must be a known"),
        ({"leads.roles.Визиты": {"role": "behaviour"}}, "role `behaviour`"),
        ({"leads.roles.Чек": {"role": "fit", "safe": True}}, "say why in `reason:`"),
        ({"leads.roles.Чек": {"role": "exclude", "safe": True, "reason": "x"}},
         "its role must be fit or behaviour"),
        ({"leads.roles.Источник": "fit"}, "cannot also have a role"),
        ({"leads.map.source": "ID"}, "onto both `lead_id` and `source`"),
        ({"params.features": {"exclude": ["x"]}}, "leakage decisions are written as column"),
        ({"exported_at": "soon"}, "`exported_at` must be a date"),
    ],
)
def test_inconsistent_configs_are_refused(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_source(config(**changes))
    assert expected in str(err.value)


def test_lead_level_refuses_events_for_features_and_dates() -> None:
    no_time = {"leads.map": {"lead_id": "ID"}}
    events = {"path": "e.csv", "map": {"lead_id": "a", "timestamp": "b", "event_type": "c"}}
    with pytest.raises(ConfigError, match="an events file needs `created_at`"):
        parse_source(config(**no_time, events=events))
    # a date in a lead-level export is allowed: it becomes "days before exported_at"
    dated = parse_source(config(**no_time, **{"leads.roles.Визиты": {"role": "fit",
                                                                     "type": "date"}}))
    assert dated.role_of("Визиты").type == "date" and not dated.time_aware
    # ... but the activity log may give the outcome
    ok = parse_source(config(**no_time, events=events, outcome={"event": "won"}))
    assert ok.outcome.event == "won" and not ok.time_aware


def test_missing_config_file_suggests_the_shipped_ones(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match="sources/xeducation.yaml"):
        load_source("sources/xeducaton.yaml")


def test_column_names_are_ascii_identifiers() -> None:
    assert column_name("Кол-во визитов") == "kol_vo_vizitov"
    assert column_name("Total Time Spent on Website") == "total_time_spent_on_website"
    assert column_name("Оценка менеджера") == "otsenka_menedzhera"
    assert column_name("Café №1") == "cafe_no1"
    assert column_name("!!!") == ""


def test_numbers_read_with_the_exports_decimal_mark() -> None:
    text = pd.Series(["12\u00a0345,50", "7,5", "1 000", None, "abc", "3.5"], dtype="str")
    got = parse_numbers(text, ",")
    assert got.iloc[:3].tolist() == [12345.5, 7.5, 1000.0]
    assert got.iloc[3:].isna().all()  # missing, not a number, the other decimal mark
    assert parse_numbers(pd.Series(["3.5", "1'200"]), ".").tolist() == [3.5, 1200.0]


# ------------------------------------------------------------ effective params


def test_effective_params_fold_in_decisions_and_overrides(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(**{"leads.roles.Теги": {"role": "fit", "safe": True, "reason": "form"},
                    "params": {"label": {"horizon_days": 30},
                               "bands": {"temperature": {"policy": "share"}}}})
    in_tmp(tmp_path, monkeypatch, cfg)
    raw_params = {"source": "src.yaml",
                  "features": {"exclude": ["status", "tegi"], "safe": ["vizity"]},
                  "label": {"horizon_days": 90},
                  "bands": {"temperature": {"policy": "conversion", "bands": []}}}
    out = effective_params(raw_params)
    assert out["features"]["exclude"] == ["status", "vizity"]  # the config's decision wins
    assert out["features"]["safe"] == ["tegi", "extra_tegi"]
    assert out["label"] == {"horizon_days": 30}
    assert out["bands"]["temperature"] == {"policy": "share", "bands": []}
    assert raw_params["features"]["exclude"] == ["status", "tegi"]  # input untouched
    assert effective_params({"source": "synthetic", "x": 1}) == {"source": "synthetic", "x": 1}


def test_load_params_sees_the_source_decisions(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch, config())
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["source"] = "src.yaml"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    loaded = load_params(tmp_path / "params.yaml")
    assert "vizity" in loaded.features["exclude"]
    assert loaded.raw["features"]["exclude"] == loaded.features["exclude"]  # logged to MLflow
    assert loaded.source == "src.yaml"


# -------------------------------------------------------------------- mapping


def test_map_export_renames_onto_the_contract() -> None:
    cfg = parse_source(config())
    mapped = map_export(cfg, Export(raw()))
    leads = mapped.leads
    assert list(leads.columns) == ["lead_id", "created_at", "source", "converted",
                                   "converted_at", "vizity", "chek"]
    assert leads["converted"].tolist() == ["1", "0", "0", "0"]
    assert mapped.outcome_counts == {"positive": 1, "negative": 3, "missing": 0}
    assert not mapped.lead_level and mapped.ignored == ()


def test_unlisted_columns_get_the_default_role_or_stop() -> None:
    frame = raw(HEADER + ";Комментарий", [r + ";текст" for r in ROWS])
    mapped = map_export(parse_source(config()), Export(frame))
    assert "kommentariy" in mapped.leads.columns
    ignored = map_export(parse_source(config(**{"leads.default_role": "ignore"})), Export(frame))
    assert ignored.ignored == ("Комментарий",)
    with pytest.raises(ConfigError, match="have no role in `leads.roles`: 'Комментарий'"):
        map_export(parse_source(config(**{"leads.default_role": "error"})), Export(frame))


def test_lead_ids_default_to_row_numbers_in_lead_level_exports() -> None:
    cfg = parse_source(config(**{"leads.map": {}}))
    mapped = map_export(cfg, Export(raw()))
    assert mapped.lead_level
    assert mapped.leads["lead_id"].tolist() == ["2", "3", "4", "5"]
    assert "sozdan" in mapped.leads.columns  # an unmapped column passes through by default
    assert "row number" in " ".join(mapped.notes)


def test_a_missing_column_lists_close_matches() -> None:
    cfg = parse_source(config(**{"leads.map.source": "Истчник"}), "my.yaml")
    with pytest.raises(DataError) as err:
        map_export(cfg, Export(raw()))
    message = str(err.value)
    assert "my.yaml names 1 leads column the file does not have: 'Истчник'" in message
    assert "Close matches for 'Истчник': 'Источник'" in message
    assert err.value.column == "Истчник"


def test_a_header_read_with_the_wrong_encoding_says_which_one() -> None:
    header = HEADER.encode("cp1251").decode("latin-1")  # what reading cp1251 as latin-1 gives
    cfg = parse_source(config(**{"leads.read.encoding": "latin-1"}))
    with pytest.raises(DataError, match="reads correctly as 'cp1251'"):
        map_export(cfg, Export(raw(header)))


def test_outcome_values_outside_the_lists_are_named_with_counts() -> None:
    rows = [*ROWS, "5;05.02.2024;Сайт;Переговоры;1;1;-", "6;06.02.2024;Сайт;Переговоры;1;1;-",
            "7;07.02.2024;Сайт;Думает;1;1;-"]
    with pytest.raises(DataError) as err:
        map_export(parse_source(config()), Export(raw(rows=rows)))
    message = str(err.value)
    assert "'Переговоры' (2 rows), 'Думает' (1 row)" in message
    assert "neither in `outcome.positive` (['Успешно'])" in message
    assert err.value.n_rows == 3 and err.value.column == "Статус"


def test_outcome_values_compare_case_and_space_insensitively() -> None:
    rows = [r.replace("Успешно", " успешно ") for r in ROWS]
    mapped = map_export(parse_source(config()), Export(raw(rows=rows)))
    assert mapped.leads["converted"].tolist() == ["1", "0", "0", "0"]


def test_an_empty_outcome_stops_unless_configured() -> None:
    rows = [*ROWS, "5;05.02.2024;Сайт;;1;1;-"]
    with pytest.raises(DataError, match=r"empty in 1 row\(s\) \(e\.g\. row 6\)"):
        map_export(parse_source(config()), Export(raw(rows=rows)))
    negative = map_export(parse_source(config(**{"outcome.missing": "negative"})),
                          Export(raw(rows=rows)))
    assert negative.leads["converted"].tolist()[-1] == "0"
    reject = map_export(parse_source(config(**{"outcome.missing": "reject"})),
                        Export(raw(rows=rows)))
    assert pd.isna(reject.leads["converted"].iloc[-1])


def test_no_positive_at_all_is_an_error() -> None:
    with pytest.raises(DataError, match="no row of 'Статус' holds a value of"):
        map_export(parse_source(config(**{"outcome.positive": ["Won"],
                                          "outcome.negative": ["Успешно", "Отказ", "В работе"]})),
                   Export(raw()))


def test_outcome_dates_give_converted_at_and_lost_at() -> None:
    rows = [r.rsplit(";", 1)[0] + d
            for r, d in zip(ROWS, [";10.02.2024", ";11.02.2024", ";", ";12.02.2024"], strict=True)]
    cfg = parse_source(config(**{"outcome.date": "Закрыт", "outcome.lost": ["Отказ"]}))
    leads = map_export(cfg, Export(raw(HEADER, rows))).leads
    assert leads["converted_at"].iloc[0] == "10.02.2024"
    assert leads["converted_at"].iloc[1:].isna().all()
    assert leads["lost_at"].fillna("").tolist() == ["", "11.02.2024", "", "12.02.2024"]


def test_outcome_from_a_conversion_event() -> None:
    cfg = parse_source(config(
        outcome={"event": "deal_won"},
        events={"path": "e.csv", "read": {"date_format": "%d.%m.%Y %H:%M"},
                "map": {"lead_id": "Сделка", "timestamp": "Дата", "event_type": "Событие"},
                "event_types": {"Сделка выиграна": "deal_won", "Визит": "site_visit"}}))
    events = pd.DataFrame({"Сделка": ["1", "1", "3", "2"],
                           "Дата": ["05.02.2024 10:00", "03.02.2024 09:00", "09.02.2024 12:00",
                                    "04.02.2024 08:00"],
                           "Событие": ["Сделка выиграна", "Сделка выиграна", "Визит", "Звонок"]})
    frame = raw().drop(columns="Статус")
    mapped = map_export(cfg, Export(frame, events))
    assert mapped.leads["converted"].tolist() == ["1", "0", "0", "0"]
    assert mapped.leads["converted_at"].iloc[0] == pd.Timestamp("2024-02-03 09:00")
    assert mapped.events["event_type"].tolist() == ["deal_won", "deal_won", "site_visit",
                                                    "zvonok"]
    wrong = parse_source(config(
        outcome={"event": "deal_wonn"},
        events={"path": "e.csv", "map": {"lead_id": "Сделка", "timestamp": "Дата",
                                         "event_type": "Событие"},
                "event_types": {"Сделка выиграна": "deal_won"}}))
    with pytest.raises(DataError, match="close: 'deal_won'"):
        map_export(wrong, Export(frame, events))


# --------------------------------------------------------------------- typing


def typed(cfg: dict[str, Any], frame: pd.DataFrame) -> tuple[pd.DataFrame, list, list]:
    parsed = parse_source(cfg)
    mapped = map_export(parsed, Export(frame))
    return type_columns(parsed, mapped.leads, mapped.columns)


def test_role_columns_are_typed() -> None:
    header = HEADER + ";Рассылка"
    rows = [r + f for r, f in zip(ROWS, [";Да", ";нет", ";", ";да"], strict=True)]
    cfg = config(**{"leads.roles.Рассылка": {"role": "fit", "type": "flag"}})
    leads, specs, _ = typed(cfg, raw(header, rows))
    assert leads["chek"].tolist()[:3] == [12345.5, 100.25, 7.5]
    assert leads["rassylka"].tolist()[:2] == [1.0, 0.0] and pd.isna(leads["rassylka"].iloc[2])
    assert leads["vizity"].tolist()[:2] == [5.0, 1.0]  # auto: numbers
    assert {s.name: s.type for s in specs} == {"vizity": "number", "chek": "number",
                                               "rassylka": "flag"}


def test_a_wrong_decimal_mark_is_named() -> None:
    cfg = config(**{"leads.read.decimal": ".", "leads.roles.Чек": "fit"})
    with pytest.raises(DataError, match=r"looks numeric with ',' as the decimal mark .* Set "
                                        r"`leads.read.decimal: ','`"):
        typed(cfg, raw())
    with pytest.raises(DataError, match="Is `leads.read.decimal` right"):
        typed(config(**{"leads.read.decimal": "."}), raw())


def test_personal_data_in_a_fit_column_is_refused() -> None:
    header = HEADER + ";Почта"
    rows = [r + f";user{i}@mail.ru" for i, r in enumerate(ROWS * 2)]
    with pytest.raises(DataError, match="holds email addresses .* map it in `leads.map` "
                                        r"\(email: Почта\)"):
        typed(config(), raw(header, rows))


# ------------------------------------------------------------ reading files


def test_read_export_drops_an_empty_trailing_column(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv", HEADER + ";", [r + ";" for r in ROWS])
    export = read_export(in_tmp(tmp_path, monkeypatch, config()))
    assert list(export.leads.columns) == HEADER.split(";")
    assert "trailing delimiter" in export.notes[0]


def test_an_undecodable_file_names_the_encoding_that_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv")  # cp1251
    cfg = in_tmp(tmp_path, monkeypatch, config(**{"leads.read.encoding": "utf-8"}))
    with pytest.raises(DataError) as err:
        read_export(cfg)
    message = str(err.value)
    assert "not valid utf-8 text" in message and "set leads.read.encoding" in message
    assert "set `leads.read.encoding: cp1251`" in message
    assert "ingest.encoding" not in message


def test_a_utf8_byte_order_mark_read_as_cp1251_is_named(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv", encoding="utf-8-sig")
    with pytest.raises(DataError, match="byte-order mark, but `leads.read.encoding` is 'cp1251'"):
        read_export(in_tmp(tmp_path, monkeypatch,
                           config(**{"leads.read.encoding": "cp1251"})))


def test_a_wrong_delimiter_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv")
    with pytest.raises(DataError, match=r"is `delimiter` ';'\? Set leads.read.delimiter"):
        read_export(in_tmp(tmp_path, monkeypatch, config(**{"leads.read.delimiter": "|"})))


def test_a_wrong_date_format_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv")
    cfg = in_tmp(tmp_path, monkeypatch, config(**{"leads.read.date_format": "%Y-%m-%d"}))
    with pytest.raises(DataError) as err:
        run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    message = str(err.value)
    assert "column 'created_at'" in message and "leads.read.date_format" in message
    assert "'%d.%m.%Y'" in message and "src.yaml" in message
    assert not (tmp_path / "interim").exists()  # nothing written


def test_duplicate_ids_name_the_export_column(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the same ID with other values (an exact repeat of a row is dropped as a duplicate)
    write_csv(tmp_path / "leads.csv", rows=[*ROWS, ROWS[0].replace("Директ", "Сайт")])
    cfg = in_tmp(tmp_path, monkeypatch, config())
    with pytest.raises(DataError, match="'lead_id' is the export column 'ID'"):
        run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")


def test_run_source_writes_typed_tables_and_the_source_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv")
    cfg = in_tmp(tmp_path, monkeypatch, config())
    counts = run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    assert counts["leads"]["rows_clean"] == 4
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert leads["created_at"].iloc[0] == pd.Timestamp("2024-02-01")
    assert leads["chek"].dtype == "float64"
    record = yaml.safe_load((tmp_path / "interim" / "source.json").read_text(encoding="utf-8"))
    assert record["mode"] == "time_aware" and record["exclude"] == ["vizity"]
    assert {c["column"]: c["role"] for c in record["columns"]} == {"Визиты": "exclude",
                                                                  "Чек": "fit"}


def test_a_lead_level_export_has_no_created_at_and_an_export_moment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "leads.csv")
    cfg = in_tmp(tmp_path, monkeypatch, config(**{"leads.map": {"lead_id": "ID"},
                                                  "leads.roles.Создан": "ignore",
                                                  "exported_at": "2024-03-01"}))
    run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert "created_at" not in leads.columns
    assert leads.attrs["exported_at"] == "2024-03-01T00:00:00"
    rejects = pd.read_csv(tmp_path / "interim" / "rejects_leads.csv")
    assert "created_at" not in rejects.columns


# ------------------------------------------------------------- an event log only

EVENT_LOG = {
    "name": "app events",
    "events": {
        "path": "events.csv",
        "read": {"delimiter": ","},
        "map": {"lead_id": "user_id", "timestamp": "ts", "event_type": "event"},
        "lead_map": {"country": "country"},
        "lead_columns": {"platform": "fit", "app_version": "fit"},
    },
    "outcome": {"event": "purchase"},
}
LOG_ROWS = [
    "user_id,ts,event,country,platform,app_version",
    "u1,2024-03-02 10:00:00,open,DE,ios,1.0",
    "u1,2024-03-01 09:00:00,install,DE,ios,1.0",      # u1's first event: out of file order
    "u1,2024-03-05 12:00:00,purchase,DE,ios,1.1",     # app_version changes within u1
    "u2,2024-03-03 08:00:00,install,,android,2.0",
    "u2,2024-03-04 08:00:00,open,FR,android,2.0",     # country filled in later: still constant
    "u3,2024-03-06 07:00:00,install,US,web,2.0",
    ",2024-03-06 07:30:00,open,US,web,2.0",           # no user: rejected by events validation
]


def test_event_log_config_derives_the_leads_contract() -> None:
    cfg = parse_source(EVENT_LOG)
    assert cfg.leads_from_events and cfg.time_aware
    assert dict(cfg.leads.map) == {"lead_id": "user_id", "created_at": "ts",
                                   "country": "country"}
    assert [(s.column, s.role) for s in cfg.leads.roles] == [("platform", "fit"),
                                                              ("app_version", "fit")]
    with pytest.raises(ConfigError, match="set `outcome: {event: <the purchase event type>}`"):
        parse_source({**EVENT_LOG, "outcome": {"column": "x", "positive": ["1"],
                                               "negative": ["0"]}})
    with pytest.raises(ConfigError, match="cannot also be a per-lead column"):
        parse_source({**EVENT_LOG, "events": {**EVENT_LOG["events"],
                                              "lead_columns": {"event": "fit"}}})
    with pytest.raises(ConfigError, match="`events.lead_map` derives the leads"):
        parse_source(config(events={**EVENT_LOG["events"], "path": "e.csv"}))


def test_event_log_only_export_ingests_leads_from_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "events.csv").write_text("\n".join(LOG_ROWS) + "\n", encoding="utf-8")
    cfg = in_tmp(tmp_path, monkeypatch, EVENT_LOG)
    export = read_export(cfg)
    assert export.varying == ("app_version",)
    assert any("'app_version' changes within 1 of 3 leads (e.g. lead u1" in n
               for n in export.notes)
    counts = run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    assert counts["leads"]["rows_clean"] == 3 and counts["events"]["rows_rejected"] == 1
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet").set_index("lead_id")
    assert leads.loc["u1", "created_at"] == pd.Timestamp("2024-03-01 09:00:00")
    assert leads.loc["u2", "created_at"] == pd.Timestamp("2024-03-03 08:00:00")
    assert leads["country"].to_dict() == {"u1": "DE", "u2": "FR", "u3": "US"}
    assert leads["platform"].to_dict() == {"u1": "ios", "u2": "android", "u3": "web"}
    assert "app_version" not in leads.columns
    assert leads["converted"].to_dict() == {"u1": 1, "u2": 0, "u3": 0}
    assert leads.loc["u1", "converted_at"] == pd.Timestamp("2024-03-05 12:00:00")
    events = pd.read_parquet(tmp_path / "interim" / "events.parquet")
    assert len(events) == 6 and set(events["lead_id"]) == {"u1", "u2", "u3"}


def test_the_shipped_event_log_fixture_ingests_with_its_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the config's path is relative to the project folder
    cfg = load_source("sources/eventlog_fixture.yaml")
    assert cfg.leads_from_events and cfg.outcome.event == "purchase"
    raw = pd.read_csv(ROOT / "tests/fixtures/eventlog/events.csv")
    counts = run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2025-04-01")
    users = raw["user_id"].nunique()
    buyers = raw.loc[raw["event_name"] == "purchase", "user_id"].nunique()
    assert counts["leads"]["rows_in"] == counts["leads"]["rows_clean"] == users == 300
    assert counts["events"]["rows_in"] == len(raw)
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert int(leads["converted"].sum()) == buyers
    assert {"source", "country", "platform"} <= set(leads.columns)
    assert "app_version" not in leads.columns  # changes within users: reported, left out
    events = pd.read_parquet(tmp_path / "interim" / "events.parquet")
    assert "pricing_view" in set(events["event_type"])  # renamed by events.event_types


# ---------------------------------------------- dates: lead-level and the conversion date


def test_positives_without_any_conversion_date_stop_at_ingest() -> None:
    cfg = parse_source(config(**{"outcome.date": None}))  # time-aware, no conversion date
    with pytest.raises(DataError) as err:
        map_export(cfg, Export(raw()))
    message = str(err.value)
    assert "none of the 1 converted leads (e.g. lead 1) has a conversion date" in message
    assert "`outcome.date: <column>`" in message
    assert "remove `created_at` from `leads.map`" in message
    assert "`leads.roles.Создан: {role: fit, type: date}`" in message
    assert err.value.column == "Создан" and err.value.n_rows == 1
    # one dated positive is enough: the guard is about "no date at all"
    assert map_export(parse_source(config()), Export(raw())).leads["converted"].tolist()[0] == "1"


def test_a_date_in_a_lead_level_export_becomes_days_before_the_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from features.build import build_features
    from features.settings import FeatureSettings

    write_csv(tmp_path / "leads.csv")
    cfg = in_tmp(tmp_path, monkeypatch, config(**{
        "leads.map": {"lead_id": "ID"}, "outcome.date": None, "exported_at": "2024-03-01",
        "leads.roles.Создан": {"role": "fit", "type": "date", "name": "signed_up"}}))
    run_source(cfg, tmp_path / "interim", tmp_path / "reports", now="2026-01-01")
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert "created_at" not in leads.columns
    assert leads["signed_up"].dtype.kind == "M"  # the interim column stays a datetime
    spine = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": pd.NaT})
    frame = build_features(spine, leads, None, FeatureSettings())
    # 2024-03-01 minus 01.02 / 02.02 / 03.02 / 04.02.2024
    assert frame["extra_signed_up_days"].tolist() == [29.0, 28.0, 27.0, 26.0]
