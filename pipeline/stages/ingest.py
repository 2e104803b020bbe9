"""The `ingest` stage: raw CRM export -> typed interim tables, rejects and a quality report.

Reads the leads file (and the optional events file), validates them against the data
contract (`pipeline.contract`) and writes, only once everything has been checked:

- `out_dir/leads.parquet`, `out_dir/events.parquet` (typed; an empty typed events table when
  there is no events file, so later stages always find one),
- `out_dir/rejects_leads.csv`, `out_dir/rejects_events.csv` (always written; `source_row`,
  `reason`, then the rejected rows as read with personal columns masked and formula cells
  neutralised as in the scored CSV; header-only when nothing was rejected),
- `reports_dir/data_quality.json` (counts, missingness, base rate, date ranges, reject
  reasons, the export moment `now` and where it came from, `now_source`; no personal data),
- `out_dir/manifest.json`: the sha256 of every file above. They are written as one unit
  (`pipeline.io.write_group`: all to temp files, then renamed, the manifest last), and
  `features`/`score` check the manifest, so a kill part-way (new leads with old events)
  stops the next stage with a DataError instead of mixing two exports.

Problems with a file as a whole raise `DataError` and write nothing.

The export moment (`now`: later dates are rejected as typos) is, in this order: `ingest.now`
("config"), a source configuration's `exported_at` ("exported_at"), the data's own end
("data end": the latest lead date or event time, robust to an isolated mistyped top tail as
in `features.snapshots.robust_max`), or the wall clock ("clock") when the data has no dates
or its end lies after the clock. A historical export is thus judged by its own end, not by
today.

Personal data (`features.pii`): every column outside the contract's own personal columns
(`email`, names, `phone`) is screened by content for emails, phone numbers and person names
before anything is written. `ingest.personal_data` says what happens to such a column:
`error` (default: stop, naming it and the fix), `drop`, or `hash` (a salted hash in
`_<column>_hash`, never a feature; `lead_id` is hashed in place, in the events too; the salt
comes from the environment variable `LEADPROP_PERSONAL_SALT`). `ingest.not_personal` lists
columns the screen got wrong.

With `params.yaml: source` naming a source configuration (`sources/*.yaml`, see
`pipeline.sources`) the export it describes is read, mapped onto the contract and typed
instead (`run_source`), and `out_dir/source.json` records what was done with every column.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features import pii
from features.snapshots import robust_max
from pipeline import sources
from pipeline.contract import (
    EVENTS_DATE_COLUMNS,
    EVENTS_REQUIRED,
    LEADS_DATE_COLUMNS,
    data_quality_report,
    empty_events,
    empty_rejects,
    parse_dates,
    to_naive_utc,
    utc_now,
    validate_events,
    validate_leads,
)
from pipeline.errors import ConfigError, DataError
from pipeline.io import MANIFEST_FILE, dump_json, kill_point, write_group
from pipeline.readers import ReadOptions, format_names, read_table
from pipeline.scoring_io import neutralise

log = logging.getLogger(__name__)

LEADS_FILE = "leads.parquet"
EVENTS_FILE = "events.parquet"
REJECTS_LEADS_FILE = "rejects_leads.csv"
REJECTS_EVENTS_FILE = "rejects_events.csv"
REPORT_FILE = "data_quality.json"
#: Where the export moment came from (`data_quality.json: now_source`).
NOW_SOURCES = ("config", "exported_at", "data end", "clock")
SOURCE_FILE = sources.REPORT_FILE
PERSONAL_MODES = ("error", "drop", "hash")
SALT_VARIABLE = "LEADPROP_PERSONAL_SALT"
#: Columns the personal-data screen leaves alone: the contract's own personal columns (kept
#: as today: features derive only the email's domain type and shape), dates, the outcome.
_NOT_SCREENED = frozenset(pii.CONTRACT_PERSONAL) | {"converted"}


@dataclass(frozen=True)
class PersonalData:
    """What ingest does with a column that holds personal data (`ingest.personal_data`,
    `ingest.not_personal`; the salt from `LEADPROP_PERSONAL_SALT`)."""

    mode: str = "error"
    not_personal: tuple[str, ...] = ()
    salt: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in PERSONAL_MODES:
            raise ConfigError(
                f"`ingest.personal_data` must be one of {', '.join(PERSONAL_MODES)}; got "
                f"{self.mode!r}."
            )
        if isinstance(self.not_personal, str) or not all(
            isinstance(c, str) for c in self.not_personal
        ):
            raise ConfigError(
                f"`ingest.not_personal` must be a list of column names; got {self.not_personal!r}."
            )
        object.__setattr__(self, "not_personal", tuple(self.not_personal))
        if self.mode == "hash" and not self.salt:
            raise ConfigError(
                f"`ingest.personal_data: hash` needs a secret salt in the environment variable "
                f"{SALT_VARIABLE} (any long random text, the same on every run so the hashes "
                "stay usable as ids; it is never written anywhere). Set it, or use "
                "`personal_data: drop`."
            )

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> PersonalData:
        mode = section.get("personal_data") or "error"
        return cls(str(mode), tuple(section.get("not_personal") or ()),
                   os.environ.get(SALT_VARIABLE) if mode == "hash" else None)


def screen_personal(
    raw: pd.DataFrame, file: str, personal: PersonalData, skip: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, dict[str, str]]:
    """`raw` with its personal-data columns handled by `personal.mode`, and what was done
    (column -> "dropped" / the hash column's name). DataError in mode `error`."""
    found = pii.detect_personal(raw, skip=_NOT_SCREENED | skip | set(personal.not_personal))
    if not found:
        return raw, {}
    if personal.mode == "error":
        first = found[0]
        n_rows = int(raw[first.column].notna().sum())
        plural = "s" if len(found) > 1 else ""
        raise DataError(
            f"{file}: {len(found)} column{plural} hold{'' if plural else 's'} personal data "
            f"({n_rows} rows of '{first.column}' have a value): "
            f"{'; '.join(p.describe() for p in found)}. Personal data must never become a "
            "feature, a reason or part of a model file. Either rename the column to the "
            "contract's `email`, `phone`, `first_name` / `last_name` (or map it so in a source "
            "configuration, or give it role ignore there), or set `ingest.personal_data: drop` "
            "(or `hash`, which keeps a salted hash usable as an id) in params.yaml. If a "
            "column is not personal data, list it in `ingest.not_personal`.",
            file=file,
            column=first.column,
            n_rows=n_rows,
            example=first.example,
        )
    out = raw.copy()
    done: dict[str, str] = {}
    for hit in found:
        if personal.mode == "drop":
            out = out.drop(columns=hit.column)
            done[hit.column] = "dropped"
            continue
        assert personal.salt is not None
        hashed = pii.hash_values(out[hit.column], personal.salt)
        target = hit.column if hit.column == "lead_id" else f"_{hit.column}_hash"
        if target != hit.column and target in out.columns:
            raise DataError(
                f"{file}: cannot hash column '{hit.column}' into '{target}': the file already "
                "has a column of that name. Rename it in the export.",
                file=file, column=target,
            )
        position = out.columns.get_loc(hit.column)
        out = out.drop(columns=hit.column)
        out.insert(position, target, hashed)
        done[hit.column] = target
    log.warning(
        "%s: personal data in %s: %s (ingest.personal_data: %s)",
        file, format_names(done), ", ".join(f"{c} -> {t}" for c, t in done.items()),
        personal.mode,
    )  # fmt: skip
    return out, done


def run(
    leads_path: Path,
    events_path: Path | None,
    out_dir: Path,
    reports_dir: Path,
    now: pd.Timestamp | str | None = None,
    options: ReadOptions = ReadOptions(),
    personal: PersonalData = PersonalData(),
) -> dict[str, Any]:
    """Ingest one export; returns the row counts per table (`rows_in`, `rows_clean`,
    `rows_rejected`) and the leads' base rate.

    `now` (`ingest.now` in params.yaml; default: the data's own end, see the module doc) is
    the moment after which dates are rejected as in the future. `personal` says what
    happens to columns holding personal data (see the module doc).
    """
    leads_path = Path(leads_path)
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)

    raw_leads = read_table(leads_path, options, "leads")
    raw_events = read_table(Path(events_path), options, "events") \
        if events_path is not None else None
    moment, now_source = export_moment(now, None, raw_leads, raw_events, options)
    raw_leads, personal_leads = screen_personal(
        raw_leads, str(leads_path), personal, frozenset(LEADS_DATE_COLUMNS))
    leads, rejects_leads = validate_leads(raw_leads, str(leads_path), options, moment)
    personal_events: dict[str, str] = {}
    if events_path is None:
        events, rejects_events = empty_events(), empty_rejects(EVENTS_REQUIRED)
    else:
        assert raw_events is not None
        events_path = Path(events_path)
        if personal_leads.get("lead_id") == "lead_id" and "lead_id" in raw_events:
            assert personal.salt is not None  # ids hashed in the leads: the same in events
            raw_events = raw_events.assign(
                lead_id=pii.hash_values(raw_events["lead_id"], personal.salt))
        raw_events, personal_events = screen_personal(
            raw_events, str(events_path), personal,
            frozenset(EVENTS_DATE_COLUMNS) | {"lead_id"})
        events, rejects_events = validate_events(
            raw_events,
            leads,
            str(events_path),
            options,
            moment,
            rejected_lead_ids=_as_ids(rejects_leads),
        )

    report = data_quality_report(leads, rejects_leads, events, rejects_events, now=moment)
    report["now_source"] = now_source
    report["files"] = {
        "leads": str(leads_path),
        "events": str(events_path) if events_path is not None else None,
    }
    report["personal_data"] = {"mode": personal.mode, "leads": personal_leads,
                               "events": personal_events}
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
    # Everything has been checked: write every file as one unit, the manifest last.
    jobs: list[tuple[Path, Any]] = [
        (out_dir / LEADS_FILE, lambda tmp: leads.to_parquet(tmp, index=False)),
        (out_dir / EVENTS_FILE, lambda tmp: events.to_parquet(tmp, index=False)),
        (out_dir / REJECTS_LEADS_FILE, lambda tmp: _to_csv(rejects_leads, tmp)),
        (out_dir / REJECTS_EVENTS_FILE, lambda tmp: _to_csv(rejects_events, tmp)),
        (reports_dir / REPORT_FILE, lambda tmp: dump_json(report, tmp)),
    ]
    if source is not None:
        jobs.append((out_dir / SOURCE_FILE, lambda tmp: dump_json(source, tmp)))
    kill_point("ingest.write")
    write_group(jobs, manifest=out_dir / MANIFEST_FILE, kill_name="ingest")
    if source is None:
        (out_dir / SOURCE_FILE).unlink(missing_ok=True)
    log.info("ingest: export moment %s (now_source: %s)", report.get("now"),
             report.get("now_source"))

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
    # The export moment: ingest.now, else the config's exported_at, else the data's end.
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)
    export = sources.read_export(config)
    mapped = sources.map_export(config, export)
    moment, now_source = export_moment(
        now, config.exported_at, mapped.leads, mapped.events, config.leads.read,
        config.events.read if config.events is not None else None)
    leads_file = str(config.leads.path)
    with sources.source_messages(config.file, "leads.read", config.leads.map):
        leads, rejects_leads = validate_leads(mapped.leads, leads_file, config.leads.read,
                                              moment)
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
    report["now_source"] = now_source
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
    section = dict((getattr(params, "raw", None) or {}).get("ingest") or {})
    personal = PersonalData.from_params(section)
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
        personal=personal,
    )


