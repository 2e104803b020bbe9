"""Where a scored batch goes, and where the previous batch comes from.

Files: `--out PATH` names the batch. `PATH.parquet` and `PATH.csv` are written, or only one
of them when PATH itself ends in `.parquet` / `.csv`; `<base>.rejects.csv` (leads set
aside, with `source_row` and `reason`) and `<base>.rejects_events.csv` always go along, and
`<base>.movers.csv` (the biggest score changes since the previous batch) when the stage
passes one.
All files of a batch are written to temporary files first and renamed over the old ones
only when every one of them (and the SQL append, if any) succeeded: a crash mid-write leaves
the previous batch's files untouched. Between the SQL commit and the last rename a journal,
`<base>.pending.json`, records the batch and the content hash of every file; a kill there
leaves the table holding a batch the files do not, which the next run detects
(`recover_interrupted`) and repairs by deleting that batch from the table. The Parquet file
(when written) is renamed last; the journal lists the files in rename order, so the last
one holding the journal's content means the batch is complete.

One batch per input: a batch is identified by `BatchKey` (data source, as_of, content hash
of the input files). Writing a batch replaces every earlier batch with the same key (also
one scored by another model, or from a renamed copy of the same file), so a rerun never
duplicates rows. An empty batch (an as_of before every lead) never replaces a batch with
rows, in the files or the table, unless `allow_empty` (`leadprop score --allow-empty`).

CSV for Excel: UTF-8 with a byte-order mark, dates as `YYYY-MM-DD HH:MM:SS`, and every
text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return prefixed with a
single quote, so a company named `=HYPERLINK(...)` shows as text instead of running as a
formula. (`read_previous_file` strips that quote again.)

SQL: rows are appended to one table through SQLAlchemy (`sqlite:///scores.db`, or
`postgresql+psycopg://...`), created on first use with an index on (batch_id, lead_id);
`<table>_batches` records one row per batch (batch_id, source, as_of, input_hash, n_rows,
written_at), which is how batches with the same key are found.
The table name must be a plain identifier (`TABLE_NAME`); it and the URL never appear in
SQL text (SQLAlchemy Core builds every statement). Re-running a batch replaces that
batch's rows (same `batch_id`) in the same transaction, so a batch is never half there.
Latest batch: `SELECT * FROM scored_leads WHERE batch_id = (SELECT batch_id FROM
scored_leads ORDER BY as_of DESC, scored_at DESC LIMIT 1)`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, DataError
from pipeline.io import kill_point, read_json, sha256_file, write_group, write_json

log = logging.getLogger(__name__)

#: A plain SQL identifier, short enough for PostgreSQL once index prefixes are added.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
DEFAULT_TABLE = "scored_leads"
#: Text cells starting with one of these run as formulas in Excel / LibreOffice.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_INSERT_ROWS = 10_000
JOURNAL_SUFFIX = ".pending.json"
BATCHES_SUFFIX = "_batches"


@dataclass(frozen=True)
class BatchKey:
    """What makes two batches the same: the data source (`params.yaml: source`), the as_of
    moment and the content hash of the input files (leads + events; not their names)."""

    source: str
    as_of: pd.Timestamp
    input_hash: str


# ------------------------------------------------------------------------------ paths


def default_out(scored: Path | str, source_key: str) -> Path:
    """The default batch path of a data source (its history key, `Params.source_key`):
    `<paths.scored>/scored_leads` for the built-in synthetic sample,
    `<paths.scored>/<source key>/scored_leads` for a source configuration, so each source
    keeps its own latest batch and history."""
    base = Path(scored) if source_key == "synthetic" else Path(scored) / source_key
    return base / DEFAULT_TABLE


def default_table(source_key: str) -> str:
    """The default SQL table of a data source: `scored_leads` for the synthetic sample,
    `scored_leads_<source key>` (non-alphanumerics as `_`, cut to fit `TABLE_NAME`)."""
    if source_key == "synthetic":
        return DEFAULT_TABLE
    tail = re.sub(r"[^A-Za-z0-9_]", "_", source_key)[:48 - len(DEFAULT_TABLE) - 1]
    return check_table_name(f"{DEFAULT_TABLE}_{tail}")


@dataclass(frozen=True)
class OutputPaths:
    """The files of one scored batch (parquet/csv may be None when not wanted)."""

    parquet: Path | None
    csv: Path | None
    rejects: Path
    rejects_events: Path
    movers: Path | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {k: (str(v) if v is not None else None) for k, v in self.__dict__.items()}


def output_paths(out: Path | str) -> OutputPaths:
    """`data/scored/scored_leads` -> .parquet + .csv; `x.csv` -> CSV only; `x.parquet` ->
    Parquet only. Rejects go next to them as `<base>.rejects.csv`, the biggest score
    changes as `<base>.movers.csv`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".csv", ".parquet"):
        base = out.with_suffix("")
        parquet = out if suffix == ".parquet" else None
        csv = out if suffix == ".csv" else None
    else:
        base = out
        parquet, csv = Path(f"{out}.parquet"), Path(f"{out}.csv")
    if not base.name:
        raise ConfigError(f"`--out` must name a file (without or with .csv/.parquet); got {out}")
    return OutputPaths(parquet, csv, Path(f"{base}.rejects.csv"),
                       Path(f"{base}.rejects_events.csv"), Path(f"{base}.movers.csv"))


