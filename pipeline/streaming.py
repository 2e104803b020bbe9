"""Scoring with bounded memory: the events file is read one bucket of leads at a time.

Behaviour features depend only on one lead's own events, so the open leads can be scored
in groups as long as each group comes with all of its leads' events. The events file (CSV
or Parquet, raw export or the interim table) is read once, in row batches, and every row
is written to one of `n_buckets` spill files chosen by a hash of its `lead_id`
(`bucket_of`: SipHash of the stripped text id, the same on every run and machine). Buckets
are then grouped into chunks of at most `chunk_events` events (`plan_chunks`); for each
chunk only its spill files are read (`EventSpill.read`, Arrow), validated like a whole file
would be (export mode), and scored by the one scoring core (`models.scoring`) with the
leads of that chunk. The scored rows, the not-open leads and the drift bin counts are
joined at the end: the table equals the one-shot result row for row.

Peak memory is the leads table plus one chunk of events, whatever the number of events;
`score.chunk_events` sets the chunk (fewer events per chunk: less memory, a little more
time). The spill files live in a temporary folder (`$TMPDIR`, default /tmp) that is removed
afterwards; they take about the size of the events as Parquet.

File-level checks of an events export (the share of rejected rows, of unparseable values)
are made per chunk: a chunk is a random sample of the file's leads, so the shares are
those of the file up to sampling noise.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.snapshots import scoring_spine
from pipeline.errors import ConfigError, DataError
from pipeline.readers import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    ReadOptions,
    _check_delimiter,
    _decode_error,
    _python_encoding,
    _ragged_error,
    check_field_sizes,
    format_names,
    scan_line_lengths,
)

log = logging.getLogger(__name__)

#: Default `score.chunk_events`: events held in memory at once (a few hundred bytes each
#: while a chunk is validated and its features are built; README "Memory and scale").
CHUNK_EVENTS = 4_000_000
#: Rows read from the events file per batch while spilling.
BATCH_ROWS = 500_000
#: Spill buckets per chunk of events: a few, so chunks can be balanced.
BUCKETS_PER_CHUNK = 4
MAX_BUCKETS = 1024
ROW_COLUMN = "__source_row"
_COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zst", ".zip"})


# ---------------------------------------------------------------------------- buckets


def bucket_of(lead_ids: pd.Series | Sequence[Any], n_buckets: int) -> np.ndarray:
    """Bucket number (0 .. n_buckets-1) of each lead id: a SipHash of the id as stripped
    text (pandas `hash_pandas_object`, fixed key), so ' 42' and 42 share a bucket, the same
    on every run."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1; got {n_buckets}")
    text = pd.Series(lead_ids).astype("str").str.strip()
    hashed = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    return (hashed % np.uint64(n_buckets)).astype(np.int64)


def plan_chunks(counts: Sequence[int], chunk_events: int) -> list[list[int]]:
    """Buckets grouped in order into chunks of at most `chunk_events` events (a bucket
    larger than that is a chunk of its own). Every bucket is in exactly one chunk; empty
    buckets join a neighbour."""
    if chunk_events < 1:
        raise ConfigError(f"`score.chunk_events` must be >= 1; got {chunk_events}")
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for bucket, n in enumerate(int(c) for c in counts):
        if current and total + n > chunk_events:
            chunks.append(current)
            current, total = [], 0
        current.append(bucket)
        total += n
    if current:
        chunks.append(current)
    return chunks


