"""Atomic units: ingest's tables are written together behind a manifest that the next stages
check; temp files are named so git/DVC skip them, removed on failure and cleaned after a
kill; stale RUNNING MLflow runs are closed; file hashes are by content."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io, tracking
from pipeline.errors import DataError
from pipeline.stages import features as features_stage
from pipeline.stages import ingest
from pipeline.stages import score as score_stage

ROOT = Path(__file__).parents[2]
NOW = pd.Timestamp("2026-01-01")


def export(folder: Path, n: int = 12, event_type: str = "site_visit") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    leads = folder / "leads.csv"
    leads.write_text("lead_id,created_at,converted,converted_at\n" + "".join(
        f"L{i:02d},2025-01-{1 + i % 28:02d},{i % 2},\n" for i in range(1, n + 1)),
        encoding="utf-8")
    events = folder / "events.csv"
    events.write_text("lead_id,timestamp,event_type\n" + "".join(
        f"L{i:02d},2025-02-{1 + i % 28:02d} 10:00:00,{event_type}\n" for i in range(1, n + 1)),
        encoding="utf-8")
    return leads, events


def run_ingest(tmp_path: Path, leads: Path, events: Path) -> None:
    ingest.run(leads, events, tmp_path / "interim", tmp_path / "reports", now=NOW)


# ------------------------------------------------------------------------- manifest


def test_ingest_writes_a_manifest_of_every_file(tmp_path: Path) -> None:
    run_ingest(tmp_path, *export(tmp_path / "raw"))
    manifest = json.loads((tmp_path / "interim" / io.MANIFEST_FILE).read_text())["files"]
    assert sorted(manifest) == ["../reports/data_quality.json", "events.parquet",
                                "leads.parquet", "rejects_events.csv", "rejects_leads.csv"]
    assert manifest["leads.parquet"] == io.sha256_file(tmp_path / "interim" / "leads.parquet")
    io.check_manifest(tmp_path / "interim")  # consistent: no error


def test_a_torn_pair_stops_features_and_score(tmp_path: Path) -> None:
    """New leads with the old events (what a kill between two renames leaves) is refused."""
    run_ingest(tmp_path, *export(tmp_path / "raw"))
    old_events = (tmp_path / "interim" / "events.parquet").read_bytes()
    run_ingest(tmp_path, *export(tmp_path / "raw2", n=14, event_type="blog_read"))
    (tmp_path / "interim" / "events.parquet").write_bytes(old_events)
    with pytest.raises(DataError, match=r"events\.parquet does not match .*manifest\.json.*"
                       r"Run `leadprop ingest` again") as err:
        features_stage.read_interim(tmp_path / "interim")
    assert err.value.file.endswith("events.parquet")
    with pytest.raises(DataError, match=r"events\.parquet does not match"):
        score_stage.read_interim(tmp_path / "interim" / "leads.parquet",
                                 tmp_path / "interim" / "events.parquet",
                                 ingest.ReadOptions(), NOW)


def test_a_failed_write_leaves_the_old_files_and_no_temp(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.write_group([(a, lambda tmp: tmp.write_text("new a")), (b, boom)],
                       manifest=tmp_path / io.MANIFEST_FILE)
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


# ------------------------------------------------------------------------ temp files


def test_temp_files_are_named_for_gitignore_and_dvcignore(tmp_path: Path) -> None:
    seen = []
    with io.atomic_path(tmp_path / "leads.parquet") as tmp:
        seen.append(tmp.name)
    name = seen[0]
    assert name.startswith(f".leads.parquet.{os.getpid()}.") and name.endswith(io.TEMP_SUFFIX)
    for ignore in (".gitignore", ".dvcignore"):
        patterns = [line.strip() for line in (ROOT / ignore).read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        assert any(fnmatch.fnmatch(name, p) for p in patterns), ignore


def test_stale_temps_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".leads.parquet.{dead}.abcd1234{io.TEMP_SUFFIX}"
    live = tmp_path / f".leads.parquet.{os.getppid()}.efgh5678{io.TEMP_SUFFIX}"
    other = tmp_path / f".events.parquet.{dead}.ijkl9012{io.TEMP_SUFFIX}"
    for p in (stale, live, other):
        p.write_text("left by a kill")
    io.write_parquet(tmp_path / "leads.parquet", pd.DataFrame({"a": [1]}))
    assert not stale.exists()          # same target, process gone: removed
    assert live.exists()               # a live process may still be writing it
    assert other.exists()              # another target: its own next write cleans it
    assert io.clean_stale_temps(tmp_path) == [other]


# ------------------------------------------------------------------------- hashes


def test_file_hash_is_by_content_not_name(tmp_path: Path) -> None:
    a = tmp_path / "leads.csv"
    a.write_text("lead_id\nL1\n")
    b = tmp_path / "copy of leads (2).csv"
    b.write_bytes(a.read_bytes())
    assert tracking.file_hash([a]) == tracking.file_hash([b])
    c = tmp_path / "other.csv"
    c.write_text("lead_id\nL2\n")
    assert tracking.file_hash([a]) != tracking.file_hash([c])
    # bytes moved between two files are a different input
    x, y = tmp_path / "x", tmp_path / "y"
    x.write_text("ab")
    y.write_text("c")
    x2, y2 = tmp_path / "x2", tmp_path / "y2"
    x2.write_text("a")
    y2.write_text("bc")
    assert tracking.file_hash([x, y]) != tracking.file_hash([x2, y2])


# -------------------------------------------------------------------- MLflow runs

_RUN_SCRIPT = """
import os, sys
from pipeline import io, tracking
io.terminate_on_sigterm()
tracking.configure()
with tracking.start_run("kill-test", run_name="victim") as run:
    print(run.info.run_id, flush=True)
    with io.atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half")
        io.kill_point("test.inside")
