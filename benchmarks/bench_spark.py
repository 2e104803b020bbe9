"""The Spark engine against the embedded one: the training feature build on 1M leads and
3M / 10M / 30M events (`make bench`, `python -m benchmarks.run --only spark`).

Per event count, each engine runs in a child process of its own on the same Parquet files
(contract-shaped random frames, `benchmarks.bench_features.random_frames`; the leads are the
same at every count, only the events grow):

- embedded: read the events, `data_end`, `training_spine`, `build_features`;
- spark (`local[2]` by default): `SparkMoments` for the data end, the spine on the driver,
  `build_features` per lead-hash bucket (`pipeline.spark.features.build_features_spark`).

Both time from the leads in memory to the training frame in memory (the events read
included). Memory is sampled every 0.2 s over the process tree (`psutil`): the driver's
Python process, the JVM, and the sum of the Python workers' RSS at each sample (their peak
sum; forked workers share pages, so the sum is an upper bound). Spark's partitions are
`max(32, events / --events-per-partition)` so that a Python worker holds about the same
number of events at every size. Work per event is the wall time per million events.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Events per Spark partition (= lead-hash bucket) by default, at least MIN_PARTITIONS.
EVENTS_PER_PARTITION = 1_000_000
MIN_PARTITIONS = 32
#: `spark.driver_memory` of the runs: Spark's default (1g); the buckets' leads and
#: features pass as files (`pipeline.spark.buckets.Exchange`), not through the JVM heap.
DRIVER_MEMORY: str | None = None


class TreeSampler:
    """Peak RSS (MB) of this process, of its JVM children and of the Python processes
    under them, sampled every `interval` seconds in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.peak = {"driver_python_mb": 0.0, "jvm_mb": 0.0, "workers_mb": 0.0, "workers": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        import psutil

        mb = 2.0 ** 20
        try:
            self._top("driver_python_mb", self.me.memory_info().rss / mb)
            jvm = workers = 0.0
            n = 0
            for child in self.me.children(recursive=True):
                try:
                    name = child.name()
                    rss = child.memory_info().rss / mb
                except psutil.Error:
                    continue
                if name == "java":
                    jvm += rss
                elif name.startswith("python"):
                    workers += rss
                    n += 1
            self._top("jvm_mb", jvm)
            self._top("workers_mb", workers)
            self.peak["workers"] = max(self.peak["workers"], n)
        except psutil.Error:
            pass

    def _top(self, key: str, value: float) -> None:
        self.peak[key] = max(self.peak[key], round(value, 1))


def frames(folder: Path, n_leads: int, n_events: int, seed: int = 0) -> Path:
    """`folder/<events>/leads.parquet` and `events.parquet` (generated once, reused)."""
    from benchmarks.bench_features import _frames

    _frames(n_leads, n_events, seed, str(folder))
    return folder / f"features_{n_leads}_{n_events}_{seed}"


def run_embedded(data: Path) -> dict[str, Any]:
    """The embedded feature build on `data`'s Parquet files (in this process)."""
    import pandas as pd

    from benchmarks.bench_features import _DEFAULT_FEATURES
    from features.build import build_features
    from features.settings import FeatureSettings, SnapshotSettings
    from features.snapshots import data_end, training_spine

    fs = FeatureSettings.from_params(_DEFAULT_FEATURES)
    leads = pd.read_parquet(data / "leads.parquet")
    with TreeSampler() as mem:
        t0 = time.perf_counter()
        events = pd.read_parquet(data / "events.parquet")
        t1 = time.perf_counter()
        spine = training_spine(leads, SnapshotSettings(), data_end(leads, events))
        frame = build_features(spine, leads, events, fs)
        t2 = time.perf_counter()
    return {"engine": "embedded", "events": int(len(events)), "snapshot_rows": int(len(frame)),
            "columns": int(frame.shape[1]), "wall_seconds": round(t2 - t0, 2),
            "read_seconds": round(t1 - t0, 2), **mem.peak}


def run_spark(data: Path, partitions: int, master: str,
              sample_leads: int | None = None) -> dict[str, Any]:
    """The Spark feature build on `data`'s Parquet files (driver in this process); with
    `sample_leads`, for the training sample of that many leads (`sample_spine`)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from benchmarks.bench_features import _DEFAULT_FEATURES
    from features.settings import FeatureSettings, SnapshotSettings
    from features.snapshots import data_end, sample_spine, training_spine
    from pipeline.spark.features import SparkMoments, build_features_spark
    from pipeline.spark.session import SparkSettings, spark_session

    fs = FeatureSettings.from_params(_DEFAULT_FEATURES)
    leads = pd.read_parquet(data / "leads.parquet")
    source = data / "events.parquet"
    with TreeSampler() as mem:
        t0 = time.perf_counter()
        spark = spark_session(SparkSettings(master=master, partitions=partitions,
                                            driver_memory=DRIVER_MEMORY))
        t1 = time.perf_counter()
        end = data_end(leads, event_moments=SparkMoments(spark, source))
        t2 = time.perf_counter()
        spine = training_spine(leads, SnapshotSettings(), end)
        if sample_leads:
            spine, _ = sample_spine(spine, sample_leads)
        frame, _ = build_features_spark(spark, spine, leads, source, fs, partitions)
        t3 = time.perf_counter()
        spark.stop()
    return {"engine": "spark", "master": master, "partitions": partitions,
            **({"sample_leads": sample_leads} if sample_leads else {}),
            "events": int(pq.ParquetFile(source).metadata.num_rows),
            "snapshot_rows": int(len(frame)), "columns": int(frame.shape[1]),
            "wall_seconds": round(t3 - t1, 2), "session_start_seconds": round(t1 - t0, 2),
            "data_end_seconds": round(t2 - t1, 2), **mem.peak}


def _child(engine: str, data: Path, partitions: int, master: str,
           sample_leads: int = 0) -> dict[str, Any]:
    """One engine on one data set in a fresh Python process (its own peak memory)."""
    code = ("import json, pathlib, sys; from benchmarks.bench_spark import run_embedded, "
            "run_spark; d = pathlib.Path(sys.argv[1]); "
            "r = run_embedded(d) if sys.argv[2] == 'embedded' else "
            "run_spark(d, int(sys.argv[3]), sys.argv[4], int(sys.argv[5]) or None); "
            "print(json.dumps(r))")
    proc = subprocess.run([sys.executable, "-c", code, str(data), engine, str(partitions),
                           master, str(sample_leads)], capture_output=True, text=True,
                          env=os.environ.copy())
    if proc.returncode != 0:
        return {"engine": engine, "error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(n_leads: int, event_counts: list[int], folder: Path, *, master: str = "local[2]",
          events_per_partition: int = EVENTS_PER_PARTITION,
          engines: tuple[str, ...] = ("embedded", "spark"),
          sample_leads: int = 0) -> dict[str, Any]:
    """Both engines at every event count, the Spark / embedded wall-time ratio, and the
    work per million events; with `sample_leads`, one more Spark row at the largest count
    building the training sample of that many leads (what the driver holds at scale)."""
    rows = []
    runs = [(n, e, 0) for n in event_counts for e in engines]
    if sample_leads and "spark" in engines:
        runs.append((max(event_counts), "spark", sample_leads))
    for n_events, engine, sample in runs:
        data = frames(folder, n_leads, n_events)
        partitions = max(MIN_PARTITIONS, -(-n_events // events_per_partition))
        print(f"spark bench: {engine} {n_leads:,} leads / {n_events:,} events"
              + (f", sample of {sample:,} leads" if sample else "") + " ...",
              file=sys.stderr, flush=True)
        row = _child(engine, data, partitions, master, sample)
        if "wall_seconds" in row:
            row["seconds_per_million_events"] = round(
                row["wall_seconds"] / (row["events"] / 1e6), 2)
        rows.append({"leads": n_leads, **row})
        print(json.dumps(rows[-1])[:400], file=sys.stderr, flush=True)
    ratios = {}
    for n_events in event_counts:
        by = {r["engine"]: r for r in rows if r.get("events") == n_events
              and "wall_seconds" in r and not r.get("sample_leads")}
        if {"embedded", "spark"} <= set(by):
            ratios[str(n_events)] = round(by["spark"]["wall_seconds"]
                                          / by["embedded"]["wall_seconds"], 2)
    return {"rows": rows, "spark_over_embedded_wall": ratios,
            "events_per_partition": events_per_partition}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, nargs="+",
                        default=[3_000_000, 10_000_000, 30_000_000])
    parser.add_argument("--folder", type=Path, default=Path("data/bench/spark"),
                        help="where the generated Parquet inputs are kept (git-ignored)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--events-per-partition", type=int, default=EVENTS_PER_PARTITION)
    parser.add_argument("--engines", nargs="+", default=["embedded", "spark"],
                        choices=["embedded", "spark"])
    parser.add_argument("--sample-leads", type=int, default=200_000,
                        help="one more Spark row at the largest event count for a training "
                             "sample of this many leads (0: none)")
    args = parser.parse_args(argv)
    result = bench(args.leads, args.events, args.folder, master=args.master,
                   events_per_partition=args.events_per_partition, engines=tuple(args.engines),
                   sample_leads=args.sample_leads)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