# -------------------------------------------------------------------------------- CSV


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell starting with a formula character is prefixed with
    a single quote (numbers and dates are left alone)."""
    out = {}
    for col in frame.columns:
        values = frame[col]
        if _is_text(values):
            text = values.astype(object)
            risky = text.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_START))
            values = text.where(~risky.astype(bool), "'" + text.astype(str))
        out[col] = values
    return pd.DataFrame(out, index=frame.index)


def unneutralise(values: pd.Series) -> pd.Series:
    """Undo `neutralise` on one text column read back from our CSV."""
    text = values.astype(object)
    quoted = text.map(lambda v: isinstance(v, str) and len(v) > 1 and v[0] == "'"
                      and v[1:].startswith(FORMULA_START))
    return text.where(~quoted.astype(bool), text.astype(str).str[1:])


def write_excel_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV that Excel opens correctly: BOM, ISO dates, CRLF, formulas neutralised, floats
    with at most 6 decimals."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    body = neutralise(frame.round({c: 6 for c in floats}) if floats else frame)
    body.to_csv(path, index=False, encoding="utf-8-sig", date_format=CSV_DATE_FORMAT,
                lineterminator="\r\n")


def _is_text(values: pd.Series) -> bool:
    dtype = values.dtype
    return (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype))


# ------------------------------------------------------------------------ file writes


def write_batch_files(
    paths: OutputPaths,
    scored: pd.DataFrame,
    rejects: pd.DataFrame,
    rejects_events: pd.DataFrame,
    then: Any = None,
    *,
    batch_id: str | None = None,
    sql_target: str | None = None,
    allow_empty: bool = False,
    movers: pd.DataFrame | None = None,
) -> None:
    """Write every file of the batch to temporary files, call `then()` (e.g. the SQL append),
    and only then move them all into place (Parquet last). Any exception before the renames
    leaves the old files as they were. The journal `<base>.pending.json` (batch id,
    `sql_target` when `then` is given, file hashes in rename order) is written before
    `then` and the renames and removed after them, for `recover_interrupted`.
    `movers` (the batch's biggest score changes) goes to `paths.movers` with the others;
    without it an earlier batch's movers file is removed once the batch is in place, so it
    never sits next to a batch it does not describe.

    DataError, before anything is written, when `scored` is empty and the files hold a batch
    with rows, unless `allow_empty`.
    """
    if scored.empty and not allow_empty:
        held = previous_rows(paths)
        if held:
            raise DataError(_empty_message(batch_id, f"{held:,} scored leads in "
                                           f"{paths.parquet or paths.csv}"),
                            file=str(paths.parquet or paths.csv), n_rows=0)
    jobs: list[tuple[Path, Any]] = [
        (paths.rejects_events, lambda tmp: write_excel_csv(rejects_events, tmp)),
        (paths.rejects, lambda tmp: write_excel_csv(rejects, tmp)),
    ]
    if movers is not None and paths.movers is not None:
        jobs.append((paths.movers, lambda tmp: write_excel_csv(movers, tmp)))
    if paths.csv is not None:
        jobs.append((paths.csv, lambda tmp: write_excel_csv(scored, tmp)))
    if paths.parquet is not None:
        jobs.append((paths.parquet, lambda tmp: scored.to_parquet(tmp, index=False)))
    journal = journal_path(paths)

    def commit(hashes: dict[str, str]) -> None:
        write_json(journal, {"batch_id": batch_id, "sql": sql_target if then else None,
                             "files": hashes})
        if then is None:
            return
        try:
            then()
        except BaseException:
            journal.unlink(missing_ok=True)  # rolled back: nothing to reconcile
            raise
        kill_point("score.after_sql")

    write_group(jobs, kill_name="score", before_rename=commit)
    journal.unlink(missing_ok=True)
    if movers is None and paths.movers is not None:
        paths.movers.unlink(missing_ok=True)


def journal_path(paths: OutputPaths) -> Path:
    """`<base>.pending.json` next to the batch's files."""
    return Path(str(paths.rejects)[: -len(".rejects.csv")] + JOURNAL_SUFFIX)


def previous_rows(paths: OutputPaths) -> int:
    """How many rows the batch now in these files holds (0 without one or unreadable)."""
    for path in (paths.parquet, paths.csv):
        if path is None or not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq

                return int(pq.read_metadata(path).num_rows)
            return len(pd.read_csv(path, usecols=[0], dtype=str, encoding="utf-8-sig"))
        except Exception:  # noqa: BLE001 - a damaged file holds nothing worth keeping
            return 0
    return 0


def _empty_message(batch_id: str | None, held: str) -> str:
    return (
        f"batch {batch_id or ''} has no open leads (an as_of before every lead was created, or "
        f"every lead already closed), and writing it would replace the {held}. Check "
        "`--as-of` / `score.as_of`; to write an empty batch anyway, pass `--allow-empty`."
    )


def recover_interrupted(paths: OutputPaths, engine: Any = None,
                        target: SqlTarget | None = None) -> str | None:
    """Repair what a run killed between its SQL commit and its file renames left behind
    (the journal `<base>.pending.json` exists): when the files do not hold the journal's
    batch, that batch is deleted from the SQL table, so table and files agree again.
    Returns the id of the batch removed, or None. Without the table the journal's batch was
    written to (`engine`/`target`), the journal is kept and a warning names it."""
    journal = journal_path(paths)
    if not journal.is_file():
        return None
    try:
        record = read_json(journal)
        batch_id, shown, files = record["batch_id"], record.get("sql"), record["files"]
    except Exception:  # noqa: BLE001 - a damaged journal: nothing reliable to repair
        log.warning("%s: unreadable journal of an interrupted batch; removed", journal)
        journal.unlink(missing_ok=True)
        return None
    # the journal lists the files in rename order: the last one in place means complete
    last = journal.parent / list(files)[-1] if files else None
    if last is not None and last.is_file() and files[last.name] == sha256_file(last):
        journal.unlink(missing_ok=True)  # killed after the last rename: complete
        return None
    if shown and (engine is None or target is None or target.shown != shown):
        log.warning("%s: a run was killed after writing batch %s to %s but before its files; "
                    "run `leadprop score` with that --db/--table once to remove the batch "
                    "from the table", journal, batch_id, shown)
        return None
    if shown:
        removed = delete_batch(engine, target.table, batch_id)
        log.warning("table %s: batch %s (%d rows) was committed by a run killed before it "
                    "wrote its files; removed so the table matches %s", target.table,
                    batch_id, removed, last)
    else:
        log.warning("%s: a run was killed while renaming the files of batch %s into place; "
                    "some may hold it and some the batch before (this run replaces them all)",
                    journal.parent, batch_id)
    journal.unlink(missing_ok=True)
    return batch_id


# ---------------------------------------------------------------------- previous batch

PREVIOUS_PREFIX = "previous_"
#: What score-change attribution needs of the previous batch (`scores=True`).
SCORE_COLUMNS = ("score", "model_version", "as_of")
#: A re-run's own change columns, carried over as they are (`scores=True`).
CHANGE_COLUMNS = ("score_change", "change_reasons")


def read_previous_file(paths: OutputPaths) -> pd.DataFrame | None:
    """The last batch written to these paths (Parquet preferred, else our CSV), or None.

    An unreadable file is logged and treated as absent: it is about to be replaced.
    """
    for path in (paths.parquet, paths.csv):
        if path is None or not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                return pd.read_parquet(path)
            frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False,
                                na_values=[""])
            for col in frame.columns:
                frame[col] = unneutralise(frame[col])
            if "as_of" in frame.columns:
                frame["as_of"] = pd.to_datetime(frame["as_of"], errors="coerce")
            return frame
        except Exception as err:  # noqa: BLE001 - any damage means "no usable previous batch"
            log.warning("%s: the previous batch cannot be read (%s); every lead is marked "
                        "movement=new", path, str(err).splitlines()[0] if str(err) else
                        type(err).__name__)
            return None
    return None


