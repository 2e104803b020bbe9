"""The `ingest` stage: raw CRM export -> typed interim tables, rejects and a quality report.

Reads the leads file (and the optional events file), validates them against the data
contract (`pipeline.contract`) and writes, only once everything has been checked:

- `out_dir/leads.parquet`, `out_dir/events.parquet` (typed; an empty typed events table when
  there is no events file, so later stages always find one),
- `out_dir/rejects_leads.csv`, `out_dir/rejects_events.csv` (always written; `source_row`,
  `reason`, then the rejected rows as read; header-only when nothing was rejected),
- `reports_dir/data_quality.json` (counts, missingness, base rate, date ranges, reject
  reasons; no personal data).

Problems with a file as a whole raise `DataError` and write nothing.

With `params.yaml: source` naming a source configuration (`sources/*.yaml`, see
`pipeline.sources`) the export it describes is read, mapped onto the contract and typed
instead (`run_source`), and `out_dir/source.json` records what was done with every column.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import sources
from pipeline.contract import (
    EVENTS_REQUIRED,
    data_quality_report,
    empty_events,
    empty_rejects,
    to_naive_utc,
    utc_now,
    validate_events,
    validate_leads,
)
from pipeline.errors import ConfigError
from pipeline.io import write_json, write_parquet, write_with
from pipeline.readers import ReadOptions, read_table

log = logging.getLogger(__name__)

LEADS_FILE = "leads.parquet"
EVENTS_FILE = "events.parquet"
REJECTS_LEADS_FILE = "rejects_leads.csv"
REJECTS_EVENTS_FILE = "rejects_events.csv"
REPORT_FILE = "data_quality.json"
SOURCE_FILE = sources.REPORT_FILE


def run(
    leads_path: Path,
    events_path: Path | None,
    out_dir: Path,
    reports_dir: Path,
    now: pd.Timestamp | str | None = None,
    options: ReadOptions = ReadOptions(),
) -> dict[str, Any]:
    """Ingest one export; returns the row counts per table (`rows_in`, `rows_clean`,
    `rows_rejected`) and the leads' base rate.

    `now` (default: the wall clock, UTC) is the moment after which events are rejected as
    in the future; `ingest.now` in params.yaml.
    """
    moment = _resolve_now(now)
    leads_path = Path(leads_path)
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)

    raw_leads = read_table(leads_path, options, "leads")
    leads, rejects_leads = validate_leads(raw_leads, str(leads_path), options)
    if events_path is None:
        events, rejects_events = empty_events(), empty_rejects(EVENTS_REQUIRED)
    else:
        events_path = Path(events_path)
        raw_events = read_table(events_path, options, "events")
        events, rejects_events = validate_events(
            raw_events,
            leads,
            str(events_path),
            options,
            moment,
            rejected_lead_ids=_as_ids(rejects_leads),
        )

    report = data_quality_report(leads, rejects_leads, events, rejects_events, now=moment)
    report["files"] = {
        "leads": str(leads_path),
        "events": str(events_path) if events_path is not None else None,
    }
    return _write_outputs(out_dir, reports_dir, leads, events, rejects_leads, rejects_events,
                          report)


def _write_outputs(
    out_dir: Path,
    reports_dir: Path,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    rejects_leads: pd.DataFrame,
    rejects_events: pd.DataFrame,
    report: dict[str, Any],
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Everything has been checked: write (each file atomically).
    write_parquet(out_dir / LEADS_FILE, leads)
    write_parquet(out_dir / EVENTS_FILE, events)
    write_with(out_dir / REJECTS_LEADS_FILE, lambda tmp: _to_csv(rejects_leads, tmp))
    write_with(out_dir / REJECTS_EVENTS_FILE, lambda tmp: _to_csv(rejects_events, tmp))
    if source is not None:
        write_json(out_dir / SOURCE_FILE, source)
    else:
        (out_dir / SOURCE_FILE).unlink(missing_ok=True)
    write_json(reports_dir / REPORT_FILE, report)

    counts = {
        table: {k: report[table][k] for k in ("rows_in", "rows_clean", "rows_rejected")}
        for table in ("leads", "events")
    }
    counts["leads"]["base_rate"] = report["leads"]["base_rate"]
    log.info(
        "ingest: %d leads (%d rejected), %d events (%d rejected) -> %s",
        counts["leads"]["rows_clean"], counts["leads"]["rows_rejected"],
        counts["events"]["rows_clean"], counts["events"]["rows_rejected"], out_dir,
    )  # fmt: skip
    return counts


def run_source(
    config: sources.SourceConfig,
    out_dir: Path,
    reports_dir: Path,
    now: pd.Timestamp | str | None = None,
) -> dict[str, Any]:
    """Ingest the export a source configuration describes: read it with the configured
    options, map it onto the contract (`pipeline.sources.map_export`), validate it like any
    export, type the role columns and write the same outputs as `run`, plus
    `out_dir/source.json`. A lead-level export (no created_at) is written without
    `created_at`; its export moment is kept as `leads.attrs["exported_at"]`.
    """
    moment = _resolve_now(now)
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)
    export = sources.read_export(config)
    mapped = sources.map_export(config, export)
    leads_file = str(config.leads.path)
    with sources.source_messages(config.file, "leads.read", config.leads.map):
        leads, rejects_leads = validate_leads(mapped.leads, leads_file, config.leads.read)
    end = None
    if mapped.lead_level:
        leads, rejects_leads = sources.drop_placeholder(leads), sources.drop_placeholder(
            rejects_leads)
        end = sources.exported_at(config)
        leads.attrs["exported_at"] = end.isoformat()
    leads, columns, notes = sources.type_columns(config, leads, mapped.columns)
    if mapped.events is None:
        events, rejects_events = empty_events(), empty_rejects(EVENTS_REQUIRED)
    else:
        assert config.events is not None
        with sources.source_messages(config.file, "events.read", config.events.map):
            events, rejects_events = validate_events(
                mapped.events, leads, str(config.events.path), config.events.read, moment,
                rejected_lead_ids=_as_ids(rejects_leads),
            )
    notes = mapped.notes + notes
    for note in notes:
        log.info("source %s: %s", config.name, note)
    source = sources.source_report(config, mapped, columns, notes, end)
    report = data_quality_report(leads, rejects_leads, events, rejects_events, now=moment)
    report["files"] = {
        "source": config.file,
        "leads": leads_file,
        "events": str(config.events.path) if config.events is not None else None,
    }
    report["source"] = {"name": config.name, "mode": source["mode"],
                        "excluded": source["exclude"], "ignored": source["ignored"]}
    return _write_outputs(out_dir, reports_dir, leads, events, rejects_leads, rejects_events,
                          report, source)


def from_params(
    params: Any, leads: Path | None = None, events: Path | None = None
) -> dict[str, Any]:
    """CLI entry (`leadprop ingest`): paths from `params.paths`, `now` and the read options
    from the `ingest:` section. `leads` defaults to `paths.raw/leads.csv`; `events` to
    `paths.raw/events.csv` when that file exists (no events file is fine).

    When `params.source` is not `synthetic` it names a source configuration, which says
    which files to read and how (`run_source`).
    """
    paths = params.paths
    source = getattr(params, "source", sources.SYNTHETIC)
    if source != sources.SYNTHETIC:
        if leads is not None or events is not None:
            raise ConfigError(
                f"`--leads` / `--events` cannot be combined with `source: {source}`: the "
                "source configuration names the files. Edit it, or use `source: synthetic`."
            )
        config = sources.load_source(source)
        return run_source(config, Path(paths.interim), Path(paths.reports),
                          now=getattr(params, "ingest_now", None))
    section = (getattr(params, "raw", None) or {}).get("ingest") or {}
    options = ReadOptions.from_params(section)
    leads_path = Path(leads) if leads is not None else Path(paths.raw) / "leads.csv"
    if events is None:
        default_events = Path(paths.raw) / "events.csv"
        events = default_events if default_events.exists() else None
    return run(
        leads_path,
        events,
        Path(paths.interim),
        Path(paths.reports),
        now=getattr(params, "ingest_now", None),
        options=options,
    )


def _resolve_now(now: pd.Timestamp | str | None) -> pd.Timestamp:
    if now is None:
        return utc_now()
    try:
        moment = to_naive_utc(now)
    except (ValueError, TypeError):
        moment = pd.NaT
    if pd.isna(moment):
        raise ConfigError(
            "`ingest.now` must be a date such as '2026-06-30' or '2026-06-30 12:00:00', or "
            f"null for the wall clock; got {now!r}."
        )
    return moment


def _as_ids(rejects: pd.DataFrame) -> list[str]:
    ids = rejects["lead_id"].astype("str").str.strip()
    return ids[ids.notna() & (ids != "")].tolist()


def _to_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, encoding="utf-8")
