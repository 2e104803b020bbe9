"""The scored table for people: xlsx with a legend, CSV dialects, the file-based history."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from models.bands import FittedBand, FittedBands
from pipeline import outputs, scoring_io
from pipeline.errors import ConfigError, DataError
from pipeline.settings import ScoreSettings, parse_params
from pipeline.stages import score as stage

score_tests = pytest.importorskip("test_score")  # tests/unit/pipeline/test_score.py
world, env = score_tests.world, score_tests.env  # its trained-model fixtures
AS_OF_1, SCORED_AT = score_tests.AS_OF_1, score_tests.SCORED_AT

PARAMS = Path(__file__).parents[3] / "params.yaml"
FORMULA = '=HYPERLINK("http://evil.example","click")'
BANDS = {
    "temperature": FittedBands("temperature", (
        FittedBand("cold", 0.0, n=600, conversions=30, rate=0.05),
        FittedBand("warm", 0.2, "min_conversion", 0.15, n=300, conversions=75, rate=0.25),
        FittedBand("hot", 0.5, "min_conversion", 0.5, n=100, conversions=60, rate=0.6),
    ), conversion_rule="marginal"),
    "lifecycle": FittedBands("lifecycle", (
        FittedBand("lead", 0.0, n=500),
        FittedBand("MQL", 0.1, "min_conversion", 0.10, n=400, rate=0.2),
        FittedBand("SQL", 0.35, "capacity_per_week", 25.0, n=100, rate=0.55, feasible=False),
    )),
}


def scored(batch: str = "20251001T000000-aaaaaaaa", as_of: str = "2025-10-01",
           scored_at: str = "2025-10-02 08:00:00", n: int = 6) -> pd.DataFrame:
    """A scored table shaped like the score stage's (`finish_table`)."""
    p = np.linspace(0.61, 0.04, n)
    temp = np.where(p >= 0.5, "hot", np.where(p >= 0.2, "warm", "cold"))
    life = np.where(p >= 0.35, "SQL", np.where(p >= 0.1, "MQL", "lead"))
    companies = ["Acme; Inc", FORMULA, "-minus corp", "@at", "Globex", None]
    return pd.DataFrame({
        "lead_id": [f"L{i}" for i in range(n)],
        "as_of": pd.Series([pd.Timestamp(as_of)] * n, dtype="datetime64[us]"),
        "propensity": p + 1.23456789e-7,
        "score": np.clip(np.floor(100 * p), 1, 99).astype("int64"),
        "temperature": pd.Series(temp, dtype="str"),
        "lifecycle_stage": pd.Series(life, dtype="str"),
        "movement": pd.Series(["new"] * n, dtype="str"),
        "reasons": pd.Series(["▲ asked for a demo 3 days ago; ▼ no industry given"] * n,
                             dtype="str"),
        "company": pd.Series((companies * n)[:n], dtype="str"),
        "model_version": pd.Series(["3"] * n, dtype="str"),
        "scored_at": pd.Series([pd.Timestamp(scored_at)] * n, dtype="datetime64[us]"),
        "batch_id": pd.Series([batch] * n, dtype="str"),
    })


def no_rejects() -> pd.DataFrame:
    return pd.DataFrame({"source_row": pd.Series(dtype="int64"),
                         "reason": pd.Series(dtype="str")})


def write(tmp_path: Path, frame: pd.DataFrame, **settings) -> dict[str, str | None]:
    paths = scoring_io.output_paths(tmp_path / "scored" / "scored_leads")
    return outputs.write_batch(paths, frame, no_rejects(), no_rejects(), bands=BANDS,
                               settings=ScoreSettings(**settings))


def params_with(score: dict) -> dict:
    """The modelling sections of the project's params.yaml with these `score:` settings."""
    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    keep = {k: raw[k] for k in ("split", "train", "calibration", "bands") if k in raw}
    return {**keep, "score": score}


def sheet_rows(path: Path | str, sheet: str) -> list[tuple]:
    wb = openpyxl.load_workbook(path)
    return [tuple(r) for r in wb[sheet].iter_rows(values_only=True)]


# ------------------------------------------------------------------------------- xlsx