def select_previous(
    frame: pd.DataFrame | None, batch_id: str, as_of: pd.Timestamp, band_columns: Sequence[str],
    *, scores: bool = False,
) -> tuple[pd.DataFrame | None, str | None]:
    """(previous bands per lead: `lead_id` + band columns, previous batch id) from the last
    batch's file.

    - the file holds this very batch (a re-run): its `previous_*` columns are carried over,
      so a re-run gives the same change columns;
    - it holds an earlier batch (as_of before this one): its band columns;
    - otherwise (a later or same-moment batch of another model): no comparison.

    With `scores` (score-change attribution) the frame also holds `SCORE_COLUMNS` of an
    earlier batch (`score` as float, `model_version`, `as_of`), or a re-run's own
    `CHANGE_COLUMNS`, when the file has them.
    """
    if frame is None or frame.empty or "lead_id" not in frame.columns:
        return None, None
    ids = frame["batch_id"].dropna().unique() if "batch_id" in frame.columns else []
    prev_id = str(ids[0]) if len(ids) == 1 else None
    if prev_id == batch_id:
        cols = {f"{PREVIOUS_PREFIX}{c}": c for c in band_columns
                if f"{PREVIOUS_PREFIX}{c}" in frame.columns}
        carried = [c for c in CHANGE_COLUMNS if scores and c in frame.columns]
        if not cols and not carried:
            return None, None
        prev = frame[["lead_id", *cols, *carried]].rename(columns=cols)
        held = prev[list(cols.values())].notna().any(axis=1)
        if "score_change" in carried:
            held |= pd.to_numeric(prev["score_change"], errors="coerce").notna()
        log.info("re-run of batch %s: its change columns are carried over", batch_id)
        return _normalise_previous(prev[held], band_columns, carried), None
    prev_as_of = pd.to_datetime(frame["as_of"], errors="coerce").max() \
        if "as_of" in frame.columns else pd.NaT
    if pd.isna(prev_as_of) or not prev_as_of < as_of:
        log.warning("the previous output is as of %s, not before this batch (%s): the change "
                    "columns are left empty (movement=new)", prev_as_of, as_of)
        return None, None
    extra = [c for c in SCORE_COLUMNS if scores and c in frame.columns]
    keep = ["lead_id", *[c for c in band_columns if c in frame.columns], *extra]
    return _normalise_previous(frame[list(dict.fromkeys(keep))], band_columns, extra), prev_id


