"""The scored table for people: CSV in the reader's Excel dialect, an `.xlsx` workbook with a
legend, and a file-based history of batches (no database needed).

`write_batch` is the score stage's one call. For `--out data/scored/scored_leads` it writes,
as one unit with `scoring_io.write_batch_files` (temp files, renamed only when all are
written):

- `scored_leads.<fmt>` for each of `score.formats` (`csv`, `xlsx`, `parquet`); the CSV uses
  `score.csv_sep` / `score.csv_decimal` (`;` and `,` for a European Excel). An `--out`
  ending in `.csv` / `.parquet` writes only that file, as before.
- `scored_leads.xlsx`: sheet `scored_leads` (the CSV's columns and values, header row frozen,
  columns sized to their content, text that would run as a formula neutralised exactly as in
  the CSV and always stored as text) and sheet `legend` (what each band means, its cutoff and
  its promise, from the model's fitted bands; `band_legend`).
- `scored_leads_history/<batch_id>.parquet`, one per batch (a re-run of a batch replaces its
  own file), and the `latest` view, `latest.parquet` (+ `latest.xlsx` when xlsx is a
  format): a copy of the batch with the latest `as_of` (ties: the latest `scored_at`), so
  scoring an older as_of again never hides a newer batch. `read_history` reads them back.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import scoring_io
from pipeline.errors import ConfigError, DataError
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

FORMATS = ("csv", "xlsx", "parquet")
DEFAULT_FORMATS = ("csv", "parquet")
CSV_SEPARATORS = (",", ";", "\t", "|")
DECIMAL_MARKS = (".", ",")
TABLE_SHEET = "scored_leads"
LEGEND_SHEET = "legend"
HISTORY_SUFFIX = "_history"
LATEST = "latest"
#: Column widths in the workbook (characters): content-sized within these bounds.
MIN_WIDTH, MAX_WIDTH = 8, 80
#: Rows looked at to size a column.
WIDTH_SAMPLE = 2000


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class TableOptions:
    """How the scored table is published (`score.formats`, `score.csv_sep`,
    `score.csv_decimal`, `score.history`)."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    csv_sep: str = ","
    csv_decimal: str = "."
    history: bool = True

    def __post_init__(self) -> None:
        formats = self.formats
        if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
            raise ConfigError(f"`score.formats` must be a non-empty list of {', '.join(FORMATS)}; "
                              f"got {formats!r}")
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"`score.formats` must list only {', '.join(FORMATS)}; got "
                              f"{', '.join(repr(b) for b in bad)}")
        object.__setattr__(self, "formats", tuple(dict.fromkeys(formats)))
        if self.csv_sep not in CSV_SEPARATORS:
            raise ConfigError(f"`score.csv_sep` must be one of {CSV_SEPARATORS!r} (';' for a "
                              f"European Excel); got {self.csv_sep!r}")
        if self.csv_decimal not in DECIMAL_MARKS:
            raise ConfigError(f"`score.csv_decimal` must be '.' or ','; got {self.csv_decimal!r}")
        if self.csv_sep == self.csv_decimal:
            raise ConfigError(f"`score.csv_sep` and `score.csv_decimal` are both "
                              f"{self.csv_sep!r}: a number would split into two cells. Use "
                              "csv_sep ';' with csv_decimal ','.")
        readable_csv = "csv" in self.formats and (self.csv_sep, self.csv_decimal) == (",", ".")
        if "parquet" not in self.formats and not readable_csv:
            raise ConfigError(
                f"`score.formats` is {list(self.formats)}: the next batch reads the previous "
                "bands (the change columns) back from the Parquet, or from a CSV in the "
                "default dialect (csv_sep ',', csv_decimal '.'). Add parquet to score.formats.")
        if not isinstance(self.history, bool):
            raise ConfigError(f"`score.history` must be true or false; got {self.history!r}")

    @classmethod
    def of(cls, settings: Any) -> TableOptions:
        """The options of a `ScoreSettings` (or anything with those attributes; missing
        ones take the defaults)."""
        return cls(formats=tuple(getattr(settings, "formats", DEFAULT_FORMATS)),
                   csv_sep=getattr(settings, "csv_sep", ","),
                   csv_decimal=getattr(settings, "csv_decimal", "."),
                   history=getattr(settings, "history", True))