def test_xlsx_holds_the_csv_columns_and_values_and_a_legend(tmp_path):
    frame = scored()
    out = write(tmp_path, frame, formats=("csv", "xlsx", "parquet"))
    assert Path(out["xlsx"]).name == "scored_leads.xlsx"
    csv = pd.read_csv(out["csv"], encoding="utf-8-sig", dtype=str, keep_default_na=False)
    wb = openpyxl.load_workbook(out["xlsx"])
    assert wb.sheetnames == ["scored_leads", "legend"]
    ws = wb["scored_leads"]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == list(csv.columns) == list(frame.columns)
    assert len(rows) - 1 == len(csv) == len(frame)
    for i, row in enumerate(rows[1:]):
        for col, value in zip(csv.columns, row, strict=True):
            text = csv.loc[i, col]
            if col in ("as_of", "scored_at"):
                assert value.strftime(scoring_io.CSV_DATE_FORMAT) == text
            elif col == "propensity":
                assert value == float(text) == round(frame.loc[i, "propensity"], 6)
            elif col == "score":
                assert value == int(text)
            else:
                assert (value or "") == text
    # header frozen, text that would run as a formula is stored as text, quoted as in the CSV
    assert ws.freeze_panes == "A2"
    formula = ws.cell(row=3, column=list(frame.columns).index("company") + 1)
    assert formula.value == "'" + FORMULA and formula.data_type == "s"
    assert all(c.data_type != "f" for r in ws.iter_rows() for c in r)
    # sized columns: the reasons column is wider than the score column
    letters = {c: openpyxl.utils.get_column_letter(j + 1) for j, c in enumerate(frame.columns)}
    widths = {c: ws.column_dimensions[letters[c]].width for c in frame.columns}
    assert widths["reasons"] > widths["score"] >= outputs.MIN_WIDTH
    assert widths["reasons"] <= outputs.MAX_WIDTH


def test_legend_explains_each_band_its_cutoff_and_promise(tmp_path):
    out = write(tmp_path, scored(), formats=("xlsx", "parquet"))
    rows = sheet_rows(out["xlsx"], "legend")
    text = " ".join(str(v) for r in rows for v in r if v is not None)
    assert "independent" in text and "'cold' lead can be an MQL" in text
    header = rows.index(next(r for r in rows if r[0] == "band set"))
    table = pd.DataFrame(rows[header + 1:], columns=rows[header])
    assert table[["band set", "column", "band", "scores"]].values.tolist() == [
        ["temperature", "temperature", "cold", "1-19"],
        ["temperature", "temperature", "warm", "20-49"],
        ["temperature", "temperature", "hot", "50-99"],
        ["lifecycle", "lifecycle_stage", "lead", "1-9"],
        ["lifecycle", "lifecycle_stage", "MQL", "10-34"],
        ["lifecycle", "lifecycle_stage", "SQL", "35-99"],
    ]
    promise = dict(zip(table["band"], table["promise"], strict=True))
    assert promise["cold"].endswith("(no promise)")
    assert promise["warm"] == ("converts at 15 % or more as a band and every lead in it has at "
                               "least that probability")
    assert promise["MQL"] == "converts at 10 % or more as a band"
    assert promise["SQL"].startswith("about 25 leads per week") and "not met" in promise["SQL"]
    assert table["converted on calibration"].tolist()[:3] == ["5 %", "25 %", "60 %"]
    assert table["min propensity"].tolist() == [0.0, 0.2, 0.5, 0.0, 0.1, 0.35]


# -------------------------------------------------------------------------------- CSV


def test_semicolon_csv_reads_back_with_a_decimal_comma(tmp_path):
    frame = scored()
    out = write(tmp_path, frame, formats=("csv", "parquet"), csv_sep=";", csv_decimal=",")
    raw = Path(out["csv"]).read_text(encoding="utf-8-sig")
    assert raw.splitlines()[0].startswith("lead_id;as_of;propensity;score;")
    assert "0,610000" not in raw and "0,61;" in raw.replace("0,610000", "0,61")
    back = pd.read_csv(out["csv"], sep=";", decimal=",", encoding="utf-8-sig")
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_array_equal(back["propensity"].to_numpy(),
                                  frame["propensity"].round(6).to_numpy())
    assert back["score"].tolist() == frame["score"].tolist()
    assert back.loc[0, "company"] == "Acme; Inc"  # a separator inside text is quoted
    assert back.loc[1, "company"] == "'" + FORMULA
    assert back["reasons"].tolist() == frame["reasons"].tolist()
    assert "xlsx" not in {k for k, v in out.items() if v}


