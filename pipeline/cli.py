"""The `leadprop` command line. One verb per DVC stage, plus `generate` and `outputs`.

Every stage verb reads `params.yaml` (or `--params`) and calls its entry point in
`pipeline/stages/`. User errors (bad data, bad configuration) print one paragraph and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from pipeline.errors import LeadpropError

app = typer.Typer(
    help="leadprop: learn lead-scoring weights from history, calibrate them, band them, score leads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
console = Console()

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file (see README).")]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )


def _guard(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a stage; turn user errors into one red paragraph and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except LeadpropError as err:
        err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2) from None


def _params(path: Path):  # noqa: ANN202
    from pipeline.settings import load_params

    return _guard(load_params, path)


@app.command()
def generate(
    leads: Annotated[int | None, typer.Option("--leads", help="Number of leads [default: 20000].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files [default: 42].")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder for leads.csv, events.csv, truth.csv [default: data/raw].")] = None,
    start: Annotated[str | None, typer.Option("--start", help="First lead creation date, YYYY-MM-DD [default: 2025-01-01].")] = None,
    months: Annotated[int | None, typer.Option("--months", help="Months of history [default: 18].")] = None,
    activity: Annotated[float | None, typer.Option("--activity", help="Multiplier on all event rates [default: 1.0].")] = None,
    params: Annotated[Path | None, typer.Option("--params", help="Take unset options (and the snapshot ages and label horizon for truth.csv) from this params file.")] = None,
) -> None:
    """Write a synthetic CRM export (leads.csv, events.csv) and the generator's true probabilities (truth.csv)."""
    from pipeline.stages import generate as stage

    p = _params(params) if params is not None else None
    summary = _guard(stage.main, p, leads=leads, seed=seed, out=out, start=start, months=months,
                     activity=activity)
    console.print(summary)


@app.command()
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    leads: Annotated[Path | None, typer.Option("--leads", help="Leads file (default: paths.raw/leads.csv).")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="Events file (default: paths.raw/events.csv, if present).")] = None,
) -> None:
    """Validate the raw export against the data contract; write typed parquet, rejects and a data-quality report."""
    from pipeline.stages import ingest as stage

    p = _params(params)
    console.print(_guard(stage.from_params, p, leads=leads, events=events))


def run() -> None:  # pragma: no cover - console entry for `python -m pipeline.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())

