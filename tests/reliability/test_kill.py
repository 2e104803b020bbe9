"""Kill tests: a stage killed at a controlled point (the `LEADPROP_KILL_AT` hook of
`pipeline.io.kill_point`) leaves a state the next stage refuses or the next run repairs.
Tiny data, subprocesses, no DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import io, scoring_io
from pipeline.errors import DataError
from pipeline.stages import features as features_stage

ROOT = Path(__file__).parents[2]


def _project(tmp_path: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["ingest"]["now"] = "2026-01-01"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False),
                                          encoding="utf-8")
    return tmp_path


def _export(root: Path, n: int, event_type: str) -> None:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "leads.csv").write_text("lead_id,created_at,converted,converted_at\n" + "".join(
        f"L{i:02d},2025-01-{1 + i % 28:02d},{i % 2},\n" for i in range(1, n + 1)),
        encoding="utf-8")
    (raw / "events.csv").write_text("lead_id,timestamp,event_type\n" + "".join(
        f"L{i:02d},2025-02-{1 + i % 28:02d} 10:00:00,{event_type}\n" for i in range(1, n + 1)),
        encoding="utf-8")


def _ingest(root: Path, kill_at: str | None = None, signal: str = "KILL"
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(io.KILL_AT_VARIABLE, None)
    if kill_at:
        env[io.KILL_AT_VARIABLE], env[io.KILL_SIGNAL_VARIABLE] = kill_at, signal
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", "--params",
                           "params.yaml"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def _temps(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{io.TEMP_SUFFIX}"))


@pytest.mark.parametrize("signal", ["KILL", "TERM"])
def test_ingest_killed_between_renames_is_refused_then_recovers(tmp_path: Path,
                                                                signal: str) -> None:
    root = _project(tmp_path)
    _export(root, 10, "site_visit")
    first = _ingest(root)
    assert first.returncode == 0, first.stderr
    interim = root / "data" / "interim"
    old_events = (interim / "events.parquet").read_bytes()

    _export(root, 14, "blog_read")
    killed = _ingest(root, "ingest.rename", signal)  # after leads.parquet, before the rest
    assert killed.returncode == (-9 if signal == "KILL" else 143), killed.stderr
    assert len(pd.read_parquet(interim / "leads.parquet")) == 14      # new leads...
    assert (interim / "events.parquet").read_bytes() == old_events     # ...old events
    with pytest.raises(DataError, match=r"do(es)? not match .*manifest\.json"):
        features_stage.read_interim(interim)
    if signal == "KILL":
        assert _temps(root), "SIGKILL leaves the unrenamed temp files behind"
    else:
        assert _temps(root) == [], "SIGTERM removes them"

    again = _ingest(root)
    assert again.returncode == 0, again.stderr
    assert _temps(root) == []
    leads, events = features_stage.read_interim(interim)
    assert (len(leads), set(events["event_type"])) == (14, {"blog_read"})


def test_ingest_killed_before_the_manifest_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _export(root, 10, "site_visit")
    assert _ingest(root).returncode == 0
    _export(root, 12, "blog_read")
    assert _ingest(root, "ingest.manifest").returncode == -9
    with pytest.raises(DataError, match="Run `leadprop ingest` again"):
        features_stage.read_interim(root / "data" / "interim")


# ----------------------------------------------------------------- score batch + SQL

_SCORE_SCRIPT = """
import sys
import pandas as pd
from pipeline import scoring_io as sio
paths = sio.output_paths(sys.argv[1])
target = sio.SqlTarget(sys.argv[2]) if sys.argv[2] != "none" else None
batch = sys.argv[3]
n = int(sys.argv[4])
frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "as_of": pd.Timestamp(sys.argv[5]),
                      "propensity": 0.5, "batch_id": batch})
key = sio.BatchKey("synthetic", pd.Timestamp(sys.argv[5]), batch)
with sio.engine_for(target) as engine:
    sio.recover_interrupted(paths, engine, target)
    append = (lambda: sio.append_batch(engine, target.table, frame, batch, key)) if target \
        else None
    sio.write_batch_files(paths, frame, frame.iloc[:0], frame.iloc[:0], then=append,
                          batch_id=batch, sql_target=target.shown if target else None)
