"""File IO used by every stage: atomic writes (temp file in the same folder, then rename),
groups of files renamed together behind a manifest of content hashes, JSON with stable
formatting, parquet, and the test hook that kills a process at a named point.

Temporary files are named `.<target>.<pid>.<random>.leadprop.tmp` (`TEMP_SUFFIX`;
`.gitignore` and `.dvcignore` skip them). They are removed when a write fails (also on
SIGTERM once `terminate_on_sigterm` is installed, as the CLI does); a SIGKILL leaves one
behind, which the next write to the same target removes once its process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".leadprop.tmp"
#: Temp files of the older naming (`.<target>.<random>.tmp`, no pid) older than this are stale.
LEGACY_TEMP_AGE_SECONDS = 600
#: `LEADPROP_KILL_AT=<point>` makes `kill_point(<point>)` kill the process (tests only);
#: `LEADPROP_KILL_SIGNAL` = KILL (default) or TERM.
KILL_AT_VARIABLE = "LEADPROP_KILL_AT"
KILL_SIGNAL_VARIABLE = "LEADPROP_KILL_SIGNAL"
MANIFEST_FILE = "manifest.json"


def kill_point(name: str) -> None:
    """Test hook: kill this process here when `LEADPROP_KILL_AT` names this point.

    The kill tests (tests/reliability/test_kill.py) use it to stop a stage between two
    writes and check that the state left behind is consistent and the next run recovers.
    """
    if os.environ.get(KILL_AT_VARIABLE) != name:
        return
    sig = os.environ.get(KILL_SIGNAL_VARIABLE, "KILL").upper()
    os.kill(os.getpid(), signal.SIGTERM if sig == "TERM" else signal.SIGKILL)
    time.sleep(5)  # the signal is delivered before this returns


def terminate_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit(143) in the main thread, so `finally` blocks run: temp
    files are removed and an MLflow run ends FAILED instead of staying RUNNING."""

    def _raise(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not the main thread: leave the default
        signal.signal(signal.SIGTERM, _raise)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_owner(path: Path) -> int | None:
    """The pid in a temp file's name, or None for the older naming."""
    if not path.name.endswith(TEMP_SUFFIX):
        return None
    parts = path.name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def clean_stale_temps(folder: Path | str, target: str | None = None) -> list[Path]:
    """Remove the temp files a killed process left in `folder` (only those of `target` when
    given): ours whose process is gone, and older-style ones after 10 minutes. Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = f".{glob.escape(target)}." if target else "."
    removed = []
    for path in folder.glob(f"{prefix}*.tmp"):
        owner = _temp_owner(path)
        if owner is not None:
            stale = owner != os.getpid() and not process_alive(owner)
        else:
            try:
                stale = time.time() - path.stat().st_mtime > LEGACY_TEMP_AGE_SECONDS
            except FileNotFoundError:
                continue
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) a killed run left in %s", len(removed), folder)
    return removed


def _new_temp(target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                               dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, target: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared files
    os.replace(tmp, target)


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only on success.

    A crash (or kill) while writing leaves the previous `target` untouched; temp files of
    the same target left by a killed process are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    tmp_path = _new_temp(target)
    try:
        yield tmp_path
        _publish(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_group(
    jobs: Sequence[tuple[Path, Callable[[Path], None]]],
    manifest: Path | None = None,
    kill_name: str = "group",
    before_rename: Callable[[dict[str, str]], None] | None = None,
) -> dict[str, str]:
    """Write several files as one unit: every `writer(tmp)` first, then the renames, then
    (when `manifest` is given) a manifest of their content hashes, renamed last.

    A failure before the renames leaves every old file as it was and no temp file. A kill
    during the renames leaves a mix whose hashes do not match the (old) manifest, which
    `check_manifest` turns into a DataError. `before_rename(hashes)` runs once every file is
    written (e.g. a SQL commit and a journal); an exception there also leaves the old files.
    Files are renamed in the order given. Returns {path relative to the manifest's folder
    (or the file name): sha256}.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for target, writer in jobs:
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(target.parent, target.name)
            tmp = _new_temp(target)
            temps.append((tmp, target))
            writer(tmp)
        base = manifest.parent if manifest is not None else None
        hashes = {_manifest_key(target, base): sha256_file(tmp) for tmp, target in temps}
        if before_rename is not None:
            before_rename(hashes)
            kill_point(f"{kill_name}.before_rename")
        for i, (tmp, target) in enumerate(temps):
            if i:
                kill_point(f"{kill_name}.rename")
            _publish(tmp, target)
        if manifest is not None:
            kill_point(f"{kill_name}.manifest")
            write_json(manifest, {"files": hashes})
        return hashes
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def _manifest_key(target: Path, base: Path | None) -> str:
    if base is None:
        return target.name
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def check_manifest(folder: Path | str, names: Iterable[str] | None = None,
                   stage: str = "ingest", manifest: str = MANIFEST_FILE) -> None:
    """DataError when a file recorded in `folder/<manifest>` (those among `names`, relative
    to `folder`; default: all) does not have the content the manifest records: the files
    were not written together (a killed `stage`, or a file replaced by hand). No manifest:
    nothing to check (outputs written by an older version or by a test)."""
    folder = Path(folder)
    path = folder / manifest
    if not path.is_file():
        log.debug("%s: no manifest; the outputs' consistency is not checked", folder)
        return
    recorded = (read_json(path) or {}).get("files", {})
    wanted = [n for n in (recorded if names is None else names) if n in recorded]
    bad = [n for n in wanted
           if not (folder / n).is_file() or sha256_file(folder / n) != recorded[n]]
    if bad:
        raise DataError(
            f"{folder}: {', '.join(bad)} do{'es' if len(bad) == 1 else ''} not match "
            f"{path} (of {len(wanted)} files written together, {len(bad)} differ): "
            f"`leadprop {stage}` was stopped part-way, or a file was replaced by hand, so "
            f"its outputs may mix two runs. Run `leadprop {stage}` again (or `dvc repro -f "
            f"{stage}`).",
            file=str(folder / bad[0]),
            n_rows=None,
            example=bad[0],
        )


def require_unit(folder: Path | str, names: Sequence[str], stage: str,
                 manifest: str = MANIFEST_FILE) -> None:
    """The files `names` (relative to `folder`) that `stage` writes as one unit exist
    (`require_inputs`) and are those it wrote together (`check_manifest`), else DataError."""
    folder = Path(folder)
    require_inputs([folder / n for n in names], stage)
    check_manifest(folder, names, stage=stage, manifest=manifest)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def dump_json(payload: Any, path: Path | str) -> None:
    """Write JSON in place (stable formatting; NaN/inf become null, numpy scalars plain
    numbers); `write_json` is the atomic version."""
    Path(path).write_text(
        json.dumps(_jsonable(payload), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_json(path: Path | str, payload: Any) -> Path:
    """Write JSON atomically; NaN/inf become null, numpy scalars plain numbers."""
    path = Path(path)
    with atomic_path(path) as tmp:
        dump_json(payload, tmp)
    return path


def require_inputs(paths: Iterable[Path | str], stage: str) -> None:
    """DataError naming the first missing input and the stage that writes it."""
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: not found; run `leadprop {stage}` (or `dvc repro`) first",
                            file=str(path))


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: Path | str, frame: pd.DataFrame) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def write_with(path: Path | str, writer: Callable[[Path], None]) -> Path:
    """Run `writer(tmp_path)` and move the result over `path` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        writer(tmp)
    return path
