"""Terminal output of the stages: short summary tables and progress on stderr.

`summary_table(title, rows)` is the one helper every stage's `render(result)` uses (the CLI
prints what `render` returns): a two- or three-column rich table of rounded numbers with
their units (`num`, `pct`, `points`, `secs`). `progress(label, total)` is a rich progress
bar on stderr for the long steps (tuning trials, bootstraps, fitting), and `step(message)`
a progress line with the elapsed time when the step has no count to show; both stay quiet
when stderr is not a terminal, so DVC logs and captured test output keep only the summary.
Nothing here is imported at module load by the pure layers.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

def finite(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / inf / booleans / non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def num(value: Any, digits: int = 3, unit: str = "") -> str:
    """A number rounded for reading: integers with thousands separators, floats to
    `digits` decimals, `unit` appended; "—" for missing or non-finite values."""
    x = finite(value)
    if x is None:
        return "—" if value is None or isinstance(value, float) else str(value)
    if isinstance(value, numbers.Integral) or (x.is_integer() and abs(x) >= 1000):
        text = f"{round(x):,}"
    else:
        text = f"{x:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def pct(value: Any, digits: int = 1, missing: str = "—") -> str:
    """A share as a percentage: 0.0756 -> "7.6 %"; `missing` for no finite value."""
    x = finite(value)
    return missing if x is None else f"{100 * x:.{digits}f} %"


def points(value: Any, digits: int = 1) -> str:
    """Signed rule points: +3, -12.5 -> "+3.0 pts", "-12.5 pts"."""
    x = finite(value)
    return "—" if x is None else f"{x:+.{digits}f} pts"


def secs(value: Any) -> str:
    """Elapsed seconds: "42 s", "2 min 05 s"."""
    x = finite(value)
    if x is None:
        return "—"
    if x < 60:
        return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"
    return f"{int(x // 60)} min {int(round(x % 60)):02d} s"


def summary_table(title: str, rows: Sequence[Sequence[Any]],
                  headers: Sequence[str] = ("", "value"), caption: str | None = None,
                  text_columns: Sequence[str] = ()) -> Any:
    """A rich table with `headers`: one row per sequence of cells, the first a label (left),
    the others right-aligned (except the `text_columns`, by header: left, wrapped); numbers
    are formatted by `num`, strings shown as they are
    (format them with `pct`, `points`, `secs`), short rows padded. A row of one label that
    starts with "## " is a bold sub-heading. Cells are plain text, never rich markup (rule
    names and paths may hold square brackets)."""
    from rich.table import Table
    from rich.text import Text

    width = max([len(headers), *(len(r) for r in rows)])
    names = [*headers, *([""] * width)][:width]
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  show_header=any(names))
    table.add_column(names[0], overflow="fold")
    for name in names[1:]:
        table.add_column(name, justify="left" if name in text_columns else "right",
                         overflow="fold", ratio=1 if name in text_columns else None)
    for row in rows:
        label = str(row[0])
        if label.startswith("## ") and len(row) == 1:
            table.add_row(Text(label[3:], style="bold"), *([""] * (width - 1)))
            continue
        cells = [c if isinstance(c, str) else num(c) for c in row[1:]]
        cells += [""] * (width - 1 - len(cells))
        table.add_row(Text(label), *(Text(c) for c in cells))
    return table


def mapping_table(title: str, mapping: Mapping[str, Any]) -> Any:
    """A stage's summary mapping as a two-column table: nested mappings as sub-headings,
    lists joined with commas, numbers rounded (`summary_table`)."""
    rows: list[Sequence[Any]] = []

    def walk(m: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in m.items():
            label = f"{prefix}{key}".replace("_", " ")
            if isinstance(value, Mapping):
                rows.append((f"## {label}",))
                walk(value, "  ")
            elif isinstance(value, list | tuple):
                rows.append((label, ", ".join(str(v) for v in value) or "—"))
            else:
                rows.append((label, value if isinstance(value, int | float) and not
                             isinstance(value, bool) else str(value)))

    walk(mapping)
    return summary_table(title, rows)


def _interactive() -> bool:
    from rich.console import Console

    return Console(stderr=True).is_terminal


@contextmanager
def progress(label: str, total: int | None = None,
             enabled: bool | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr for one long step; yields `advance(n=1, *, completed=None)`.

    `total` None: a spinner with the elapsed time. Shown only on a terminal (or with
    `enabled=True`); elsewhere (DVC, CI, a log file) "<label> ..." is logged when the step
    starts instead. "<label>: done in N s" is logged at the end either way, so every log
    says what is running and where the time went.
    """
    started = time.perf_counter()
    show = _interactive() if enabled is None else enabled
    bar = task = None
    if not show:
        step(label)
    else:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = [SpinnerColumn(), TextColumn(label)]
        if total:
            columns += [BarColumn(), MofNCompleteColumn()]
        bar = Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True),
                       transient=True)
        bar.start()
        task = bar.add_task(label, total=total)

    def advance(n: int = 1, *, completed: int | None = None) -> None:
        if bar is None:
            return
        if completed is not None:
            bar.update(task, completed=completed)
        else:
            bar.advance(task, n)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.stop()
    log.info("%s: done in %s", label, secs(time.perf_counter() - started))


def step(message: str) -> None:
    """A progress line on stderr (through logging) before a step without a count."""
    log.info("%s ...", message)