def test_only_the_listed_formats_are_written(tmp_path):
    out = write(tmp_path, scored(), formats=("xlsx", "parquet"))
    folder = tmp_path / "scored"
    assert out["csv"] is None and not (folder / "scored_leads.csv").exists()
    assert (folder / "scored_leads.xlsx").is_file() and (folder / "scored_leads.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "scored_leads.parquet"), scored())


@pytest.mark.parametrize(("settings", "message"), [
    ({"formats": ["csv", "pdf"]}, "must list only csv, xlsx, parquet; got 'pdf'"),
    ({"formats": []}, "must be a non-empty list"),
    ({"csv_sep": ";", "csv_decimal": ";"}, "`score.csv_decimal` must be '.' or ','; got ';'"),
    ({"csv_sep": ",", "csv_decimal": ","}, "both ','"),
    ({"csv_sep": "#"}, "`score.csv_sep` must be one of"),
    ({"csv_decimal": "·"}, "`score.csv_decimal` must be '.' or ','"),
    ({"history": "yes"}, "`score.history` must be true or false"),
    ({"formats": ["xlsx"]}, "Add parquet to score.formats"),
    ({"formats": ["csv", "xlsx"], "csv_sep": ";", "csv_decimal": ","},
     "Add parquet to score.formats"),
    ({"pass_through": "company"}, "`score.pass_through` must be a list"),
])
def test_bad_output_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params(params_with(settings))


def test_output_settings_parse_from_params():
    score = parse_params(params_with({"formats": ["csv", "xlsx", "parquet"], "csv_sep": ";",
                                      "csv_decimal": ",", "pass_through": ["company"]})).score
    assert score.formats == ("csv", "xlsx", "parquet")
    assert (score.csv_sep, score.csv_decimal, score.pass_through) == (";", ",", ("company",))
    with pytest.raises(ConfigError, match="unknown key `score.format`.*'formats'"):
        parse_params(params_with({"format": ["csv"]}))


# ---------------------------------------------------------------------------- history


def test_history_keeps_one_file_per_batch_and_latest_is_the_newest(tmp_path):
    first = scored("20251001T000000-aaaaaaaa", "2025-10-01", "2025-10-02 08:00:00")
    second = scored("20251020T000000-bbbbbbbb", "2025-10-20", "2025-10-21 08:00:00", n=4)
    formats = ("csv", "xlsx", "parquet")
    out1 = write(tmp_path, first, formats=formats)
    folder = outputs.history_folder(scoring_io.output_paths(tmp_path / "scored" / "scored_leads"))
    assert folder == tmp_path / "scored" / "scored_leads_history"
    assert out1["history"] == str(folder / "20251001T000000-aaaaaaaa.parquet")
    assert out1["latest"] == str(folder / "latest.parquet")
    write(tmp_path, second, formats=formats)
    assert sorted(p.name for p in folder.glob("*.parquet")) == [
        "20251001T000000-aaaaaaaa.parquet", "20251020T000000-bbbbbbbb.parquet", "latest.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "latest.parquet"), second)
    latest_xlsx = sheet_rows(folder / "latest.xlsx", "scored_leads")
    assert [r[0] for r in latest_xlsx[1:]] == second["lead_id"].tolist()
    # re-running the older batch replaces its own file and leaves latest on the newer one
    rerun = first.assign(scored_at=pd.Timestamp("2025-10-22 09:00:00").as_unit("us"))
    out3 = write(tmp_path, rerun, formats=formats)
    assert out3["latest"] is None
    assert len(list(folder.glob("2025*.parquet"))) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "20251001T000000-aaaaaaaa.parquet"),
                                  rerun)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "latest.parquet"), second)
    assert [r[0] for r in sheet_rows(folder / "latest.xlsx", "scored_leads")[1:]] == \
        second["lead_id"].tolist()
    history = outputs.read_history(folder)
    assert history["batch_id"].drop_duplicates().tolist() == [
        "20251001T000000-aaaaaaaa", "20251020T000000-bbbbbbbb"]
    assert len(history) == len(first) + len(second)


def test_history_can_be_switched_off(tmp_path):
    out = write(tmp_path, scored(), history=False)
    assert out["history"] is None and out["latest"] is None
    assert not (tmp_path / "scored" / "scored_leads_history").exists()


