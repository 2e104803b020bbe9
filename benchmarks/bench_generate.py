"""Speed and memory benchmark of the `generate` stage (the synthetic CRM export).

`bench(n_leads, seed, out_dir)` writes leads.csv, events.csv and truth.csv into `out_dir`
and returns the wall time, the peak resident memory of the whole process tree (this process
plus the chunk workers, sampled every 20 ms) and the rows written. The acceptance target is
1,000,000 leads at about 30 events per lead (`activity_scale` 0.5) in under 3 minutes with
under 4 GB peak RSS on 2 cores.

Worker processes are started with `spawn`: a script that calls `bench` must do so under
`if __name__ == "__main__":`.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.stages import generate as stage
from pipeline.synth import SynthSettings

#: Scales every event rate so the benchmark data has about 30 events per lead.
BENCH_ACTIVITY_SCALE = 0.5


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids.extend(int(k) for k in fh.read().split())
    except OSError:
        pass
    return kids


class _TreeRssSampler:
    """Peak of (own RSS + RSS of all descendants), sampled in a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_kb(self) -> int:
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += _rss_kb(pid)
            todo.extend(_children(pid))
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._tree_kb())
            self._stop.wait(self.interval)

    def __enter__(self) -> _TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._tree_kb())


def bench(
    n_leads: int,
    seed: int,
    out_dir: Path,
    *,
    activity_scale: float = BENCH_ACTIVITY_SCALE,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the generate stage once; returns `wall_seconds`, `peak_rss_mb` (process tree),
    `peak_rss_mb_main` / `peak_rss_mb_worker` (this process / the largest worker),
    `rows_written` (per file and `total`), `events_per_lead`, `cpu_count`, `workers`."""
    settings = SynthSettings(n_leads=n_leads, seed=seed, activity_scale=activity_scale)
    if workers is None:
        workers = min(os.cpu_count() or 1, settings.n_chunks)
    with _TreeRssSampler() as sampler:
        t0 = time.perf_counter()
        summary = stage.run(settings, Path(out_dir), workers=workers)
        wall = time.perf_counter() - t0
    rows = {"leads": summary["leads"], "events": summary["events"],
            "truth": summary["truth_rows"]}
    return {
        "n_leads": n_leads,
        "seed": seed,
        "activity_scale": activity_scale,
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
        "peak_rss_mb_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_worker": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "rows_written": {**rows, "total": sum(rows.values())},
        "events_per_lead": round(summary["events"] / n_leads, 1),
        "base_rate": round(summary["base_rate"], 4),
        "bytes_written": sum(Path(f).stat().st_size for f in summary["files"]),
    }


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(bench(n, 42, Path(tmp)), indent=2))
