"""File IO used by every stage: atomic writes (temp file in the same folder, then rename),
JSON with stable formatting, parquet."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only on success.

    A crash (or kill) while writing leaves the previous `target` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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


def write_json(path: Path | str, payload: Any) -> Path:
    """Write JSON atomically; NaN/inf become null, numpy scalars plain numbers."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(_jsonable(payload), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
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
