"""The `generate` stage: write the built-in synthetic CRM export (see `pipeline.synth`).

Files written to `out_dir` (each atomically: a temp file renamed into place at the end):

- `leads.csv`: lead_id, created_at, source, email, first_name, last_name, phone, company,
  company_size, industry, country, job_title, budget, need, timeframe, converted,
  converted_at, lost_at, status (a CRM field sales fill in *after* the outcome: leak bait);
  rows in lead_id order, which is also created_at order.
- `events.csv`: lead_id, timestamp, event_type, page, channel; sorted by lead_id, then
  timestamp (ties in the order they happened within a session).
- `truth.csv`: lead_id, as_of, p_true; one row per (lead, snapshot age) with
  `as_of = created_at + age days` at or before the data end while the lead is open (not
  converted at or before as_of, not lost at or before as_of); `p_true` is the generator's
  exact probability that the lead converts in (as_of, as_of + horizon]. Rows whose horizon
  runs past the data end are included (the feature stage censors them).

Timestamps are `YYYY-MM-DD HH:MM:SS` (UTC, naive); an empty field is a missing value. The
leads are generated in chunks of `synth.CHUNK_SIZE`, each from its own seed-sequence child,
by up to `workers` processes, and written in chunk order: the same settings give
byte-identical files whatever the number of workers.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline import synth
from pipeline.errors import ConfigError
from pipeline.io import atomic_path
from pipeline.synth import SynthSettings

log = logging.getLogger(__name__)

LEADS_FILE, EVENTS_FILE, TRUTH_FILE = "leads.csv", "events.csv", "truth.csv"
GENERATE_KEYS = ("leads", "seed", "start", "months", "activity_scale")

_TS = pa.timestamp("s")
_STRING_COLUMNS = (
    "lead_id", "source", "email", "first_name", "last_name", "phone", "company", "industry",
    "country", "job_title", "budget", "need", "timeframe", "status",
)
LEADS_SCHEMA = pa.schema([
    ("lead_id", pa.string()), ("created_at", _TS), ("source", pa.string()),
    ("email", pa.string()), ("first_name", pa.string()), ("last_name", pa.string()),
    ("phone", pa.string()), ("company", pa.string()), ("company_size", pa.int64()),
    ("industry", pa.string()), ("country", pa.string()), ("job_title", pa.string()),
    ("budget", pa.string()), ("need", pa.string()), ("timeframe", pa.string()),
    ("converted", pa.int8()), ("converted_at", _TS), ("lost_at", _TS), ("status", pa.string()),
])
EVENTS_SCHEMA = pa.schema([
    ("lead_id", pa.dictionary(pa.int32(), pa.string())), ("timestamp", _TS),
    ("event_type", pa.dictionary(pa.int8(), pa.string())),
    ("page", pa.dictionary(pa.int16(), pa.string())),
    ("channel", pa.dictionary(pa.int8(), pa.string())),
])
TRUTH_SCHEMA = pa.schema([
    ("lead_id", pa.dictionary(pa.int32(), pa.string())), ("as_of", _TS), ("p_true", pa.float64()),
])


# --------------------------------------------------------------------------------------
# Settings from params / CLI options
# --------------------------------------------------------------------------------------
def settings_from_params(
    params: Any | None = None,
    *,
    leads: int | None = None,
    seed: int | None = None,
    start: str | dt.date | None = None,
    months: int | None = None,
    activity: float | None = None,
) -> SynthSettings:
    """SynthSettings from params.yaml (`generate`, `snapshots.ages_days`,
    `label.horizon_days`), overridden by the explicit options that are not None."""
    section: Mapping[str, Any] = dict(getattr(params, "generate", None) or {})
    for key in section:
        if key not in GENERATE_KEYS:
            raise ConfigError(
                f"params: unknown key `generate.{key}`. Known keys: {', '.join(GENERATE_KEYS)}."
            )
    snapshots = getattr(params, "snapshots", None) or {}
    label = getattr(params, "label", None) or {}
    fields = SynthSettings.__dataclass_fields__

    def pick(option: Any, key: str, name: str) -> Any:
        return option if option is not None else section.get(key, fields[name].default)

    kwargs: dict[str, Any] = {
        "n_leads": pick(leads, "leads", "n_leads"),
        "seed": pick(seed, "seed", "seed"),
        "start": _parse_date(pick(start, "start", "start")),
        "months": pick(months, "months", "months"),
        "activity_scale": pick(activity, "activity_scale", "activity_scale"),
        "snapshot_ages_days": tuple(
            snapshots.get("ages_days", fields["snapshot_ages_days"].default)
        ),
        "horizon_days": label.get("horizon_days", fields["horizon_days"].default),
    }
    return SynthSettings(**kwargs)


def _parse_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as err:
        raise ConfigError(
            f"`generate.start` must be a date like 2025-01-01; got {value!r}"
        ) from err


def main(
    params: Any | None = None,
    *,
    leads: int | None = None,
    seed: int | None = None,
    out: Path | None = None,
    start: str | None = None,
    months: int | None = None,
    activity: float | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """CLI entry (`leadprop generate`): settings from params and options, output folder
    `out` (default: `params.paths.raw`, else `data/raw`), chunks generated by `workers`
    processes (default: one per CPU). Returns :func:`run`'s summary."""
    settings = settings_from_params(
        params, leads=leads, seed=seed, start=start, months=months, activity=activity
    )
    if out is None:
        paths = getattr(params, "paths", None)
        out = Path(paths.raw) if paths is not None else Path("data/raw")
    return run(settings, Path(out), workers=workers)