def test_a_failed_write_publishes_nothing(tmp_path, monkeypatch):
    write(tmp_path, scored(), formats=("csv", "xlsx", "parquet"))
    folder = tmp_path / "scored"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(scoring_io, "write_batch_files", boom)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path, scored("20251020T000000-bbbbbbbb", "2025-10-20"),
              formats=("csv", "xlsx", "parquet"))
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before


# ------------------------------------------------------------------- pass-through


def test_pass_through_columns_are_looked_up_by_lead_and_placed_after_the_id():
    table = pd.DataFrame({"lead_id": ["b", "a", "z"], "score": [9, 5, 1]})
    leads = pd.DataFrame({"lead_id": ["a", "b", "z"], "_pass_owner": ["Ann", None, "Bob"],
                          "company": ["X", "Y", None], "owner": ["wrong", "wrong", "wrong"]})
    out = outputs.with_pass_through(table, leads, ScoreSettings(pass_through=("owner", "company")))
    assert list(out.columns) == ["lead_id", "owner", "company", "score"]
    assert out["owner"].tolist()[1:] == ["Ann", "Bob"] and pd.isna(out["owner"].iloc[0])
    assert out["company"].tolist()[:2] == ["Y", "X"] and pd.isna(out["company"].iloc[2])
    assert list(table.columns) == ["lead_id", "score"]  # the input is not changed
    assert outputs.with_pass_through(table, leads, ScoreSettings()) is table


def test_a_missing_or_clashing_pass_through_column_is_named():
    table = pd.DataFrame({"lead_id": ["a"], "score": [9]})
    leads = pd.DataFrame({"lead_id": ["a"], "_pass_owner": ["Ann"]})
    with pytest.raises(DataError, match=r"leads.csv: no lead column 'region'.*have 'owner'.*"
                                        r"role: pass"):
        outputs.with_pass_through(table, leads, ScoreSettings(pass_through=("region",)),
                                  file="leads.csv")
    with pytest.raises(ConfigError, match="'score', a column of the scored table itself"):
        outputs.with_pass_through(table, leads.assign(score=1),
                                  ScoreSettings(pass_through=("score",)))


EMAILS = [f"person{i}@example.org" for i in range(8)]


def test_a_pass_column_goes_through_ingest_but_never_into_features_or_reports(
        tmp_path, monkeypatch):
    from features.build import build_features
    from features.settings import FeatureSettings
    from features.snapshots import scoring_spine
    from pipeline import sources
    from pipeline.stages.ingest import run_source

    monkeypatch.chdir(tmp_path)
    rows = [f"{i},2024-02-0{i + 1},web,{'won' if i % 2 else 'open'},{EMAILS[i]},{i * 10},"
            f"{'2024-02-20' if i % 2 else ''}" for i in range(8)]
    (tmp_path / "leads.csv").write_text("\n".join(
        ["ID,Created,Source,Status,Contact,Visits,Closed", *rows]) + "\n", encoding="utf-8")
    cfg = {"leads": {"path": "leads.csv",
                     "map": {"lead_id": "ID", "created_at": "Created", "source": "Source"},
                     "roles": {"Contact": {"role": "pass"}, "Visits": {"role": "fit"}}},
           "outcome": {"column": "Status", "positive": ["won"], "negative": ["open"],
                       "date": "Closed"}}
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    # the source config names the column for the scored table
    merged = sources.effective_params({"source": "src.yaml", "score": {"pass_through": []}})
    assert merged["score"]["pass_through"] == ["contact"]
    # with any other role the personal-data screen refuses it
    refused = {**cfg, "leads": {**cfg["leads"], "roles": {"Contact": {"role": "fit"},
                                                          "Visits": {"role": "fit"}}}}
    (tmp_path / "refused.yaml").write_text(yaml.safe_dump(refused), encoding="utf-8")
    with pytest.raises(DataError, match="holds email addresses"):
        run_source(sources.load_source("refused.yaml"), tmp_path / "x", tmp_path / "xr",
                   now="2026-01-01")

    run_source(sources.load_source("src.yaml"), tmp_path / "interim", tmp_path / "reports",
               now="2026-01-01")
    leads = pd.read_parquet(tmp_path / "interim" / "leads.parquet")
    assert leads.sort_values("lead_id")["_pass_contact"].tolist() == EMAILS
    for report in (tmp_path / "reports").rglob("*"):
        if report.is_file():
            assert "@example.org" not in report.read_text(encoding="utf-8", errors="replace")
    spine, _ = scoring_spine(leads, pd.Timestamp("2024-03-01"))
    features = build_features(spine, leads, None, FeatureSettings())
    assert not [c for c in features.columns if "contact" in c]
    assert not features.astype(str).apply(lambda c: c.str.contains("@example.org")).any().any()
    assert "extra_visits" in features.columns  # the fit column next to it is a feature
    # ... and the scored table gets it back by lead
    table = pd.DataFrame({"lead_id": ["3", "0"], "score": [40, 10]})
    out = outputs.with_pass_through(table, leads, ScoreSettings(pass_through=("contact",)))
    assert out["contact"].tolist() == [EMAILS[3], EMAILS[0]]


