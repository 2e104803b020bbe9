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

from pipeline.console import mapping_table
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
    from pipeline.io import terminate_on_sigterm

    terminate_on_sigterm()  # SIGTERM cleans up: temp files removed, MLflow run FAILED


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
    console.print(mapping_table("generate", summary))


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
    console.print(mapping_table("ingest", _guard(stage.from_params, p, leads=leads,
                                                 events=events)))


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


EngineOpt = Annotated[
    str | None,
    typer.Option("--engine", help="embedded (pandas here) or spark (the same code per lead-hash "
                 "bucket on a Spark session; needs pyspark and Java >= 17) [default: engine in "
                 "params.yaml]."),
]


@app.command()
def features(
    params: ParamsOpt = Path("params.yaml"),
    engine: EngineOpt = None,
    events: Annotated[
        str | None,
        typer.Option("--events", help="With --engine spark: the typed events as a Parquet "
                     "path or table:<name> (a table of the Spark session's catalog) "
                     "[default: paths.interim/events.parquet]."),
    ] = None,
) -> None:
    """Build point-in-time training snapshots, their features and the leakage audit."""
    from pipeline.stages import features as stage

    p = _params(params)
    console.print(stage.render(_guard(stage.from_params, p, engine=engine, events=events)))


_stage("train", "Fit LightGBM, logistic regression and the rules baseline; calibrate; fit bands.")
_stage("evaluate", "Test-split metrics for every scorer, bands.json, plots and the HTML report.")
_stage(
    "register",
    "Log the model to the MLflow registry as challenger; promote it if it beats the champion.",
)
_stage("rules", "Manual point rules vs learned points: tables, rules.learned.yaml, plots, summary.")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The registered model version to serve, e.g. 3.")],
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why (recorded with your name and the time in the version's tags)."),
    ],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Make VERSION of this source's registered model the champion by hand (when `register` could not compare it)."""
    from pipeline.stages import register as stage

    p = _params(params)
    console.print(_guard(stage.promote, p, version, reason))


@app.command()
def rollback(
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded in the version's tags).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Move the champion alias back to the version that was champion before the current one."""
    from pipeline.stages import register as stage

    p = _params(params)
    console.print(_guard(stage.rollback, p, reason))


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
            "--chunk-size", min=1, help="Leads per model call [default: 100000]. Memory is bounded by score.chunk_events (events read at once) in params.yaml."
        ),
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Write a batch with no open leads even over a batch that has rows (without it, that is an error: usually --as-of is before every lead).",
        ),
    ] = False,
    trust_model: Annotated[
        bool,
        typer.Option(
            "--trust-model",
            help="Load a --model that is not in the configured MLflow store (a local folder, another server's URI). Loading unpickles its files, which runs any code in them: only for models you trust.",
        ),
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Score leads that lack a column the model's fit features came from (industry, job_title, budget...): those features are 'unknown' for every lead. Without it that is an error; with it the summary and the MLflow run say so.",
        ),
    ] = False,
    engine: EngineOpt = None,
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
        allow_empty=allow_empty,
        trust_model=trust_model,
        allow_missing=allow_missing,
        engine_name=engine,
    )
    console.print(stage.counts_table(summary))


@app.command()
def lift(
    since: Annotated[str, typer.Option("--since", help="First scoring date to compare from, "
                                       "YYYY-MM-DD.")],
    db: Annotated[str | None, typer.Option(help="Read the batches from this database URL "
                                           "instead of the file history.")] = None,
    table: Annotated[str | None, typer.Option(help="SQL table (default: the source's).")] = None,
    min_effect: Annotated[float, typer.Option(help="Smallest relative lift worth finding "
                                              "(0.2 = 20 % of the holdout's rate).")] = 0.2,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Does scoring pay? Conversion of scored leads vs the randomised holdout since DATE."""
    from pipeline.stages import lift as stage

    p = _params(params)
    result = _guard(stage.from_params, p, since, db, table, min_effect)
    console.print(stage.render(result))
    console.print(f"written: {result['file']}")


@app.command()
def outputs(params: ParamsOpt = Path("params.yaml")) -> None:
    """Print where the pipeline's outputs are."""
    from pipeline.scoring_io import default_out

    p = _params(params)
    reports = Path(p.paths.reports)
    scored = default_out(p.paths.scored, p.source_key)  # per source
    rows = [
        ("scored lead table", scored.with_suffix(".csv")),
        ("scored lead table (parquet)", scored.with_suffix(".parquet")),
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