def _normalise_previous(frame: pd.DataFrame, band_columns: Sequence[str],
                        extra: Sequence[str] = ()) -> pd.DataFrame:
    """`lead_id` (text), the band columns (None where missing) and the `extra` columns
    typed: `score` / `score_change` as float, `as_of` as a moment, the rest as text
    (`change_reasons` empty where missing)."""
    out = pd.DataFrame({"lead_id": frame["lead_id"].astype(str).to_numpy()})
    for col in band_columns:
        out[col] = (frame[col].astype(object).where(frame[col].notna(), None).to_numpy()
                    if col in frame.columns else None)
    for col in extra:
        values = frame[col]
        if col in ("score", "score_change"):
            out[col] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        elif col == "as_of":
            out[col] = pd.to_datetime(values, errors="coerce").to_numpy()
        elif col == "change_reasons":
            out[col] = values.astype(object).where(values.notna(), "").astype(str).to_numpy()
        else:
            out[col] = values.astype(object).where(values.notna(), None).to_numpy()
    return out.drop_duplicates("lead_id", keep="last").reset_index(drop=True)


# -------------------------------------------------------------------------------- SQL


def check_table_name(name: str) -> str:
    """The table name, if it is a plain identifier; ConfigError otherwise."""
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        raise ConfigError(
            f"`--table` must be a plain SQL table name: a letter or underscore, then letters, "
            f"digits or underscores, at most 48 characters (e.g. scored_leads); got {name!r}. "
            "Names with spaces, quotes, dots or semicolons are refused so that they can never "
            "change the SQL that is run."
        )
    return name


