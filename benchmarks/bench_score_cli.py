"""Benchmark of the command a user runs: `leadprop score --leads FILE --events FILE`.

On files, in a child process: the synthetic export (`leadprop generate`, 1M leads with the
generator's default activity, about 54M events) is generated once into a cache folder
(default `data/bench`, git-ignored) and reused; smaller event files for the sweep are the
first N rows of the events file (same leads, fewer events), so memory can be compared
across event counts at a fixed number of leads. The model is a stand-in bundle
(`benchmarks.bench_score.stand_in_model`) trained on a separate 20,000-lead export and
registered in a benchmark MLflow store in the cache folder.

Each run is `leadprop score` as a subprocess; wall time, and peak RSS of the child's
process tree (its own `ru_maxrss` from wait4, and the sum over the tree sampled every
50 ms, whichever is larger).

`python -m benchmarks.bench_score_cli --leads 1000000 --events 3000000 10000000 30000000 all`
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

import yaml

from benchmarks.bench_generate import _children, _rss_kb

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL_NAME = "bench-lead-propensity"
TRAIN_LEADS = 20_000


def _leadprop(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:
    cmd = [str(BIN / "leadprop"), *args]
    with open(log, "w") if log else open(os.devnull, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")


def export(cache: Path, n_leads: int, seed: int = 42) -> Path:
    """The generated export folder for `n_leads` (generated once)."""
    folder = cache / f"gen-{n_leads}-seed{seed}"
    if not (folder / "events.csv").is_file() or not (folder / ".done").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _leadprop("generate", "--leads", str(n_leads), "--seed", str(seed), "--out",
                  str(folder), log=cache / f"generate-{n_leads}.log")
        (folder / ".done").write_text("ok\n")
    return folder


def events_head(folder: Path, n_events: int) -> tuple[Path, int]:
    """The first `n_events` rows of the export's events (the whole file when larger)."""
    src = folder / "events.csv"
    out = folder / f"events-head-{n_events}.csv"
    if out.is_file():
        return out, n_events
    tmp = out.with_suffix(".tmp")
    n = -1
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        for n, line in enumerate(fin):  # noqa: B007 - n is the count below
            if n > n_events:
                break
            fout.write(line)
    if n <= n_events:  # the file holds fewer events: use it whole
        tmp.unlink()
        return src, n
    tmp.rename(out)
    return out, n_events


def bench_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cache.resolve()}/mlflow.db",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def bench_params(cache: Path) -> Path:
    """The project's params.yaml with the bench model and CSV + Parquet outputs."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw.setdefault("score", {})
    raw["score"].update({"model": f"models:/{MODEL_NAME}@champion", "formats": ["csv", "parquet"],
                         "history": False})
    path = cache / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def model(cache: Path, params: Path) -> str:
    """Register the stand-in model in the bench store once; returns its URI."""
    uri = f"models:/{MODEL_NAME}@champion"
    marker = cache / "model.done"
    if marker.is_file():
        return uri
    code = f"""
import joblib, pandas as pd
from pathlib import Path
from benchmarks.bench_score import stand_in_model
from features.settings import FeatureSettings
from pipeline import tracking
from pipeline.contract import CONTRACT_VERSION, validate_events, validate_leads
from pipeline.pyfunc_model import input_contract
from pipeline.readers import read_table
from pipeline.settings import load_params
p = load_params({str(params)!r})
fs = FeatureSettings.from_params(p.features)
folder = Path({str(export(cache, TRAIN_LEADS, seed=7))!r})
leads, _ = validate_leads(read_table(folder / "leads.csv"), "leads.csv")
events, _ = validate_events(read_table(folder / "events.csv"), leads, "events.csv",
                            now=pd.Timestamp("2100-01-01"))
bundle = stand_in_model(leads, events, fs, n_train=len(leads))
bundle.metadata["input_contract"] = input_contract(
    leads, events, source="synthetic", source_hash="none", features=p.features,
    ingest=p.ingest, contract_version=CONTRACT_VERSION)
path = Path({str(cache)!r}) / "bundle.joblib"
joblib.dump(bundle, path)
tracking.configure()
ml = tracking.mlflow()
ml.set_experiment("bench")
with ml.start_run():
    info = tracking.log_bundle_model(path, registered_model_name={MODEL_NAME!r})
ml.MlflowClient().set_registered_model_alias({MODEL_NAME!r}, "champion",
                                              str(info.registered_model_version))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=bench_env(cache), cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"training the stand-in model failed:\n{proc.stderr[-3000:]}")
    marker.write_text(uri + "\n")
    return uri


class _ChildTreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self._halt = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total, todo = 0, [self.pid]
            while todo:
                p = todo.pop()
                total += _rss_kb(p)
                todo.extend(_children(p))
            self.peak_kb = max(self.peak_kb, total)
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_score(cache: Path, params: Path, leads: Path, events: Path, as_of: str,
              extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`leadprop score` on the files; wall seconds, peak RSS (MB), exit code, summary."""
    out = cache / "out" / events.stem / "scored"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "leadprop"), "score", "--params", str(params), "--leads", str(leads),
           "--events", str(events), "--as-of", as_of, "--out", str(out),
           "--scored-at", "2026-12-03 00:00:00", *extra]
    log = out.parent / "score.log"
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=bench_env(cache),
                                cwd=ROOT)
        sampler = _ChildTreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = max(usage.ru_maxrss / 1024, sampler.peak_kb / 1024)
    result: dict[str, Any] = {
        "command": " ".join(["leadprop", *cmd[1:]]),
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "log": str(log),
    }
    if proc.returncode != 0:
        result["error"] = log.read_text()[-1500:]
    return result


def bench(cache: Path, n_leads: int, sweep: list[int | None], as_of: str = "2026-07-01",
          extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Score the 1M-lead export with the first N events for each N in `sweep` (None: all)."""
    cache.mkdir(parents=True, exist_ok=True)
    params = bench_params(cache)
    folder = export(cache, n_leads)
    uri = model(cache, params)
    runs = []
    for n in sweep:
        events, n_events = (folder / "events.csv", None) if n is None else events_head(folder, n)
        if n_events is None:
            with open(events, "rb") as fh:
                n_events = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 24), b"")) - 1
        print(f"score: {n_leads:,} leads / {n_events:,} events ...", file=sys.stderr, flush=True)
        r = run_score(cache, params, folder / "leads.csv", events, as_of, extra)
        r.update({"leads": n_leads, "events": n_events})
        summary = cache / "out" / events.stem / "scored.parquet"
        if r["exit_code"] == 0 and summary.is_file():
            import pyarrow.parquet as pq

            r["scored"] = pq.ParquetFile(summary).metadata.num_rows
        print(json.dumps(r), file=sys.stderr, flush=True)
        runs.append(r)
    return {"model": uri, "as_of": as_of, "chunk_events": yaml.safe_load(params.read_text())
            ["score"].get("chunk_events"), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", nargs="+", default=["3000000", "10000000", "30000000", "all"],
                        help="event counts to score (first N rows of the events file; 'all')")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--as-of", default="2026-07-01")
    args = parser.parse_args(argv)
    sweep = [None if e == "all" else int(e) for e in args.events]
    json.dump(bench(args.cache, args.leads, sweep, args.as_of), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