def estimate_rows(path: Path) -> int:
    """Rough row count of an events file: exact for Parquet (metadata); for CSV the file
    size over the mean length of its first lines (x 8 for a compressed file)."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # noqa: BLE001 - a damaged file is reported by the reader
            return 0
    size = path.stat().st_size
    if path.suffix.lower() in _COMPRESSED:
        return size * 8 // 60
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    lines = max(head.count(b"\n"), 1)
    return int(size / (len(head) / lines)) if head else 0


def n_buckets_for(n_rows: int, chunk_events: int) -> int:
    """Spill buckets for about `n_rows` events: `BUCKETS_PER_CHUNK` per chunk."""
    need = math.ceil(max(n_rows, 1) / max(chunk_events, 1))
    return 1 if need <= 1 else min(MAX_BUCKETS, need * BUCKETS_PER_CHUNK)


# ------------------------------------------------------------------------------ spill


@dataclass
class EventSpill:
    """An events file split into bucket files: `counts[b]` rows in `files[b]` (None when
    empty), `n_rows` in all, the file's columns, and the first row number."""

    source: Path
    folder: Path
    files: list[Path | None]
    counts: np.ndarray
    columns: list[str]
    n_rows: int
    reads: list[list[int]] = field(default_factory=list)

    @property
    def n_buckets(self) -> int:
        return len(self.files)

    def read(self, buckets: Sequence[int]) -> pd.DataFrame:
        """The raw rows of these buckets only, in file order, indexed by their row number
        in the file (as `pipeline.readers.read_table` numbers them)."""
        self.reads.append(list(buckets))
        paths = [str(self.files[b]) for b in sorted(buckets) if self.files[b] is not None]
        if not paths:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in self.columns},
                                index=pd.RangeIndex(0))
        table = pa.concat_tables([pq.read_table(p) for p in paths])
        table = table.sort_by(ROW_COLUMN)
        rows = table.column(ROW_COLUMN).to_numpy()
        frame = table.drop_columns([ROW_COLUMN]).to_pandas()
        frame.index = pd.Index(rows, dtype="int64")
        return frame


def _csv_batches(path: Path, options: ReadOptions, what: str) -> Iterator[pd.DataFrame]:
    """`pipeline.readers.read_table`'s CSV reading (every column as text, same errors), in
    batches of `BATCH_ROWS` rows."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                path, sep=options.delimiter, encoding=_python_encoding(options.encoding),
                dtype=str, keep_default_na=False, na_values=list(options.na_values),
                index_col=False, skip_blank_lines=True, chunksize=BATCH_ROWS,
            )
            with reader:
                first = True
                for batch in reader:
                    if first:
                        _check_delimiter(path, batch.columns, options, what)
                        first = False
                    yield batch
    except UnicodeDecodeError as err:
        raise _decode_error(path, options, what, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {what} file has no header row (it holds only blank "
                        "lines). Export it again with a header row and at least one data row.",
                        file=str(path)) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        raise _ragged_error(path, options, what) from None


def _parquet_batches(path: Path, what: str) -> Iterator[pa.RecordBatch]:
    try:
        handle = pq.ParquetFile(path)
        yield from handle.iter_batches(batch_size=BATCH_ROWS)
    except Exception as err:  # pyarrow raises several types for a damaged file
        if isinstance(err, MemoryError):
            raise
        raise DataError(
            f"{path}: the {what} file is not a readable Parquet file ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). Export it again, or "
            "export CSV instead.", file=str(path)) from None


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path}: the {what} file {where}. Check the path (it is resolved "
                        f"from the current folder, {Path.cwd()}).", file=str(path))
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the {what} file is empty (0 bytes). Export it again with a "
                        "header row and at least one data row.", file=str(path))
    suffixes = {s.lower() for s in path.suffixes}
    if path.suffix.lower() not in PARQUET_SUFFIXES and not suffixes & CSV_SUFFIXES:
        raise DataError(f"{path}: cannot tell how to read the {what} file from its name; use "
                        "a .csv (optionally compressed, e.g. .csv.gz) or a .parquet file.",
                        file=str(path))


def spill_events(path: Path, options: ReadOptions, n_buckets: int, folder: Path,
                 what: str = "events") -> EventSpill:
    """Read the events file once, in batches, and write each row to the Parquet file of
    its lead's bucket (with its row number). Only one batch is in memory at a time.

    DataError for a file `read_table` would refuse (missing, empty, unreadable, no
    `lead_id` column, header but no rows).
    """
    path = Path(path)
    _check_file(path, what)
    parquet = path.suffix.lower() in PARQUET_SUFFIXES
    first_row = 1 if parquet else 2
    writers: list[pq.ParquetWriter | None] = [None] * n_buckets
    files: list[Path | None] = [None] * n_buckets
    counts = np.zeros(n_buckets, np.int64)
    schema: pa.Schema | None = None
    columns: list[str] = []
    n_rows = 0
    if not parquet:
        scan_line_lengths(path, options, what)
    batches = _parquet_batches(path, what) if parquet else _csv_batches(path, options, what)
    try:
        for batch in batches:
            if parquet:
                table = pa.Table.from_batches([batch])
                _check_cell_sizes(table, first_row + n_rows, path, options, what)
            else:
                batch.columns = [str(c).strip() for c in batch.columns]
                batch.index = pd.RangeIndex(first_row + n_rows, first_row + n_rows + len(batch))
                check_field_sizes(batch, path, options, what)
                table = pa.Table.from_pandas(
                    batch, schema=pa.schema([(c, pa.string()) for c in batch.columns]),
                    preserve_index=False)
            if schema is None:
                columns = [str(c).strip() for c in table.column_names]
                if "lead_id" not in columns:
                    from pipeline.contract import EVENTS_REQUIRED, _require_columns

                    _require_columns(pd.DataFrame(columns=columns), EVENTS_REQUIRED,
                                     str(path), what)
                schema = table.schema.append(pa.field(ROW_COLUMN, pa.int64()))
            table = table.rename_columns(columns)
            rows = pa.array(np.arange(first_row + n_rows, first_row + n_rows + len(table)),
                            pa.int64())
            table = table.append_column(ROW_COLUMN, rows)
            n_rows += len(table)
            ids = table.column("lead_id").to_pandas()
            buckets = bucket_of(ids.where(ids.notna(), ""), n_buckets)
            order = np.argsort(buckets, kind="stable")
            sorted_buckets = buckets[order]
            edges = np.flatnonzero(np.diff(sorted_buckets)) + 1
            for part in np.split(order, edges):
                if not len(part):
                    continue
                b = int(buckets[part[0]])
                if writers[b] is None:
                    files[b] = folder / f"bucket-{b:04d}.parquet"
                    writers[b] = pq.ParquetWriter(files[b], schema)
                writers[b].write_table(table.take(pa.array(part)))
                counts[b] += len(part)
    finally:
        for w in writers:
            if w is not None:
                w.close()
    if n_rows == 0:
        raise DataError(f"{path}: the {what} file has a header ({format_names(columns)}) but "
                        "no data rows. Export it again with its rows.", file=str(path), n_rows=0)
    return EventSpill(path, folder, files, counts, columns, n_rows)


def _check_cell_sizes(table: pa.Table, first_row: int, path: Path, options: ReadOptions,
                      what: str) -> None:
    """`check_field_sizes` for an Arrow batch: measured in Arrow, the batch goes to pandas
    only when a text cell is over the limit (for the error message)."""
    import pyarrow.compute as pc

    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            longest = pc.max(pc.utf8_length(column)).as_py()
            if longest is not None and longest > options.max_field_size:
                frame = table.to_pandas()
                frame.columns = [str(c).strip() for c in frame.columns]
                frame.index = pd.RangeIndex(first_row, first_row + len(frame))
                check_field_sizes(frame, path, options, what)


@contextmanager
def spill_folder() -> Iterator[Path]:
    """A temporary folder for the spill files (under $TMPDIR), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="leadprop-score-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------- chunk loop


