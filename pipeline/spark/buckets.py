"""Leads and their events grouped by lead-hash bucket on Spark, a pure function per bucket.

The one primitive of the Spark engine (`run_buckets`): the driver splits the leads table
into `n` buckets with `pipeline.streaming.bucket_of` (the embedded engine's buckets), Spark
reads the events (Parquet files or a catalog table), gives every event the bucket of its
`lead_id` with the same `bucket_of` (a pandas UDF), and `cogroup(...).applyInPandas` hands
each bucket's leads and all of its events to a Python function - the existing feature
builder or scoring core, never a re-implementation. One lead's events are in one group by
construction (the bucket is a function of the lead id).

Boundary: leads go to the workers, and results come back, as pickled pandas objects (exact
dtypes, `attrs`, categoricals) in files of an exchange folder (`Exchange`); only their paths
cross Spark, so neither the JVM heap nor the driver ever holds every bucket's bytes at once
(the driver reads the results back one bucket at a time). In local mode the folder is a
temporary one; on a cluster it is `spark.leadprop.exchangeDir` (params `spark.exchange_dir`),
a folder or URL the driver and every executor can reach (a DBFS / NFS path, `s3://...`
through fsspec). Events cross Spark as Arrow and are cast back to the dtypes of the source
(`restore_dtypes`: strings, naive / tz-aware timestamps, nullable ints, categoricals) and
put back in their file order (a row number taken before the shuffle), so a bucket sees
exactly the rows the embedded engine would.
"""

from __future__ import annotations

import pickle
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, DataError
from pipeline.streaming import bucket_of

BUCKET = "__bucket"
ROW = "__row"
TABLE_PREFIX = "table:"
#: Spark schema of every bucket's result: the bucket and the file of its pickled output.
RESULT_SCHEMA = "bucket long, path string"
#: Spark conf key of the exchange folder (`SparkSettings.exchange_dir` sets it).
EXCHANGE_CONF = "spark.leadprop.exchangeDir"


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


class Exchange:
    """A fresh folder (local path or fsspec URL) for one `run_buckets` call: the driver
    writes each bucket's leads there, the workers their results; removed afterwards."""

    def __init__(self, spark: Any) -> None:
        import fsspec

        base = spark.conf.get(EXCHANGE_CONF, None) or None
        if base is None:
            if not spark.sparkContext.master.startswith("local"):
                raise ConfigError(
                    f"the Spark engine on a cluster (master {spark.sparkContext.master}) "
                    "needs `spark.exchange_dir` in params (or the Spark conf "
                    f"`{EXCHANGE_CONF}`): a folder or URL that the driver and every "
                    "executor can read and write, e.g. /dbfs/tmp/leadprop or s3://bucket/tmp")
            self.root = tempfile.mkdtemp(prefix="leadprop-spark-")
        else:
            self.root = f"{str(base).rstrip('/')}/leadprop-{uuid.uuid4().hex}"
        self.fs, self.path = fsspec.core.url_to_fs(self.root)
        self.fs.makedirs(self.path, exist_ok=True)

    def file(self, kind: str, bucket: int) -> str:
        return f"{self.root}/{kind}-{bucket:06d}.pkl"

    def close(self) -> None:
        self.fs.rm(self.path, recursive=True)


def save(obj: Any, url: str) -> str:
    """`pack(obj)` written to `url` (a path or fsspec URL); returns `url`."""
    import fsspec

    with fsspec.open(url, "wb") as f:
        f.write(pack(obj))
    return url


def load(url: str) -> Any:
    """The object `save` wrote to `url` (this job's own exchange folder)."""
    import fsspec

    with fsspec.open(url, "rb") as f:
        return unpack(f.read())


def lead_files(leads: pd.DataFrame, n_buckets: int, exchange: Exchange,
               extra: Callable[[int], Any] | None = None) -> list[tuple[int, str]]:
    """(bucket, file of that bucket's leads [+ extra(bucket)]) for every non-empty bucket;
    each bucket's leads keep their input order and the table's attrs."""
    buckets = bucket_of(leads["lead_id"], n_buckets)
    out = []
    for b in np.unique(buckets):
        part = leads.loc[buckets == b]
        part.attrs = dict(leads.attrs)
        out.append((int(b), save((part, extra(int(b)) if extra else None),
                                 exchange.file("leads", int(b)))))
    return out


def run_buckets(
    spark: Any,
    leads: pd.DataFrame,
    events_source: str | Path | None,
    n_buckets: int,
    fn: Callable[[pd.DataFrame, pd.DataFrame | None, Any], Any],
    extra: Callable[[int], Any] | None = None,
) -> Iterator[Any]:
    """`fn(bucket_leads, bucket_events, extra)` for every bucket of leads, on Spark; the
    results in bucket order, read back one at a time as the caller iterates. `bucket_events`
    holds every event of those leads (typed like the source, in file order), an empty frame
    of that type when they have none, and None without an events source. All buckets run
    before the first result is yielded; the exchange folder is removed when the iteration
    ends."""
    exchange = Exchange(spark)
    try:
        rows = _run(spark, lead_files(leads, n_buckets, exchange, extra), events_source,
                    n_buckets, fn, exchange)
        for _, path in rows:
            yield load(path)
    finally:
        exchange.close()


def _run(spark: Any, files: list[tuple[int, str]], events_source: str | Path | None,
         n_buckets: int, fn: Callable[..., Any], exchange: Exchange) -> list[tuple[int, str]]:
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    left = spark.createDataFrame(files, "bucket long, leads string").repartition(
        n_buckets, "bucket")
    out = exchange.file

    if events_source is None:
        def alone(pdf: pd.DataFrame) -> pd.DataFrame:
            return _results(pdf, None, None, fn, out)

        rows = left.groupBy("bucket").applyInPandas(alone, RESULT_SCHEMA).collect()
    else:
        events, template = read_events(spark, events_source)
        n = int(n_buckets)

        @pandas_udf("long")
        def bucket_udf(ids: pd.Series) -> pd.Series:
            return pd.Series(bucket_of(ids, n))

        right = (events.withColumn(ROW, F.monotonically_increasing_id())
                 .withColumn("bucket", bucket_udf(F.col("lead_id"))))

        def together(lp: pd.DataFrame, ev: pd.DataFrame) -> pd.DataFrame:
            return _results(lp, ev, template, fn, out)

        rows = (left.groupBy("bucket").cogroup(right.groupBy("bucket"))
                .applyInPandas(together, RESULT_SCHEMA).collect())
    return sorted(((int(r["bucket"]), r["path"]) for r in rows), key=lambda r: r[0])


def _results(lp: pd.DataFrame, ev: pd.DataFrame | None, template: pd.DataFrame | None,
             fn: Callable[..., Any], out: Callable[[str, int], str]) -> pd.DataFrame:
    """One group: load its leads, type its events, call `fn`, save the result."""
    if lp.empty:  # events of leads that are not in the table: nothing to build
        return pd.DataFrame({"bucket": pd.Series(dtype="int64"), "path": pd.Series(
            dtype="object")})
    bucket = int(lp["bucket"].iloc[0])
    part, extra = load(lp["leads"].iloc[0])
    events = None
    if template is not None:
        ev = ev.sort_values(ROW, kind="stable") if len(ev) else ev
        events = restore_dtypes(ev, template)
    path = save(fn(part, events, extra), out("result", bucket))
    return pd.DataFrame({"bucket": [bucket], "path": [path]})