# --------------------------------------------------------------------------------------
# Generation and writing
# --------------------------------------------------------------------------------------
def run(settings: SynthSettings, out_dir: Path, workers: int | None = 1) -> dict[str, Any]:
    """Generate the data set and write leads.csv, events.csv and truth.csv into `out_dir`.

    `workers`: 1 (default) generates in this process; n > 1 uses n `spawn`ed processes
    (a calling script needs the `if __name__ == "__main__":` guard); None = min(CPU count,
    chunks). The files are the same either way. Returns the counts: `leads`, `events`,
    `truth_rows`, `conversions`, `base_rate`, `lost`, `data_start`, `data_end`, `files`,
    `seconds`.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = settings.n_chunks
    if workers is None:
        workers = min(os.cpu_count() or 1, n_chunks)
    if workers < 1:
        raise ConfigError(f"`workers` must be >= 1; got {workers!r}")
    totals = {"leads": 0, "events": 0, "truth_rows": 0, "conversions": 0, "lost": 0}
    with ExitStack() as stack:
        paths = [stack.enter_context(atomic_path(out_dir / name))
                 for name in (LEADS_FILE, EVENTS_FILE, TRUTH_FILE)]
        # entered after the temp paths, so closed (flushed) before they are renamed into place
        writers = [
            stack.enter_context(pacsv.CSVWriter(str(path), schema))
            for path, schema in zip(paths, (LEADS_SCHEMA, EVENTS_SCHEMA, TRUTH_SCHEMA), strict=True)
        ]
        for index, (tables, counts) in enumerate(_chunk_results(settings, workers)):
            for writer, table in zip(writers, tables, strict=True):
                writer.write_table(table)
            for key in totals:
                totals[key] += counts[key]
            log.info("generate: chunk %d/%d written (%d leads, %d events)",
                     index + 1, n_chunks, counts["leads"], counts["events"])
    return {
        **totals,
        "base_rate": totals["conversions"] / totals["leads"],
        "data_start": settings.start.isoformat(),
        "data_end": settings.end.isoformat(),
        "files": [str(out_dir / name) for name in (LEADS_FILE, EVENTS_FILE, TRUTH_FILE)],
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _chunk_results(
    settings: SynthSettings, workers: int
) -> Iterator[tuple[tuple[pa.Table, pa.Table, pa.Table], dict[str, int]]]:
    """Each chunk's Arrow tables and counts, in chunk order; at most a few chunks in flight."""
    n_chunks = settings.n_chunks
    if workers == 1 or n_chunks == 1:
        for index in range(n_chunks):
            yield chunk_tables(settings, index)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future] = deque()
        next_index = 0
        while next_index < n_chunks or pending:
            while next_index < n_chunks and len(pending) < workers + 1:
                pending.append(pool.submit(chunk_tables, settings, next_index))
                next_index += 1
            yield pending.popleft().result()


def chunk_tables(
    settings: SynthSettings, index: int
) -> tuple[tuple[pa.Table, pa.Table, pa.Table], dict[str, int]]:
    """Generate chunk `index` and convert it to (leads, events, truth) Arrow tables."""
    chunk = synth.generate_chunk(settings, index)
    return to_tables(chunk, settings.start), {
        "leads": int(chunk.leads["lead_id"].size),
        "events": int(chunk.events["lead"].size),
        "truth_rows": int(chunk.truth["lead"].size),
        "conversions": int(chunk.leads["converted"].sum()),
        "lost": int((chunk.leads["lost_at"] >= 0).sum()),
    }


def to_tables(chunk: synth.SynthChunk, start: dt.date) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The chunk's rows as Arrow tables with the CSV schemas (timestamps from `start`)."""
    epoch = int((dt.datetime.combine(start, dt.time()) - dt.datetime(1970, 1, 1)).total_seconds())

    def stamps(seconds: np.ndarray) -> pa.Array:
        return pa.array(seconds + epoch, type=pa.int64(), mask=seconds < 0).cast(_TS)

    def coded(codes: np.ndarray, vocab: pa.Array, index_type: pa.DataType) -> pa.Array:
        indices = pa.array(codes, type=index_type, mask=codes < 0)
        return pa.DictionaryArray.from_arrays(indices, vocab)

    L = chunk.leads
    columns: dict[str, pa.Array] = {name: pa.array(L[name], type=pa.string())
                                    for name in _STRING_COLUMNS}
    columns["created_at"] = stamps(L["created_at"])
    columns["converted_at"] = stamps(L["converted_at"])
    columns["lost_at"] = stamps(L["lost_at"])
    columns["company_size"] = pa.array(L["company_size"], type=pa.int64(),
                                       mask=L["company_size"] < 0)
    columns["converted"] = pa.array(L["converted"], type=pa.int8())
    leads = pa.table([columns[f.name] for f in LEADS_SCHEMA], schema=LEADS_SCHEMA)

    ids = columns["lead_id"]
    E = chunk.events
    events = pa.table([
        coded(E["lead"], ids, pa.int32()),
        stamps(E["timestamp"]),
        coded(E["event_type"], _vocab(synth.EVENT_TYPES), pa.int8()),
        coded(E["page"], _vocab(synth.PAGES), pa.int16()),
        coded(E["channel"], _vocab(synth.CHANNELS), pa.int8()),
    ], schema=EVENTS_SCHEMA)
    T = chunk.truth
    truth = pa.table([
        coded(T["lead"], ids, pa.int32()),
        stamps(T["as_of"]),
        pa.array(T["p_true"], type=pa.float64()),
    ], schema=TRUTH_SCHEMA)
    return leads, events, truth


def _vocab(values: tuple[str, ...]) -> pa.Array:
    return pa.array(values, type=pa.string())