# -------------------------------------------------------------------------------- CSV


def write_csv(frame: pd.DataFrame, path: Path | str, sep: str = ",", decimal: str = ".") -> None:
    """CSV that Excel opens correctly in the reader's dialect: BOM, ISO dates, CRLF, text
    that would run as a formula neutralised (`scoring_io.neutralise`), floats with at most
    6 decimals written with `decimal`. Reads back with `pd.read_csv(path, sep=sep,
    decimal=decimal)`. The default dialect is `scoring_io.write_excel_csv`'s."""
    if (sep, decimal) == (",", "."):
        scoring_io.write_excel_csv(frame, Path(path))
        return
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    body = scoring_io.neutralise(frame.round({c: 6 for c in floats}) if floats else frame)
    body.to_csv(path, index=False, sep=sep, decimal=decimal, encoding="utf-8-sig",
                date_format=scoring_io.CSV_DATE_FORMAT, lineterminator="\r\n")


# ------------------------------------------------------------------------------ legend


def _pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %".replace(".0 %", " %")


def _promise(band: Any, bands: Any) -> str:
    kind, target = getattr(band, "target_kind", None), getattr(band, "target", None)
    if kind == "min_conversion" and target is not None:
        each = (" and every lead in it has at least that probability"
                if getattr(bands, "conversion_rule", "band") == "marginal" else "")
        text = f"converts at {_pct(target)} or more as a band{each}"
    elif kind == "top_share" and target is not None:
        text = f"the top {_pct(target)} of leads by score"
    elif kind == "capacity_per_week" and target is not None:
        text = f"about {target:g} leads per week: as many as sales can call"
    else:
        return "the leads below the next band up (no promise)"
    if not getattr(band, "feasible", True):
        text += " (not met on the calibration leads: the best achievable cutoff is used)"
    return text


def band_legend(bands: Mapping[str, Any], columns: Mapping[str, str] | None = None
                ) -> pd.DataFrame:
    """One row per band of each fitted band set (`models.bands.FittedBands`), lowest first:
    `band set`, `column` (of the scored table), `band`, `scores` (the 1-99 scores it holds),
    `min propensity`, `promise`, `calibration leads`, `converted on calibration`.

    The band sets are independent cuts of the same probability, so one lead carries one
    band of each (e.g. "cold" and "MQL" side by side). `columns` maps a band set to its
    scored-table column (default: the set name, `lifecycle` -> `lifecycle_stage`)."""
    rows = []
    for set_name, fitted in bands.items():
        column = (columns or {}).get(set_name) or (
            "lifecycle_stage" if set_name == "lifecycle" else set_name)
        members = list(fitted.bands)
        for i, band in enumerate(members):
            low = max(1, round(100 * float(band.min_propensity)))
            high = (round(100 * float(members[i + 1].min_propensity)) - 1
                    if i + 1 < len(members) else 99)
            rows.append({
                "band set": set_name,
                "column": column,
                "band": band.name,
                "scores": f"{low}-{high}" if low < high else f"{low}",
                "min propensity": float(band.min_propensity),
                "promise": _promise(band, fitted),
                "calibration leads": int(getattr(band, "n", 0) or 0),
                "converted on calibration": _pct(getattr(band, "rate", None)),
            })
    return pd.DataFrame(rows, columns=["band set", "column", "band", "scores", "min propensity",
                                       "promise", "calibration leads",
                                       "converted on calibration"])


def legend_notes(bands: Mapping[str, Any]) -> list[str]:
    """The sentences above the legend table."""
    names = {s: " / ".join(b.name for b in f.bands) for s, f in bands.items()}
    listed = "; ".join(f"{s}: {n}" for s, n in names.items())
    notes = [
        "How to read the scored table",
        "propensity: the calibrated probability that the lead converts (0.2 = about one in "
        "five such leads do); score: the same in whole percent, 1-99.",
        f"Each band set cuts the same probability at its own cutoffs ({listed}). They are "
        "independent: a lead carries one band of each, so a 'cold' lead can be an MQL and a "
        "'warm' one an SQL. Temperature says how likely the lead converts; the lifecycle "
        "stage says what to do with it (nurture it as an MQL, or hand it to sales as an SQL "
        "within their weekly capacity).",
        "previous_*: the lead's band in the previous batch; movement: new / up / down / same.",
        "reasons: ▲ for and ▼ against the score, from the model's own contributions.",
        "A cell starting with ' held text that begins like a formula (=, +, -, @); the quote "
        "keeps it from running.",
    ]
    return notes