@dataclass
class StreamedScores:
    """What the chunk loop produced: the core's `ScoredLeads` over all chunks (table sorted
    by lead_id, not-open leads in input order, drift counts summed), the events set aside
    (export mode) and how many event rows the file held."""

    scored: Any
    rejects_events: pd.DataFrame
    n_events: int
    n_chunks: int
    chunk_events: int
    peak_chunk_events: int


#: (raw events of one chunk) -> (validated events, rejected rows)
Validate = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]


def score_in_chunks(
    leads: pd.DataFrame,
    spill: EventSpill,
    bundle: Any,
    fs: Any,
    as_of: pd.Timestamp,
    *,
    chunk_events: int = CHUNK_EVENTS,
    validate: Validate | None = None,
    chunk_size: int | None = None,
    reference: Any = None,
    progress: Callable[[int, int], None] | None = None,
    score: Callable[..., Any] | None = None,
) -> StreamedScores:
    """Score the leads open at `as_of`, one chunk of buckets at a time, with the scoring
    core (`models.scoring.score_open_leads`) on the chunk's leads and events.

    `validate` turns a chunk's raw event rows into contract events (export mode); without
    it the spill holds typed interim events. Lead columns are typed on the whole table
    first (`pin_extra_types`), and a lead that makes a text column non-numeric rides along
    with every chunk (not scored there), so each chunk types its features like the whole
    table would. `score` (default: the core itself) is called as the core is, e.g. the
    stage's wrapper that names the file in its errors.
    """
    from models import scoring as core

    score = core.score_open_leads if score is None else score

    chunks = plan_chunks(spill.counts, chunk_events)
    log.info("score: %d chunk(s) of events, the largest %s", len(chunks),
             f"{max(int(spill.counts[c].sum()) for c in chunks):,}")
    pinned, witness = core.pin_extra_types(leads, fs)
    if pinned is leads:  # never touch the caller's frame
        pinned = leads.copy(deep=False)
    pinned.attrs = dict(leads.attrs)
    lead_bucket = bucket_of(pinned["lead_id"], spill.n_buckets)
    open_total = len(scoring_spine(pinned, as_of)[0])
    kwargs: dict[str, Any] = {"reference": reference}
    if chunk_size is not None:
        kwargs["chunk_size"] = chunk_size

    tables, not_open, rejects = [], [], []
    counts: dict[str, np.ndarray] = {}
    done = peak = 0
    for buckets in chunks:
        raw = spill.read(buckets)
        peak = max(peak, len(raw))
        if validate is not None:
            events, rejected = validate(raw)
            rejects.append(rejected)
        else:
            events = raw.reset_index(drop=True)
        del raw
        in_chunk = np.isin(lead_bucket, buckets)
        riders = witness[~in_chunk[witness]] if len(witness) else witness
        chunk_leads = pinned.loc[in_chunk]
        if len(riders):
            chunk_leads = pd.concat([chunk_leads, _not_open_rider(pinned.iloc[riders])])
        chunk_leads.attrs = dict(pinned.attrs)

        def step(d: int, t: int, base: int = done) -> None:
            if progress is not None:
                progress(base + d, open_total)

        result = score(chunk_leads, events, bundle, fs, as_of, progress=step, **kwargs)
        del events
        rider_ids = set(pinned["lead_id"].iloc[riders].astype(str))
        out = result.not_open
        if rider_ids:
            out = out.loc[~out["lead_id"].astype(str).isin(rider_ids)]
        tables.append(result.table)
        not_open.append(out)
        for name, c in result.drift_counts.items():
            counts[name] = counts[name] + c if name in counts else np.array(c, copy=True)
        done += len(result.table)
    table = pd.concat(tables, ignore_index=True)
    table = table.sort_values("lead_id", kind="stable").reset_index(drop=True)
    gone = pd.concat(not_open, ignore_index=True)
    pos = pd.Index(pinned["lead_id"].astype(str)).get_indexer(gone["lead_id"].astype(str))
    gone = gone.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)
    scored = core.ScoredLeads(table, gone, counts)
    if rejects:
        rej = pd.concat(rejects, ignore_index=True)
        rej = rej.sort_values("source_row", kind="stable").reset_index(drop=True)
    else:
        rej = None
    return StreamedScores(scored, rej, spill.n_rows, len(chunks), chunk_events, peak)