def test_pass_through_reaches_the_scored_csv_and_xlsx_but_not_mlflow(env, tmp_path):
    from dataclasses import replace as dc_replace

    from pipeline import tracking

    params = env["params"]
    params = dc_replace(params, score=dc_replace(
        params.score, formats=("csv", "xlsx", "parquet"), pass_through=("company",)))
    summary = stage.from_params(params, leads=env["leads_csv"], events=env["events_csv"],
                                as_of=AS_OF_1, out=tmp_path / "out" / "batch",
                                scored_at=SCORED_AT)
    raw = env["leads_raw"].set_index("lead_id")["company"]
    csv = pd.read_csv(tmp_path / "out" / "batch.csv", dtype=str, encoding="utf-8-sig")
    assert list(csv.columns[:2]) == ["lead_id", "company"]
    expected = raw.reindex(csv["lead_id"]).map(
        lambda v: "'" + v if v.startswith(("=", "-", "@")) else v)
    assert csv["company"].tolist() == expected.tolist()
    rows = sheet_rows(tmp_path / "out" / "batch.xlsx", "scored_leads")
    assert rows[0][:2] == ("lead_id", "company")
    assert [r[1] for r in rows[1:]] == expected.tolist()
    assert summary["outputs"]["xlsx"] == str(tmp_path / "out" / "batch.xlsx")
    # MLflow: neither the run's params and tags nor its artifacts hold a company
    client = tracking.mlflow().MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
    dumped = " ".join(
        Path(client.download_artifacts(run.info.run_id, a.path, str(tmp_path))).read_text(
            encoding="utf-8") for a in client.list_artifacts(run.info.run_id) if not a.is_dir)
    for company in ("Acme", "Globex", "minus corp"):
        assert company not in logged and company not in dumped
    assert "batch_summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_score_phrases_setting_changes_the_reasons_of_the_batch(env, tmp_path):
    from dataclasses import replace as dc_replace

    from models.reasons import PHRASES_FILE

    copy = tmp_path / "phrases.yaml"
    text = PHRASES_FILE.read_text(encoding="utf-8")
    edited_text = text.replace('done: "looked at prices"', 'done: "checked our prices"').replace(
        'done: "was last active"', 'done: "last showed up"')
    assert edited_text.count("checked our prices") == edited_text.count("last showed up") == 1
    copy.write_text(edited_text, encoding="utf-8")

    def reasons(**score) -> pd.Series:
        params = dc_replace(env["params"], score=dc_replace(env["params"].score, **score))
        out = tmp_path / f"out{len(score)}" / "batch"
        stage.from_params(params, leads=env["leads_csv"], events=env["events_csv"],
                          as_of=AS_OF_1, out=out, scored_at=SCORED_AT)
        return pd.read_parquet(f"{out}.parquet").set_index("lead_id")["reasons"]

    shipped, edited = reasons(), reasons(phrases=copy)
    old, new = "looked at prices|was last active", "checked our prices|last showed up"
    assert shipped.str.contains(old).sum() > 10 and not shipped.str.contains(new).any()
    assert not edited.str.contains(old).any()
    assert (edited.str.contains(new) == shipped.str.contains(old)).all()
    same = ~shipped.str.contains(old)
    assert (shipped[same] == edited[same]).all()  # nothing else changed

    copy.write_text("plural: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`score.phrases`: .*phrases.yaml: missing section"):
        reasons(phrases=copy)
