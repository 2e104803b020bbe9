"""`make bench`: every benchmark in its own process (so peak memory is its own), results and
the machine they ran on in `reports/bench.json`.

- generate: `leadprop generate` of 1M leads (~30M events at activity 0.5), wall time and
  peak RSS of the process tree; target < 180 s, < 4 GB.
- features: training feature build on 1M leads / 30M events (4 snapshot ages);
  target < 60 s, < 6 GB.
- score: `leadprop score --leads leads.csv --events events.csv` as a user runs it, in a
  child process, on the generator's 1M-lead export (about 54M events; generated once into
  `data/bench`, git-ignored) and on its first 3M / 10M / 30M events (memory vs events);
  wall time and peak RSS of the child's process tree; target < 6 GB at 54M events
  (`benchmarks.bench_score_cli`).
- score_core: the scoring core alone on in-memory frames (model + reasons leads/s;
  target >= 100,000 leads/s); only with `--only score_core`.
- bands: bands in weekly use (`benchmarks.bench_bands`): fitted on the default synthetic
  sample, a later sample scored week by week; the SQL capacity band's new entries per week
  (target: within 20 % of the capacity) and every min_conversion band's Wilson 95 % lower
  bound in the labelled batches (target: >= its promise). Its own sample size (params.yaml).
- spark: the training feature build on the Spark engine (`local[2]`) against the embedded
  one at 1M leads and 3M / 10M / 30M events (`benchmarks.bench_spark`): wall time (target:
  Spark within 3x the embedded), driver / JVM / worker peak RSS (target: driver flat as
  events grow), seconds per million events. Needs Java >= 17 (skipped without it).

`python -m benchmarks.run --leads 100000 --events 3000000` runs a smaller version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _json_tail(stdout: str) -> dict:
    start = stdout.index("{")
    return json.loads(stdout[start:])


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return _json_tail(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="leadprop benchmarks -> reports/bench.json")
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=30_000_000)
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    parser.add_argument("--only", choices=("generate", "features", "score", "score_core",
                                           "bands", "spark"),
                        action="append")
    parser.add_argument("--score-events", nargs="+",
                        default=["3000000", "10000000", "30000000", "all"],
                        help="event counts of the score benchmark ('all': the whole export)")
    parser.add_argument("--spark-events", nargs="+", type=int,
                        default=[3_000_000, 10_000_000, 30_000_000],
                        help="event counts of the spark benchmark")
    args = parser.parse_args(argv)
    which = args.only or ["generate", "features", "score", "bands", "spark"]
    results: dict = {"machine": machine(), "leads": args.leads, "events": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        if "generate" in which:
            print(f"generate: {args.leads:,} leads ...", flush=True)
            results["generate"] = _run(
                "import json, pathlib;"
                "from benchmarks.bench_generate import bench;"
                f"print(json.dumps(bench({args.leads}, 42, pathlib.Path({tmp!r}) / 'gen')))"
            )
        if "features" in which:
            print(f"features: {args.leads:,} leads / {args.events:,} events ...", flush=True)
            results["features"] = _run(
                "from benchmarks.bench_features import main;"
                f"main(['--leads', '{args.leads}', '--events', '{args.events}'])"
            )
        if "score" in which:
            print(f"score (the CLI on files): {args.leads:,} leads ...", flush=True)
            results["score"] = _run(
                "from benchmarks.bench_score_cli import main;"
                f"main(['--leads', '{args.leads}', '--events', *{args.score_events!r}])"
            )
        if "score_core" in which:
            print(f"score_core: {args.leads:,} leads / {args.events:,} events ...", flush=True)
            results["score_core"] = _run(
                "from benchmarks.bench_score import main;"
                f"main(['--leads', '{args.leads}', '--events', '{args.events}'])"
            )
        if "bands" in which:
            print("bands: weekly capacity and promises on a later sample ...", flush=True)
            results["bands"] = _run(
                "import json, pathlib, tempfile;"
                "from benchmarks.bench_bands import bench;"
                "tmp = tempfile.mkdtemp(dir=" + repr(tmp) + ");"
                "print(json.dumps(bench(pathlib.Path(tmp)), default=float))"
            )
        if "spark" in which:
            from pipeline.spark.session import MIN_JAVA, java_version

            if (java_version() or 0) < MIN_JAVA:
                results["spark"] = {"skipped": f"no Java >= {MIN_JAVA} (see make check-java)"}
            else:
                print(f"spark: {args.leads:,} leads / {args.spark_events} events ...",
                      flush=True)
                results["spark"] = _run(
                    "from benchmarks.bench_spark import main;"
                    f"main(['--leads', '{args.leads}', '--events', "
                    f"*{[str(n) for n in args.spark_events]!r}])")
    if args.only and args.out.exists():  # a partial run keeps the other results
        old = json.loads(args.out.read_text(encoding="utf-8"))
        results = {**old, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