def _not_open_rider(rows: pd.DataFrame) -> pd.DataFrame:
    """Copies of witness leads that only type a chunk's columns: made not open (no
    `created_at`), so the chunk does not score them; their extra columns are untouched."""
    out = rows.copy()
    if "created_at" in out.columns:
        out["created_at"] = pd.Series(pd.NaT, index=out.index, dtype=out["created_at"].dtype)
    return out


# ------------------------------------------------------------------------------ memory


def memory_available() -> dict[str, int | None]:
    """Bytes this process may still use, from what the system says: `available` (Linux
    MemAvailable), `cgroup_limit` / `cgroup_used` (a container's memory cap) and
    `address_limit` (`ulimit -v`); None where unknown or unlimited."""
    out: dict[str, int | None] = {"available": None, "cgroup_limit": None, "cgroup_used": None,
                                  "address_limit": None}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                out["available"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    for name, key in (("memory.max", "cgroup_limit"), ("memory.current", "cgroup_used")):
        try:
            text = Path("/sys/fs/cgroup", name).read_text().strip()
            out[key] = None if text == "max" else int(text)
        except (OSError, ValueError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    out["address_limit"] = None if soft == resource.RLIM_INFINITY else int(soft)
    return out


def _gb(n: int | None) -> str:
    return f"{n / 2**30:.1f} GB"


def describe_memory(mem: dict[str, int | None] | None = None) -> str:
    """'2.0 GB address space allowed (ulimit -v), 20.1 GB free' and the like."""
    mem = memory_available() if mem is None else mem
    parts = []
    if mem.get("address_limit"):
        parts.append(f"{_gb(mem['address_limit'])} of address space allowed (ulimit -v)")
    if mem.get("cgroup_limit"):
        used = mem.get("cgroup_used")
        parts.append(f"a {_gb(mem['cgroup_limit'])} container memory limit"
                     + (f" ({_gb(used)} in use)" if used is not None else ""))
    if mem.get("available") is not None:
        parts.append(f"{_gb(mem['available'])} free on the machine")
    return ", ".join(parts) or "an unknown amount of memory"


def _rss() -> int | None:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextmanager
def memory_guard(what: str, chunk_events: int, chunk_size: int | None = None,
                 state: dict[str, int] | None = None) -> Iterator[None]:
    """Turn running out of memory (MemoryError, Arrow's ArrowMemoryError, DuckDB's
    OutOfMemoryException) into a ConfigError that says how much memory there was and
    which settings lower the use. `state["events"]`, when the caller has set it, is the
    number of events in the file (the suggested chunk is a quarter of the smaller)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - filtered to memory errors below
        if not _is_memory_error(err):
            raise
        rss = _rss()
        events = (state or {}).get("events")
        held = min(chunk_events, events) if events else chunk_events
        lower = max(1, held // 4)
        size = (f" (`--chunk-size`, leads per model call, now {chunk_size:,}, matters much "
                "less)" if chunk_size else "")
        raise ConfigError(
            f"{what} ran out of memory ({type(err).__name__}) with {describe_memory()}"
            f"{f'; this process held {_gb(rss)}' if rss else ''}. Scoring holds the leads "
            f"table and one chunk of events (here up to {held:,}): lower `score.chunk_events` "
            f"in params.yaml (now {chunk_events:,}; e.g. {lower:,}){size}, or run where more "
            "memory is free."
        ) from None


#: Rough peak bytes per event of a chunk (validation, features); for the early warning only.
BYTES_PER_EVENT = 500


def memory_warning(chunk_events: int, mem: dict[str, int | None] | None = None) -> str | None:
    """A warning when one chunk of `chunk_events` events probably needs more memory than is
    left (a container's limit minus its use, else the machine's free memory): the kernel
    kills such a process without a word, so it is said before starting. None when it fits
    or nothing is known."""
    mem = memory_available() if mem is None else mem
    if mem.get("cgroup_limit") and mem.get("cgroup_used") is not None:
        left = int(mem["cgroup_limit"]) - int(mem["cgroup_used"])
    elif mem.get("available") is not None:
        left = int(mem["available"])
    else:
        return None
    need = chunk_events * BYTES_PER_EVENT
    if need <= left:
        return None
    fit = max(1, left // BYTES_PER_EVENT // 2)
    return (f"a chunk of {chunk_events:,} events may need about {_gb(need)} and "
            f"{describe_memory(mem)} (about {_gb(max(left, 0))} left): if the process is "
            f"killed, lower `score.chunk_events` in params.yaml (e.g. to {fit:,})")


def _is_memory_error(err: BaseException) -> bool:
    if isinstance(err, MemoryError):  # pyarrow's ArrowMemoryError is one too
        return True
    return type(err).__name__ in ("OutOfMemoryException", "ArrowMemoryError")


# ------------------------------------------------------------------------ entry point


def export_validator(path: Path, leads: pd.DataFrame, rejects: pd.DataFrame,
                     options: ReadOptions, now: pd.Timestamp) -> Validate:
    """A chunk's raw event rows -> (contract events, rejected rows), checked against the
    whole clean leads table as `pipeline.contract.validate_events` checks a whole file."""
    from pipeline.contract import validate_events

    ids = rejects["lead_id"].astype("str").str.strip() if "lead_id" in rejects else []
    rejected_ids = [i for i in ids if i]

    def validate(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        return validate_events(raw, leads, str(path), options, now,
                               rejected_lead_ids=rejected_ids)
    return validate


def event_timestamps(path: Path, options: ReadOptions, now: pd.Timestamp | None = None
                     ) -> pd.DataFrame:
    """Only the `timestamp` column of an events file (typed; for a raw CSV parsed as the
    contract does, unparseable and future moments left out): what `data_end` needs."""
    from pipeline.contract import parse_dates

    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        stamps = pq.read_table(path, columns=["timestamp"]).to_pandas()["timestamp"]
        if not pd.api.types.is_datetime64_any_dtype(stamps):
            stamps = parse_dates(stamps.astype("str"), options.for_column("timestamp"))
    else:
        raw = pd.read_csv(path, sep=options.delimiter, encoding=_python_encoding(options.encoding),
                          dtype=str, keep_default_na=False, na_values=list(options.na_values),
                          usecols=lambda c: str(c).strip() == "timestamp")
        stamps = parse_dates(raw.iloc[:, 0], options.for_column("timestamp"))
    stamps = stamps.dropna()
    if now is not None:
        stamps = stamps[stamps <= now]
    return pd.DataFrame({"timestamp": stamps.reset_index(drop=True)})


def score_file(
    leads: pd.DataFrame,
    events_path: Path,
    bundle: Any,
    fs: Any,
    as_of: pd.Timestamp,
    *,
    options: ReadOptions = ReadOptions(),
    validate: Validate | None = None,
    chunk_events: int = CHUNK_EVENTS,
    chunk_size: int | None = None,
    reference: Any = None,
    progress: Callable[[int, int], None] | None = None,
    score: Callable[..., Any] | None = None,
) -> StreamedScores:
    """Spill the events file into buckets (a temporary folder) and score the open leads
    chunk by chunk (`score_in_chunks`); rejected event rows come back sorted by row.
    Running out of memory is a ConfigError naming `score.chunk_events`."""
    from pipeline.contract import empty_rejects

    if chunk_events < 1:
        raise ConfigError(f"`score.chunk_events` must be >= 1; got {chunk_events}")
    events_path = Path(events_path)
    state: dict[str, int] = {}
    with memory_guard("scoring", chunk_events, chunk_size, state), spill_folder() as folder:
        n = n_buckets_for(estimate_rows(events_path), chunk_events)
        spill = spill_events(events_path, options, n, folder)
        state["events"] = spill.n_rows
        warning = memory_warning(min(chunk_events, spill.n_rows))
        if warning:
            log.warning("score: %s", warning)
        log.info("score: %s events from %s in %d bucket(s), chunks of <= %s events",
                 f"{spill.n_rows:,}", events_path, n, f"{chunk_events:,}")
        out = score_in_chunks(leads, spill, bundle, fs, as_of, chunk_events=chunk_events,
                              validate=validate, chunk_size=chunk_size, reference=reference,
                              progress=progress, score=score)
    if out.rejects_events is None:
        out.rejects_events = empty_rejects(spill.columns)
    return out


@dataclass(frozen=True)
class EventsToStream:
    """An events file the score stage reads chunk by chunk instead of whole: `validate`
    for a raw export (checked against the contract), else the typed interim table."""

    path: Path
    validate: bool
    now: pd.Timestamp


def events_to_stream(inputs: Any, path: Path | str | None, *, validate: bool,
                     now: pd.Timestamp) -> EventsToStream | None:
    """Record the events file on the stage's `Inputs` (its events stay unread) and return
    what `score_inputs` needs to stream it; None without a file. DataError at once for a
    missing, empty or unnamed-kind file."""
    if path is None:
        return None
    path = Path(path)
    _check_file(path, "events")
    inputs.events_file = path
    return EventsToStream(path, validate, now)


def score_inputs(inputs: Any, stream: EventsToStream | None, bundle: Any, fs: Any,
                 as_of: pd.Timestamp, *, score: Callable[..., Any], options: ReadOptions,
                 chunk_events: int = CHUNK_EVENTS, **kwargs: Any) -> Any:
    """The score stage's scoring step: with an events file to stream, `score_file` (and the
    stage's `Inputs` get the event counts and rejects); else one `score` call on the frames
    in `inputs`. `kwargs` go to the core (`chunk_size`, `reference`, `progress`)."""
    if stream is None:
        return score(inputs.leads, inputs.events, bundle, fs, as_of, **kwargs)
    validate = (export_validator(stream.path, inputs.leads, inputs.rejects, options, stream.now)
                if stream.validate else None)
    out = score_file(inputs.leads, stream.path, bundle, fs, as_of, options=options,
                     validate=validate, chunk_events=chunk_events, score=score, **kwargs)
    inputs.n_events = out.n_events
    inputs.rejects_events = out.rejects_events
    return out.scored
