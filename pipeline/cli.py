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
from rich.text import Text

from pipeline.errors import LeadpropError

app = typer.Typer(
    help="leadprop: learn lead-scoring weights from history, calibrate them, band them, score leads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: "[default: 42]" must show, not be read as rich markup.
    rich_markup_mode=None,
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
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False,
                              markup=False)],
        force=True,
    )


def _guard(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a stage; turn user errors into one red paragraph and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except LeadpropError as err:
        report_error(err)
        raise typer.Exit(code=2) from None


def report_error(err: BaseException) -> None:
    """One red "error:" then the message as plain text: messages quote user data (cells,
    headers), so square brackets in them are never read as rich markup."""
    err_console.print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True,
                      highlight=False)


def _params(path: Path):  # noqa: ANN202
    from pipeline.settings import load_params

    return _guard(load_params, path)


@app.command()
def generate(
    leads: Annotated[
        int | None, typer.Option("--leads", help="Number of leads [default: 20000].")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Random seed; the same seed gives byte-identical files [default: 42]."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder for leads.csv, events.csv, truth.csv [default: data/raw]."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="First lead creation date, YYYY-MM-DD [default: 2025-01-01]."),
    ] = None,
    months: Annotated[
        int | None, typer.Option("--months", help="Months of history [default: 18].")
    ] = None,
    activity: Annotated[
        float | None,
        typer.Option("--activity", help="Multiplier on all event rates [default: 1.0]."),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="Take unset options (and the snapshot ages and label horizon for truth.csv) from this params file.",
        ),
    ] = None,
) -> None:
    """Write a synthetic CRM export (leads.csv, events.csv) and the generator's true probabilities (truth.csv)."""
    from pipeline.stages import generate as stage

    p = _params(params) if params is not None else None
    summary = _guard(
        stage.main,
        p,
        leads=leads,
        seed=seed,
        out=out,
        start=start,
        months=months,
        activity=activity,
    )
    console.print(summary)


@app.command()
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    leads: Annotated[
        Path | None, typer.Option("--leads", help="Leads file (default: paths.raw/leads.csv).")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option("--events", help="Events file (default: paths.raw/events.csv, if present)."),
    ] = None,
) -> None:
    """Validate the raw export against the data contract; write typed parquet, rejects and a data-quality report."""
    from pipeline.stages import ingest as stage

    p = _params(params)
    console.print(_guard(stage.from_params, p, leads=leads, events=events))


def _stage(module: str, help_text: str) -> None:
    """Register `leadprop <module>`: read params, call pipeline.stages.<module>.from_params."""

    def command(params: ParamsOpt = Path("params.yaml")) -> None:
        import importlib

        stage = importlib.import_module(f"pipeline.stages.{module}")
        p = _params(params)
        result = _guard(stage.from_params, p)
        render = getattr(stage, "render", None)
        console.print(render(result) if render else result)

    command.__doc__ = help_text
    app.command(name=module)(command)


_stage("features", "Build point-in-time training snapshots, their features and the leakage audit.")
_stage("train", "Fit LightGBM, logistic regression and the rules baseline; calibrate; fit bands.")
_stage("evaluate", "Test-split metrics for every scorer, bands.json, plots and the HTML report.")
_stage(
    "register",
    "Log the model to the MLflow registry as challenger; promote it if it beats the champion.",
)
_stage("rules", "Manual point rules vs learned points: tables, rules.learned.yaml, plots, summary.")


@app.command()
def score(
    params: ParamsOpt = Path("params.yaml"),
    leads: Annotated[
        Path | None,
        typer.Option(
            "--leads",
            help="A leads export (CSV or Parquet, the canonical contract; `converted` may be missing). Without it: paths.interim/leads.parquet from `ingest`.",
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="The events export to go with --leads [default without --leads: paths.interim/events.parquet].",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score the leads open at this moment (UTC), YYYY-MM-DD[ HH:MM:SS] [default: now with --leads; else score.as_of, or the end of the data].",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="MLflow model URI: models:/name@alias, models:/name/3, runs:/<id>/model or a folder [default: score.model].",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output path: writes PATH.parquet and PATH.csv (or only one if PATH ends in .parquet/.csv) and PATH.rejects.csv [default: paths.scored/scored_leads].",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Also append the batch to a SQL table at this SQLAlchemy URL, e.g. sqlite:///scores.db or postgresql+psycopg://user@host/db.",
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            "--table", help="SQL table name for --db (letters, digits, _) [default: scored_leads]."
        ),
    ] = None,
    scored_at: Annotated[
        str | None,
        typer.Option(
            "--scored-at",
            help="The batch's scored_at stamp [default: now]; everything else is determined by the inputs.",
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size", min=1, help="Leads scored per chunk (bounds memory) [default: 100000]."
        ),
    ] = None,
) -> None:
    """Score the open leads as of a moment: scored table (Parquet, Excel-safe CSV, SQL), rejects, and an MLflow run."""
    from pipeline.stages import score as stage

    p = _params(params)
    summary = _guard(
        stage.from_params,
        p,
        leads=leads,
        events=events,
        as_of=as_of,
        model=model,
        out=out,
        db=db,
        table=table,
        scored_at=scored_at,
        chunk_size=chunk_size,
    )
    console.print(stage.counts_table(summary))


@app.command()
def outputs(params: ParamsOpt = Path("params.yaml")) -> None:
    """Print where the pipeline's outputs are."""
    p = _params(params)
    reports = Path(p.paths.reports)
    rows = [
        ("scored lead table", Path(p.paths.scored) / "scored_leads.csv"),
        ("scored lead table (parquet)", Path(p.paths.scored) / "scored_leads.parquet"),
        ("headline metrics (dvc metrics show)", reports / "headline.json"),
        ("all metrics", reports / "metrics.json"),
        ("plots (dvc plots show, offline)", Path("dvc_plots") / "index.html"),
        ("bands", reports / "bands.json"),
        ("model report", reports / "model_report.html"),
        ("leakage audit", reports / "leakage_audit.json"),
        ("data quality", reports / "data_quality.json"),
        ("rules comparison", reports / "rules_comparison.csv"),
    ]
    console.print("[bold]leadprop outputs[/]")
    for label, path in rows:
        mark = "[green]✓[/]" if path.exists() else "[yellow]–[/]"
        console.print(f"  {mark} {label}: {path}")
    console.print(
        "  MLflow UI: [bold]make ui[/]  (or .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db)"
    )


def run() -> None:  # pragma: no cover - console entry for `python -m pipeline.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