# ------------------------------------------------------------------------------- xlsx


def _cell_values(frame: pd.DataFrame) -> tuple[list[list[Any]], list[bool]]:
    """Rows of plain Python values (None for missing; datetimes as datetime) and, per
    column, whether it holds text."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    body = scoring_io.neutralise(frame.round({c: 6 for c in floats}) if floats else frame)
    columns, text = [], []
    for col in body.columns:
        values = body[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            columns.append([None if pd.isna(v) else pd.Timestamp(v).to_pydatetime()
                            for v in values])
            text.append(False)
        elif pd.api.types.is_bool_dtype(values):
            columns.append([None if pd.isna(v) else bool(v) for v in values.astype(object)])
            text.append(False)
        elif pd.api.types.is_integer_dtype(values):
            columns.append([None if pd.isna(v) else int(v) for v in values.astype(object)])
            text.append(False)
        elif pd.api.types.is_float_dtype(values):
            columns.append([None if pd.isna(v) else float(v) for v in values.astype(object)])
            text.append(False)
        else:
            columns.append([None if _missing(v) else str(v) for v in values.astype(object)])
            text.append(True)
    return [list(r) for r in zip(*columns, strict=True)] if columns else [], text


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _width(header: str, values: Sequence[Any]) -> float:
    longest = max([len(str(header))] + [len(str(v)) for v in values[:WIDTH_SAMPLE]
                                        if v is not None])
    return float(min(MAX_WIDTH, max(MIN_WIDTH, longest + 2)))


def _write_sheet(wb: Any, title: str, frame: pd.DataFrame, notes: Sequence[str] = ()) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(title)
    rows, text = _cell_values(frame)
    header_row = len(notes) + (1 if notes else 0) + 1
    ws.freeze_panes = f"A{header_row + 1}"
    for j, col in enumerate(frame.columns):
        values = [r[j] for r in rows[:WIDTH_SAMPLE]]
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            values = ["0000-00-00 00:00:00"]
        ws.column_dimensions[get_column_letter(j + 1)].width = _width(str(col), values)
    bold = Font(bold=True)
    for k, note in enumerate(notes):
        cell = WriteOnlyCell(ws, value=note)
        cell.data_type = "s"
        if k == 0:
            cell.font = bold
        ws.append([cell])
    if notes:
        ws.append([])
    header = []
    for col in frame.columns:
        cell = WriteOnlyCell(ws, value=str(col))
        cell.data_type = "s"
        cell.font = bold
        header.append(cell)
    ws.append(header)
    text_at = [j for j, is_text in enumerate(text) if is_text]
    for row in rows:
        for j in text_at:  # neutralised text never starts with "=", but never trust that
            value = row[j]
            if value is not None and value.startswith("="):
                cell = WriteOnlyCell(ws, value=value)
                cell.data_type = "s"
                row[j] = cell
        ws.append(row)  # datetimes get openpyxl's date format, numbers stay numbers


def write_xlsx(frame: pd.DataFrame, path: Path | str, bands: Mapping[str, Any] | None = None
               ) -> None:
    """The scored table as a workbook: sheet `scored_leads` (header frozen, content-sized
    columns, formulas neutralised as in the CSV) and, with `bands`, sheet `legend`."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    _write_sheet(wb, TABLE_SHEET, frame)
    if bands:
        _write_sheet(wb, LEGEND_SHEET, band_legend(bands), legend_notes(bands))
    wb.save(str(path))


def read_xlsx(path: Path | str, sheet: str = TABLE_SHEET) -> pd.DataFrame:
    """A sheet of a workbook written by `write_xlsx` (the table sheet by default)."""
    return pd.read_excel(path, sheet_name=sheet, engine="openpyxl")


# ---------------------------------------------------------------------------- history


def history_folder(paths: scoring_io.OutputPaths) -> Path:
    """`<base>_history/` next to the batch's files (`data/scored/scored_leads_history`)."""
    return Path(f"{_base(paths)}{HISTORY_SUFFIX}")