"""


def _score(tmp_path: Path, batch: str, n: int, as_of: str, kill: bool | str = False,
           sql: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(io.KILL_AT_VARIABLE, None)
    if kill:
        env[io.KILL_AT_VARIABLE] = kill if isinstance(kill, str) else "score.after_sql"
    db = f"sqlite:///{tmp_path / 'scores.db'}" if sql else "none"
    return subprocess.run([sys.executable, "-c", _SCORE_SCRIPT, str(tmp_path / "scored"),
                           db, batch, str(n), as_of],
                          env=env, capture_output=True, text=True, timeout=120)


def _table(tmp_path: Path) -> pd.DataFrame:
    target = scoring_io.SqlTarget(f"sqlite:///{tmp_path / 'scores.db'}")
    with scoring_io.engine_for(target) as engine:
        return scoring_io.read_batches(engine, target.table)


def test_score_killed_after_the_sql_commit_is_repaired_next_run(tmp_path: Path) -> None:
    assert _score(tmp_path, "A", 3, "2025-01-01").returncode == 0
    killed = _score(tmp_path, "B", 5, "2025-02-01", kill=True)
    assert killed.returncode == -9, killed.stderr
    # the torn state: the table holds B, the files still hold A, the journal says so
    assert sorted(_table(tmp_path)["batch_id"].unique()) == ["A", "B"]
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["batch_id"]) == {"A"}
    journal = json.loads((tmp_path / f"scored{scoring_io.JOURNAL_SUFFIX}").read_text())
    assert journal["batch_id"] == "B"

    # the next run (another batch) first removes B from the table, then writes its own
    assert _score(tmp_path, "C", 2, "2025-03-01").returncode == 0
    table = _table(tmp_path)
    assert table.groupby("batch_id").size().to_dict() == {"A": 3, "C": 2}
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["batch_id"]) == {"C"}
    assert not (tmp_path / f"scored{scoring_io.JOURNAL_SUFFIX}").exists()
    assert not list(tmp_path.glob(f".*{io.TEMP_SUFFIX}"))


def test_a_complete_batch_leaves_no_journal_and_is_not_undone(tmp_path: Path) -> None:
    assert _score(tmp_path, "A", 3, "2025-01-01").returncode == 0
    assert not (tmp_path / f"scored{scoring_io.JOURNAL_SUFFIX}").exists()
    # a journal left after the last rename (killed right then) is recognised as complete
    paths = scoring_io.output_paths(tmp_path / "scored")
    (tmp_path / f"scored{scoring_io.JOURNAL_SUFFIX}").write_text(json.dumps({
        "batch_id": "A", "sql": "x", "files": {
            "scored.parquet": io.sha256_file(tmp_path / "scored.parquet")}}))
    assert scoring_io.recover_interrupted(paths) is None
    assert _table(tmp_path).groupby("batch_id").size().to_dict() == {"A": 3}


def test_files_killed_between_renames_are_noticed_and_replaced(tmp_path: Path, caplog) -> None:
    assert _score(tmp_path, "A", 3, "2025-01-01", sql=False).returncode == 0
    killed = _score(tmp_path, "B", 5, "2025-02-01", kill="score.rename", sql=False)
    assert killed.returncode == -9, killed.stderr
    journal = tmp_path / f"scored{scoring_io.JOURNAL_SUFFIX}"
    assert json.loads(journal.read_text())["batch_id"] == "B"
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["batch_id"]) == {"A"}
    paths = scoring_io.output_paths(tmp_path / "scored")
    assert scoring_io.recover_interrupted(paths) == "B"
    assert "killed while renaming the files of batch B" in caplog.text
    assert not journal.exists()
    assert _score(tmp_path, "C", 2, "2025-03-01", sql=False).returncode == 0
    assert set(pd.read_parquet(tmp_path / "scored.parquet")["batch_id"]) == {"C"}
    assert not list(tmp_path.glob(f".*{io.TEMP_SUFFIX}"))  # the killed run's temps: cleaned