"""


def _victim(tmp_path: Path, db: str, signal_name: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": db,
           "PYTHONPATH": str(ROOT), io.KILL_AT_VARIABLE: "test.inside",
           io.KILL_SIGNAL_VARIABLE: signal_name}
    done = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(tmp_path / "out.txt")],
                          env=env, capture_output=True, text=True, timeout=120)
    return done, done.stdout.split()[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (creating a sqlite store takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture()
def store(db: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    tracking.configure()
    return tracking.mlflow().MlflowClient()


def test_a_killed_run_is_closed_failed_by_the_next_stage(tmp_path: Path, db: str,
                                                         store) -> None:
    done, run_id = _victim(tmp_path, db, "KILL")
    assert done.returncode == -9, done.stderr
    assert store.get_run(run_id).info.status == "RUNNING"       # what SIGKILL leaves
    assert list(tmp_path.glob(f".out.txt.*{io.TEMP_SUFFIX}"))   # ...and a temp file
    with tracking.start_run("kill-test", run_name="next") as run:
        nxt = run.info.run_id
    closed = store.get_run(run_id)
    assert closed.info.status == "FAILED"
    assert "ended without closing the run" in closed.data.tags[tracking.CLOSED_TAG]
    assert store.get_run(nxt).info.status == "FINISHED"


def test_a_live_processes_run_is_left_running(tmp_path: Path, store) -> None:
    exp = store.create_experiment("live-test")
    run = store.create_run(exp, tags={tracking.PID_TAG: str(os.getppid()),
                                      tracking.HOST_TAG: __import__("socket").gethostname()})
    untagged = store.create_run(exp)
    assert tracking.close_stale_runs(exp) == []
    assert store.get_run(run.info.run_id).info.status == "RUNNING"
    assert store.get_run(untagged.info.run_id).info.status == "RUNNING"


def test_sigterm_ends_the_run_failed_and_removes_temps(tmp_path: Path, db: str,
                                                        store) -> None:
    done, run_id = _victim(tmp_path, db, "TERM")
    assert done.returncode == 143, done.stderr
    assert store.get_run(run_id).info.status == "FAILED"
    assert not list(tmp_path.glob(f".out.txt.*{io.TEMP_SUFFIX}"))
    assert not (tmp_path / "out.txt").exists()