def export_moment(
    configured: pd.Timestamp | str | None,
    exported_at: pd.Timestamp | None,
    raw_leads: pd.DataFrame,
    raw_events: pd.DataFrame | None,
    options: ReadOptions,
    events_options: ReadOptions | None = None,
) -> tuple[pd.Timestamp, str]:
    """(the export moment, where it came from: one of `NOW_SOURCES`); see the module doc.

    The data end reads the raw date columns (`created_at`, `converted_at`, `lost_at`, event
    `timestamp`) as the contract will, ignores dates before `ingest.min_date`, and leaves an
    isolated top tail out (`features.snapshots.robust_max`), so a lead typed as 2062 is
    still rejected; an end after the wall clock gives the clock.
    """
    if configured is not None:
        return _resolve_now(configured), "config"
    if exported_at is not None:
        return to_naive_utc(exported_at), "exported_at"
    clock = utc_now()
    end = raw_data_end(raw_leads, raw_events, options, events_options or options)
    if end is not None and end <= clock:
        return end, "data end"
    return clock, "clock"


def raw_data_end(
    raw_leads: pd.DataFrame,
    raw_events: pd.DataFrame | None,
    options: ReadOptions,
    events_options: ReadOptions,
) -> pd.Timestamp | None:
    """The robust latest date of the raw leads and events (None without any date)."""
    start = to_naive_utc(options.min_date)
    parts = [parse_dates(raw_leads[c], options.for_column(c)) for c in LEADS_DATE_COLUMNS
             if c in raw_leads.columns]
    if raw_events is not None:
        parts += [parse_dates(raw_events[c], events_options.for_column(c))
                  for c in EVENTS_DATE_COLUMNS if c in raw_events.columns]
    if not parts:
        return None
    moments = pd.concat([p.reset_index(drop=True) for p in parts], ignore_index=True).dropna()
    moments = moments[moments >= start]
    if moments.empty:
        return None
    return to_naive_utc(robust_max(moments))


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
    """A rejects file: formula cells neutralised like the scored CSV (personal columns are
    already masked by `pipeline.contract`)."""
    neutralise(frame).to_csv(path, index=False, encoding="utf-8")