def _base(paths: scoring_io.OutputPaths) -> Path:
    return Path(str(paths.rejects).removesuffix(".rejects.csv"))


def _batch_key(frame: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    def latest(col: str) -> pd.Timestamp:
        if col not in frame.columns or frame.empty:
            return pd.Timestamp.min
        value = pd.to_datetime(frame[col], errors="coerce").max()
        return pd.Timestamp.min if pd.isna(value) else pd.Timestamp(value)

    return latest("as_of"), latest("scored_at")


def _is_newest(folder: Path, batch_id: str, frame: pd.DataFrame) -> bool:
    """True when no other batch in the history is later (as_of, then scored_at) than this."""
    mine = _batch_key(frame)
    for path in folder.glob("*.parquet"):
        if path.stem in (batch_id, LATEST) or path.name.endswith(".tmp"):
            continue
        try:
            other = pd.read_parquet(path, columns=["as_of", "scored_at"])
        except Exception:  # noqa: BLE001 - a damaged old batch does not block a new one
            log.warning("%s: unreadable history file skipped", path)
            continue
        if _batch_key(other) > mine:
            return False
    return True


def read_history(folder: Path | str) -> pd.DataFrame:
    """Every batch in a history folder, one after the other (oldest as_of first)."""
    folder = Path(folder)
    frames = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet")) if p.stem != LATEST]
    if not frames:
        return pd.DataFrame()
    frames.sort(key=_batch_key)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------ reasons


def reason_phrases(settings: Any) -> Any:
    """The reasons' phrase file of `score.phrases` (null: the shipped
    `models/resources/phrases.yaml`), read and checked; ConfigError naming the file and
    the entry when it cannot be used."""
    from models.reasons import PhraseError, load_phrases

    try:
        return load_phrases(getattr(settings, "phrases", None))
    except PhraseError as err:
        raise ConfigError(f"`score.phrases`: {err}") from None


# ------------------------------------------------------------------- pass-through


def with_pass_through(scored: pd.DataFrame, leads: pd.DataFrame, settings: Any,
                      file: str = "leads") -> pd.DataFrame:
    """A copy of the scored table with the `score.pass_through` lead columns (name, company,
    owner...) right after `lead_id`, looked up by lead_id in the leads the batch scored: the
    interim `_pass_<name>` column a source configuration's `role: pass` writes, else a lead
    column of that name (a contract column such as `company`, or a column of a `--leads`
    export). They go to the scored table only: never features, MLflow or reports.

    ConfigError when a name is a column the scored table already has; DataError when the
    leads have no such column."""
    from pipeline.sources import PASS_PREFIX

    names = tuple(getattr(settings, "pass_through", ()) or ())
    if not names:
        return scored
    taken = [n for n in names if n in scored.columns]
    if taken:
        raise ConfigError(f"`score.pass_through` names {', '.join(repr(n) for n in taken)}, "
                          "a column of the scored table itself; rename it in the source "
                          "configuration (`leads.roles.<column>.name`).")
    source = {n: f"{PASS_PREFIX}{n}" if f"{PASS_PREFIX}{n}" in leads.columns else n
              for n in names}
    missing = [n for n, col in source.items() if col not in leads.columns]
    if missing:
        have = [c.removeprefix(PASS_PREFIX) for c in leads.columns
                if str(c).startswith(PASS_PREFIX)] or [str(c) for c in leads.columns[:12]]
        raise DataError(
            f"{file}: no lead column {missing[0]!r} to pass through to the scored table "
            f"(`score.pass_through` lists {', '.join(repr(n) for n in names)}; the "
            f"{len(leads):,} leads have {', '.join(repr(h) for h in have)}). Give the export "
            f"column `role: pass` in the source configuration, or remove {missing[0]!r} from "
            "`score.pass_through`.", file=file, column=missing[0], n_rows=len(leads))
    pos = pd.Index(leads["lead_id"].astype(str)).get_indexer(scored["lead_id"].astype(str))
    found = pos >= 0
    out = scored.copy()
    at = list(out.columns).index("lead_id") + 1 if "lead_id" in out.columns else 0
    for k, (name, col) in enumerate(source.items()):
        values = leads[col].astype(object).to_numpy()[pos.clip(min=0)]
        values = pd.Series(values, index=out.index, dtype=object).where(found)
        values = values.where(values.notna(), None)
        out.insert(at + k, name, values.astype("str") if not values.isna().all()
                   else pd.Series(pd.NA, index=out.index, dtype="str"))
    return out


# ------------------------------------------------------------------------- the batch


def _batch_id(frame: pd.DataFrame) -> str | None:
    ids = frame["batch_id"].dropna().unique() if "batch_id" in frame.columns else []
    return str(ids[0]) if len(ids) == 1 else None


def write_batch(
    paths: scoring_io.OutputPaths,
    scored: pd.DataFrame,
    rejects: pd.DataFrame,
    rejects_events: pd.DataFrame,
    *,
    bands: Mapping[str, Any] | None = None,
    settings: Any = None,
    then: Callable[[], Any] | None = None,
    batch_id: str | None = None,
    **batch_options: Any,
) -> dict[str, str | None]:
    """Write every file of a scored batch as one unit (see the module doc); returns every
    output by kind (`parquet`, `csv`, `xlsx`, `rejects`, `rejects_events`, `history`,
    `latest`, `latest_xlsx`; None: not written), for the batch summary. `settings`: the
    `score` settings (`TableOptions.of`); `bands`: the model's fitted band sets, for the
    legend; `then`: called before any file is renamed into place (the SQL append);
    `batch_options` go to `scoring_io.write_batch_files` (`sql_target`, `allow_empty`...)."""
    options = TableOptions.of(settings)
    explicit = paths.parquet is None or paths.csv is None  # --out named one file
    wanted = set(options.formats) if not explicit else set()
    base_paths = replace(paths, csv=None, parquet=paths.parquet
                         if explicit or "parquet" in wanted else None)
    csv = paths.csv if (explicit and paths.csv is not None) or "csv" in wanted else None
    jobs: list[tuple[str, Path, Callable[[Path], None]]] = []
    temps: dict[str, Path] = {}

    def copy_of(key: str, write: Callable[[Path], None]) -> Callable[[Path], None]:
        """Copy the temp file of `key` when this batch wrote one (a workbook takes a while),
        else `write`."""
        return lambda tmp: shutil.copyfile(temps[key], tmp) if key in temps else write(tmp)

    if csv is not None:
        jobs.append(("csv", csv, lambda tmp: write_csv(scored, tmp, options.csv_sep,
                                                       options.csv_decimal)))
    if "xlsx" in wanted:
        jobs.append(("xlsx", Path(f"{_base(paths)}.xlsx"),
                     lambda tmp: write_xlsx(scored, tmp, bands)))
    batch_id = batch_id or _batch_id(scored)
    if options.history and batch_id:
        folder = history_folder(paths)
        jobs.append(("history", folder / f"{batch_id}.parquet",
                     lambda tmp: scored.to_parquet(tmp, index=False)))
        if not folder.is_dir() or _is_newest(folder, batch_id, scored):
            jobs.append(("latest", folder / f"{LATEST}.parquet", copy_of(
                "history", lambda tmp: scored.to_parquet(tmp, index=False))))
            if "xlsx" in set(options.formats):
                jobs.append(("latest_xlsx", folder / f"{LATEST}.xlsx", copy_of(
                    "xlsx", lambda tmp: write_xlsx(scored, tmp, bands))))
        else:
            log.info("batch %s is older than the latest one in %s: latest is left as it is",
                     batch_id, folder)
    written: dict[str, str | None] = {
        "parquet": str(base_paths.parquet) if base_paths.parquet is not None else None,
        "csv": None, "xlsx": None, "rejects": str(paths.rejects),
        "rejects_events": str(paths.rejects_events), "history": None, "latest": None,
        "latest_xlsx": None}
    with ExitStack() as stack:
        for key, target, writer in jobs:
            tmp = stack.enter_context(atomic_path(target))
            writer(tmp)
            temps[key], written[key] = tmp, str(target)
        scoring_io.write_batch_files(base_paths, scored, rejects, rejects_events, then=then,
                                     batch_id=batch_id, **batch_options)
    # the stack renames this module's files after `write_batch_files` renamed its own
    return written