def safe_url(url: str) -> str:
    """The database URL with any password masked (for logs, messages and MLflow)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported by open_engine
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", str(url))


@dataclass(frozen=True)
class SqlTarget:
    """A database URL and table to append batches to."""

    url: str
    table: str = DEFAULT_TABLE

    def __post_init__(self) -> None:
        check_table_name(self.table)

    @property
    def shown(self) -> str:
        return f"{safe_url(self.url)} table {self.table}"


def open_engine(target: SqlTarget) -> Any:
    """A SQLAlchemy engine for the target; ConfigError for a bad URL, a missing driver or a
    database that cannot be reached."""
    from sqlalchemy import create_engine, exc

    try:
        engine = create_engine(target.url)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
        raise ConfigError(
            f"`--db` {safe_url(target.url)!r} is not a usable database URL ({type(err).__name__}: "
            f"{_first_line(err)}). Use e.g. sqlite:///scores.db, or "
            "postgresql+psycopg://user@host/dbname with its driver installed."
        ) from None
    try:
        with engine.connect():
            pass
    except exc.SQLAlchemyError as err:
        engine.dispose()
        raise ConfigError(
            f"cannot connect to {safe_url(target.url)} ({type(err).__name__}: "
            f"{_first_line(err)}). Check the URL, that the database is running and the "
            "credentials."
        ) from None
    return engine


def _sql_type(values: pd.Series) -> Any:
    from sqlalchemy import BigInteger, DateTime, Float, Text

    if pd.api.types.is_datetime64_any_dtype(values):
        return DateTime()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return BigInteger()
    if pd.api.types.is_float_dtype(values):
        return Float()
    return Text()


def _table_for(frame: pd.DataFrame, name: str, conn: Any) -> Any:
    """The existing table (reflected) or a new one shaped like `frame`. A leadprop table
    (it has `lead_id` and `batch_id`) that lacks newer columns of the batch (a holdout flag,
    pass-through columns) gets them added, empty for earlier batches; ConfigError for any
    other table that lacks columns the batch has."""
    from sqlalchemy import Column, Index, MetaData, Table, inspect, text

    meta = MetaData()
    if inspect(conn).has_table(name):
        table = Table(name, meta, autoload_with=conn)
        missing = [c for c in frame.columns if c not in table.c]
        if missing and {"lead_id", "batch_id"} <= set(table.c.keys()):
            quote = conn.dialect.identifier_preparer.quote
            for col in missing:
                kind = _sql_type(frame[col]).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(col)} {kind}"))
            log.info("table %s: added column(s) %s (empty for earlier batches)", name,
                     ", ".join(missing))
            return Table(name, MetaData(), autoload_with=conn)
        if missing:
            raise ConfigError(
                f"table {name!r} exists but has no column(s) {', '.join(missing)}: it holds "
                "something other than leadprop scores, or an older layout. Score into "
                "another table (`--table`) or add the columns."
            )
        return table
    cols = [Column(c, _sql_type(frame[c]), nullable=c not in ("batch_id", "lead_id"))
            for c in frame.columns]
    table = Table(name, meta, *cols)
    Index(f"ux_{name}_batch_lead", table.c.batch_id, table.c.lead_id, unique=True)
    if "as_of" in table.c:
        Index(f"ix_{name}_as_of", table.c.as_of)
    meta.create_all(conn)
    return table


def _records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Rows as dicts of plain Python values (None for missing), for any DBAPI driver."""
    columns: dict[str, list[Any]] = {}
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            columns[col] = [None if pd.isna(v) else pd.Timestamp(v).to_pydatetime()
                            for v in values]
        elif pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
            columns[col] = [None if pd.isna(v) else int(v) for v in values.astype(object)]
        elif pd.api.types.is_float_dtype(values):
            arr = values.to_numpy(dtype=float, na_value=np.nan)
            columns[col] = [None if np.isnan(v) else float(v) for v in arr]
        else:
            columns[col] = [None if _missing(v) else str(v) for v in values.astype(object)]
    names = list(columns)
    for row in zip(*columns.values(), strict=True):
        yield dict(zip(names, row, strict=True))


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _insert_chunk(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    conn.execute(table.insert(), rows)


def _batches_table(conn: Any, name: str) -> Any:
    """`<name>_batches`: one row per batch, created on first use."""
    from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, inspect

    bname = f"{name}{BATCHES_SUFFIX}"
    meta = MetaData()
    if inspect(conn).has_table(bname):
        return Table(bname, meta, autoload_with=conn)
    table = Table(bname, meta, Column("batch_id", String(64), primary_key=True),
                  Column("source", String(200)), Column("as_of", DateTime()),
                  Column("input_hash", String(64)), Column("n_rows", BigInteger()),
                  Column("written_at", DateTime()))
    meta.create_all(conn)
    return table


def append_batch(engine: Any, name: str, frame: pd.DataFrame, batch_id: str,
                 key: BatchKey | None = None, allow_empty: bool = False) -> int:
    """Append the batch in one transaction, replacing earlier rows of the same batch_id and,
    with `key`, of every batch with the same key; returns the rows written. Any failure
    rolls the whole batch back. DataError (nothing written) when the batch is empty and
    would replace rows, unless `allow_empty`."""
    from sqlalchemy import delete, exc, func, select

    check_table_name(name)
    try:
        with engine.begin() as conn:
            table = _table_for(frame, name, conn)
            ids = {batch_id}
            batches = _batches_table(conn, name) if key is not None else None
            if batches is not None:
                at = pd.Timestamp(key.as_of).to_pydatetime()
                ids |= set(conn.execute(select(batches.c.batch_id).where(
                    batches.c.source == key.source, batches.c.as_of == at,
                    batches.c.input_hash == key.input_hash)).scalars())
            held = conn.execute(select(func.count()).select_from(table)
                                .where(table.c.batch_id.in_(sorted(ids)))).scalar() or 0
            if frame.empty and held and not allow_empty:
                raise DataError(_empty_message(batch_id, f"{held:,} rows of the same batch in "
                                               f"table {name!r}"), n_rows=0)
            replaced = conn.execute(delete(table).where(table.c.batch_id.in_(sorted(ids))))
            if replaced.rowcount:
                log.info("table %s: replacing the %d rows of batch %s", name, replaced.rowcount,
                         ", ".join(sorted(ids)))
            chunk: list[dict[str, Any]] = []
            for row in _records(frame):
                chunk.append(row)
                if len(chunk) >= _INSERT_ROWS:
                    _insert_chunk(conn, table, chunk)
                    chunk = []
            if chunk:
                _insert_chunk(conn, table, chunk)
            if batches is not None:
                conn.execute(delete(batches).where(batches.c.batch_id.in_(sorted(ids))))
                conn.execute(batches.insert(), [{
                    "batch_id": batch_id, "source": key.source, "as_of": at,
                    "input_hash": key.input_hash, "n_rows": len(frame),
                    "written_at": pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime(),
                }])
    except exc.SQLAlchemyError as err:
        raise DataError(
            f"writing batch {batch_id} to table {name!r} failed and was rolled back "
            f"({type(err).__name__}: {_first_line(err)}). The table is as it was before."
        ) from None
    return len(frame)


def delete_batch(engine: Any, name: str, batch_id: str) -> int:
    """Delete one batch's rows (and its `<name>_batches` row); returns the rows deleted."""
    from sqlalchemy import MetaData, Table, delete, inspect

    check_table_name(name)
    with engine.begin() as conn:
        if not inspect(conn).has_table(name):
            return 0
        table = Table(name, MetaData(), autoload_with=conn)
        n = conn.execute(delete(table).where(table.c.batch_id == batch_id)).rowcount
        if inspect(conn).has_table(f"{name}{BATCHES_SUFFIX}"):
            batches = Table(f"{name}{BATCHES_SUFFIX}", MetaData(), autoload_with=conn)
            conn.execute(delete(batches).where(batches.c.batch_id == batch_id))
    return int(n or 0)


def read_previous_sql(
    engine: Any, name: str, as_of: pd.Timestamp, band_columns: Sequence[str],
    source: str | None = None, *, scores: bool = False,
) -> tuple[pd.DataFrame | None, str | None]:
    """(previous bands per lead, its batch id) from the latest batch in the table whose
    as_of is before this one (ties: the latest scored_at); (None, None) without one. With
    `source` (the history key, `BatchKey.source`), only that source's batches count (as
    recorded in `<name>_batches`; a table without it has no per-source record). With
    `scores`, also the batch's `SCORE_COLUMNS` the table has (as `select_previous`)."""
    from sqlalchemy import MetaData, Table, exc, func, inspect, select

    check_table_name(name)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(name):
                return None, None
            table = Table(name, MetaData(), autoload_with=conn)
            needed = [c for c in ("batch_id", "as_of", "lead_id") if c not in table.c]
            if needed:
                raise ConfigError(
                    f"table {name!r} exists but has no column(s) {', '.join(needed)}: it does "
                    "not hold leadprop scores. Use another `--table`."
                )
            at = pd.Timestamp(as_of).to_pydatetime()
            order_cols = [table.c.as_of.desc()]
            latest_scored = None
            if "scored_at" in table.c:
                latest_scored = func.max(table.c.scored_at).label("latest_scored")
                order_cols.append(latest_scored.desc())
            head = select(table.c.batch_id, table.c.as_of,
                          *([latest_scored] if latest_scored is not None else []))
            head = head.where(table.c.as_of < at)
            if source is not None and inspect(conn).has_table(f"{name}{BATCHES_SUFFIX}"):
                batches = Table(f"{name}{BATCHES_SUFFIX}", MetaData(), autoload_with=conn)
                head = head.where(table.c.batch_id.in_(
                    select(batches.c.batch_id).where(batches.c.source == source)))
            head = (head.group_by(table.c.batch_id, table.c.as_of)
                    .order_by(*order_cols, table.c.batch_id.desc()).limit(1))
            found = conn.execute(head).first()
            if found is None:
                return None, None
            prev_id = str(found[0])
            cols = [c for c in band_columns if c in table.c]
            extra = [c for c in SCORE_COLUMNS if scores and c in table.c and c not in cols]
            rows = conn.execute(select(table.c.lead_id, *[table.c[c] for c in [*cols, *extra]])
                                .where(table.c.batch_id == prev_id)).all()
    except exc.SQLAlchemyError as err:
        raise DataError(
            f"reading the previous batch from table {name!r} failed ({type(err).__name__}: "
            f"{_first_line(err)})."
        ) from None
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["lead_id", *cols, *extra])
    return _normalise_previous(frame, band_columns, extra), prev_id


def read_batches(engine: Any, name: str) -> pd.DataFrame:
    """The whole table (for tests and small tables)."""
    from sqlalchemy import MetaData, Table, select

    check_table_name(name)
    with engine.connect() as conn:
        table = Table(name, MetaData(), autoload_with=conn)
        result = conn.execute(select(table))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


@contextmanager
def engine_for(target: SqlTarget | None) -> Iterator[Any]:
    """An engine for the target (disposed afterwards), or None without a target."""
    if target is None:
        yield None
        return
    engine = open_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
