"""Leads and their events grouped by lead-hash bucket on Spark, a pure function per bucket.

The one primitive of the Spark engine (`run_buckets`): the driver splits the leads table
into `n` buckets with `pipeline.streaming.bucket_of` (the embedded engine's buckets), Spark
reads the events (Parquet files or a catalog table), gives every event the bucket of its
`lead_id` with the same `bucket_of` (a pandas UDF), and `cogroup(...).applyInPandas` hands
each bucket's leads and all of its events to a Python function - the existing feature
builder or scoring core, never a re-implementation. One lead's events are in one group by
construction (the bucket is a function of the lead id).

Boundary: leads go to the workers, and results come back, as pickled pandas objects (exact
dtypes, `attrs`, categoricals); events cross Spark as Arrow and are cast back to the dtypes
of the source (`restore_dtypes`: strings, naive / tz-aware timestamps, nullable ints,
categoricals) and put back in their file order (a row number taken before the shuffle), so
a bucket sees exactly the rows the embedded engine would.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.streaming import bucket_of

BUCKET = "__bucket"
ROW = "__row"
TABLE_PREFIX = "table:"
#: Spark schema of every bucket's result: the bucket and its pickled pandas output.
RESULT_SCHEMA = "bucket long, payload binary"


def pack(obj: Any) -> bytes:
    """A pandas object (or a tuple of them) as bytes, dtypes and attrs included."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes | bytearray) -> Any:
    """The object `pack` wrote (our own driver's bytes, never a file)."""
    return pickle.loads(bytes(data))  # noqa: S301 - produced by this job's own workers


def is_table(source: str | Path) -> bool:
    """Does `source` name a catalog table (`table:db.events`) rather than a path?"""
    return str(source).startswith(TABLE_PREFIX)


def read_events(spark: Any, source: str | Path) -> tuple[Any, pd.DataFrame]:
    """(Spark DataFrame, empty pandas template with the source's dtypes) of an events
    source: a Parquet file or folder, or `table:<name>` (a table of the session's catalog,
    e.g. Delta or Hive). DataError when it does not exist or lacks lead_id."""
    if is_table(source):
        name = str(source)[len(TABLE_PREFIX):]
        if not spark.catalog.tableExists(name):
            raise DataError(f"{source}: no such table in the Spark session's catalog; "
                            "check the name (db.table) or pass a Parquet path", file=str(source))
        frame = spark.table(name)
        template = frame.limit(0).toPandas()
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: events file not found; run `leadprop ingest` first or "
                            "pass an existing Parquet path", file=str(path))
        import pyarrow.dataset as ds

        template = ds.dataset(str(path), format="parquet").schema.empty_table().to_pandas()
        frame = spark.read.parquet(str(path.resolve()))
    if "lead_id" not in frame.columns:
        raise DataError(f"{source}: no `lead_id` column (columns: {frame.columns[:8]}); the "
                        "events table must be the interim one `leadprop ingest` writes",
                        file=str(source), column="lead_id")
    return frame, template


def restore_dtypes(frame: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """`frame` (as Spark's Arrow conversion hands it over) with the template's columns,
    order and dtypes: timestamps as UTC instants in the template's unit and time zone (or
    naive), categoricals with the union of template and seen categories, nullable ints,
    strings."""
    out: dict[str, pd.Series] = {}
    for col, dtype in template.dtypes.items():
        values = frame[col]
        if isinstance(dtype, pd.DatetimeTZDtype):
            values = pd.to_datetime(values)
            if values.dt.tz is None:
                values = values.dt.tz_localize("UTC")
            values = values.dt.tz_convert(dtype.tz).astype(dtype)
        elif pd.api.types.is_datetime64_dtype(dtype):
            values = pd.to_datetime(values)
            if values.dt.tz is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            values = values.astype(dtype)
        elif isinstance(dtype, pd.CategoricalDtype):
            seen = pd.Index(values.dropna().unique())
            cats = pd.Index(dtype.categories).append(seen.difference(dtype.categories))
            values = values.astype(pd.CategoricalDtype(cats, ordered=dtype.ordered))
        elif values.dtype != dtype:
            values = values.astype(dtype)
        out[str(col)] = values.reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def lead_payloads(leads: pd.DataFrame, n_buckets: int, extra: Callable[[int], Any] | None = None
                  ) -> list[tuple[int, bytes]]:
    """(bucket, packed leads of that bucket [+ extra(bucket)]) for every non-empty bucket;
    each bucket's leads keep their input order and the table's attrs."""
    buckets = bucket_of(leads["lead_id"], n_buckets)
    out = []
    for b in np.unique(buckets):
        part = leads.loc[buckets == b]
        part.attrs = dict(leads.attrs)
        out.append((int(b), pack((part, extra(int(b)) if extra else None))))
    return out


def run_buckets(
    spark: Any,
    leads: pd.DataFrame,
    events_source: str | Path | None,
    n_buckets: int,
    fn: Callable[[pd.DataFrame, pd.DataFrame | None, Any], Any],
    extra: Callable[[int], Any] | None = None,
) -> list[Any]:
    """`fn(bucket_leads, bucket_events, extra)` for every bucket of leads, on Spark; the
    results in bucket order. `bucket_events` holds every event of those leads (typed like
    the source, in file order), an empty frame of that type when they have none, and None
    without an events source."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    payloads = lead_payloads(leads, n_buckets, extra)
    left = spark.createDataFrame(payloads, "bucket long, leads binary").repartition(
        n_buckets, "bucket")
    if events_source is None:
        def alone(pdf: pd.DataFrame) -> pd.DataFrame:
            return _results(pdf, None, None, fn)

        rows = left.groupBy("bucket").applyInPandas(alone, RESULT_SCHEMA).collect()
        return _ordered(rows)

    events, template = read_events(spark, events_source)
    n = int(n_buckets)

    @pandas_udf("long")
    def bucket_udf(ids: pd.Series) -> pd.Series:
        return pd.Series(bucket_of(ids, n))

    right = (events.withColumn(ROW, F.monotonically_increasing_id())
             .withColumn("bucket", bucket_udf(F.col("lead_id"))))

    def together(lp: pd.DataFrame, ev: pd.DataFrame) -> pd.DataFrame:
        return _results(lp, ev, template, fn)

    rows = (left.groupBy("bucket").cogroup(right.groupBy("bucket"))
            .applyInPandas(together, RESULT_SCHEMA).collect())
    return _ordered(rows)


def _results(lp: pd.DataFrame, ev: pd.DataFrame | None, template: pd.DataFrame | None,
             fn: Callable[..., Any]) -> pd.DataFrame:
    """One group: unpack its leads, type its events, call `fn`, pack the result."""
    if lp.empty:  # events of leads that are not in the table: nothing to build
        return pd.DataFrame({"bucket": pd.Series(dtype="int64"), "payload": pd.Series(
            dtype="object")})
    bucket = int(lp["bucket"].iloc[0])
    part, extra = unpack(lp["leads"].iloc[0])
    events = None
    if template is not None:
        ev = ev.sort_values(ROW, kind="stable") if len(ev) else ev
        events = restore_dtypes(ev, template)
    return pd.DataFrame({"bucket": [bucket], "payload": [pack(fn(part, events, extra))]})


def _ordered(rows: Iterable[Any]) -> list[Any]:
    return [unpack(r["payload"]) for r in sorted(rows, key=lambda r: r["bucket"])]
