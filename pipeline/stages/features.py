"""`features` stage: point-in-time training snapshots, their features, the leakage audit.

Reads `paths.interim/{leads,events}.parquet`; writes `paths.features/train.parquet`
(spine + label + features), `paths.features/meta.json` (snapshot counts, feature list and
groups) and `paths.reports/leakage_audit.json` (one entry per feature or source column,
plus `activity_after_outcome`), as one unit behind `paths.features/manifest.json`
(`write_outputs`); `train`, `evaluate` and `register` check it (`FEATURE_FILES`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from features.audit import activity_after_outcome, leakage_audit
from features.behaviour import sanitize
from features.build import build_features, feature_columns, feature_groups
from features.fit import CONTRACT_FIT_COLUMNS, KNOWN_COLUMNS
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, sample_spine, snapshot_report, training_spine
from pipeline.errors import ConfigError, DataError
from pipeline.io import MANIFEST_FILE, check_manifest, dump_json, write_group
from pipeline.spark.session import check_engine

log = logging.getLogger(__name__)
SPINE = ("lead_id", "as_of", "age_days", "created_at", "label")
#: What the later stages read from `paths.features` (written together, `write_outputs`).
FEATURE_FILES = ("train.parquet", "meta.json")


def feature_settings(params: Any) -> tuple[SnapshotSettings, FeatureSettings]:
    """Typed snapshot and feature settings from params (ConfigError on bad values)."""
    try:
        return (
            SnapshotSettings.from_params(params.snapshots, params.label),
            FeatureSettings.from_params(params.features),
        )
    except ValueError as err:
        raise ConfigError(f"params: {err}") from err


def read_interim(interim: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated leads and events written by `ingest`."""
    leads_path, events_path = interim / "leads.parquet", interim / "events.parquet"
    if not leads_path.exists():
        raise DataError(
            f"{leads_path}: not found; run `leadprop ingest` (or `dvc repro`) first",
            file=str(leads_path),
        )
    check_manifest(interim, [leads_path.name, events_path.name])  # written together?
    leads = pd.read_parquet(leads_path)
    events = pd.read_parquet(events_path) if events_path.exists() else None
    return leads, events


def raw_attribute_columns(leads: pd.DataFrame, features: list[str]) -> list[str]:
    """Raw lead columns the audit also inspects: every attribute except keys, outcomes,
    personal data, hashed ids (`_`-prefixed, see `ingest.personal_data: hash`) and free text
    (excluded columns included, so the audit still shows them)."""
    skip = set(KNOWN_COLUMNS) - set(CONTRACT_FIT_COLUMNS)
    return [c for c in leads.columns if c not in skip and c not in features
            and not str(c).startswith("_")]


def audit_frame(frame: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """The training frame plus the raw lead attributes, joined by lead_id (no copy of
    personal columns)."""
    raw = raw_attribute_columns(leads, list(frame.columns))
    if not raw:
        return frame
    rows = pd.Index(leads["lead_id"].astype(str)).get_indexer(frame["lead_id"].astype(str))
    attrs = leads[raw].take(rows).set_axis(frame.index)
    return pd.concat([frame, attrs], axis=1)


def source_features(raw: list[str], features: list[str]) -> dict[str, list[str]]:
    """Raw lead column -> the `extra_<col>` / `extra_<col>_days` (and, for contract fit
    columns, `fit_<col>` / `fit_<col>_rank`) features made from it, so
    the audit lists each source column once (under its own name) and says which model
    features it feeds."""
    slug = {f"extra_{sanitize(c)}": c for c in raw}
    for c in raw:
        if c in CONTRACT_FIT_COLUMNS:  # fit_budget, fit_budget_rank <- budget
            slug.update({f"fit_{c}": c, f"fit_{c}_rank": c})
    out: dict[str, list[str]] = {c: [] for c in raw}
    for f in features:
        base = f[: -len("_days")] if f.endswith("_days") and f not in slug else f
        if base in slug:
            out[slug[base]].append(f)
    return out


def run(
    leads: pd.DataFrame, events: pd.DataFrame | None, snap: SnapshotSettings, fs: FeatureSettings,
    *, build: Callable[..., pd.DataFrame] = build_features, end: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, dict, dict]:
    """(training frame, meta, leakage audit) from validated tables; no IO. `build` makes
    the features (`build_features`, or the Spark engine's builder, which also carries the
    audit's `activity_after_outcome`); `end` is the data end when the caller has it (the
    Spark engine summarises the events where they are), else `data_end(leads, events)`."""
    end = data_end(leads, events) if end is None else end
    spine = training_spine(leads, snap, end)
    if spine.empty:
        raise DataError(
            f"no training snapshots: every (lead, age) snapshot is censored or already "
            f"converted (data end {end:%Y-%m-%d}, ages {list(snap.ages_days)} days, horizon "
            f"{snap.horizon_days} days). Use shorter snapshots.ages_days or label.horizon_days.",
        )
    sampling = None
    if snap.sample_leads is not None:  # at scale: a sample of leads one machine holds
        spine, sampling = sample_spine(spine, snap.sample_leads, snap.sample_seed)
    frame = build(spine, leads, events, fs)
    cols = feature_columns(frame, SPINE)
    raw = raw_attribute_columns(leads, cols)
    fed = source_features(raw, cols)
    from_raw = {f for fs_ in fed.values() for f in fs_}
    audit = leakage_audit(
        audit_frame(frame, leads),
        label="label",
        settings=fs,
        columns=[c for c in cols if c not in from_raw] + raw,
    )
    for rep in audit["columns"]:
        rep["features"] = fed.get(rep["column"], [rep["column"]])
    audit["activity_after_outcome"] = (getattr(build, "activity_after_outcome", None)
                                       or activity_after_outcome(leads, events))
    meta = {
        "data_end": end.isoformat(),
        "snapshots": snapshot_report(leads, snap, end),
        "horizon_days": snap.horizon_days,
        "n_rows": len(frame),
        "n_features": len(cols),
        "features": cols,
        "groups": feature_groups(cols, fs),
    }
    if sampling is not None:
        meta["sampling"] = sampling
    return frame, meta, audit


def from_params(params: Any, *, engine: str | None = None, events: str | None = None) -> dict:
    """CLI entry (`leadprop features [--engine spark] [--events SOURCE]`)."""
    snap, fs = feature_settings(params)
    if check_engine(engine or getattr(params, "engine", "embedded")) == "spark":  # -> Spark
        from pipeline.spark.features import spark_inputs

        leads, end, build = spark_inputs(params, events)
        frame, meta, audit = run(leads, None, snap, fs, build=build, end=end)
    else:
        if events is not None:
            raise ConfigError("`--events` (another events source) needs --engine spark; the "
                              "embedded engine reads paths.interim/events.parquet")
        leads, ev = read_interim(Path(params.paths.interim))
        frame, meta, audit = run(leads, ev, snap, fs)
    out = Path(params.paths.features)
    write_outputs(out, Path(params.paths.reports), frame, meta, audit)
    for s in audit["suspects"][:10]:
        log.warning(
            "leakage suspect %s (score %.2f): %s", s["column"], s["score"], "; ".join(s["reasons"])
        )
    return summary(meta, audit)


def write_outputs(out: Path, reports: Path, frame: pd.DataFrame, meta: dict,
                  audit: dict) -> None:
    """Write the training frame, its meta and the leakage audit as one unit: temp files,
    renames, then `out/manifest.json` of their hashes (`pipeline.io.write_group`), so a kill
    part-way is refused by the next stage instead of pairing a new frame with an old meta."""
    write_group(
        [(out / "train.parquet", lambda tmp: frame.to_parquet(tmp, index=False)),
         (out / "meta.json", lambda tmp: dump_json(meta, tmp)),
         (reports / "leakage_audit.json", lambda tmp: dump_json(audit, tmp))],
        manifest=out / MANIFEST_FILE, kill_name="features",
    )


def summary(meta: dict, audit: dict) -> dict:
    """The `leadprop features` summary: counts, and the audit's suspect, excluded and safe
    columns (`leakage`: column, status, score, why) and activity after the outcome."""
    rows = [{"column": s["column"], "status": "suspect", "score": s["score"],
             "why": "; ".join(s["reasons"])} for s in audit["suspects"]]
    rows += [{"column": r["column"], "status": r["status"], "score": r["score"],
              "why": r["reason"]} for r in audit.get("reviewed", [])]
    return {
        "rows": meta["n_rows"],
        "positives": meta["snapshots"]["positives"],
        "features": meta["n_features"],
        "leakage_suspects": [s["column"] for s in audit["suspects"]],
        "leakage": rows,
        "activity_after_outcome": audit.get("activity_after_outcome"),
        "dropped": meta["snapshots"]["dropped"],
        "sampling": meta.get("sampling"),
    }


def activity_sentence(act: dict | None) -> str:
    """One plain sentence on the events logged at or after the outcome date."""
    if not act or not act.get("leads_with_outcome_date"):
        return "Activity after the outcome: no lead has a conversion or lost date."
    if not act.get("events"):
        return (f"Activity after the outcome: {act['leads_with_outcome_date']} lead(s) have a "
                "conversion or lost date but no events.")
    return (
        f"Activity after the outcome: {act['share']:.0%} of the events of the "
        f"{act['leads_with_events']} lead(s) with a known conversion/lost date happen at or "
        f"after it ({act['events_at_or_after']} of {act['events']}). No training snapshot "
        "reached them (snapshots look only before their as_of), but the log keeps recording "
        "after the outcome: a column filled in or summarised later would know it."
    )


def render(result: dict) -> Any:
    """Rich renderable for the CLI: the counts, a leakage table and the activity line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    dropped = result.get("dropped") or {}
    head = Text(
        f"{result['rows']} training rows, {result['positives']} positive, "
        f"{result['features']} features; dropped snapshots: "
        + (", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none")
    )
    parts: list[Any] = [head]
    sampling = result.get("sampling")
    if sampling and sampling.get("sampled"):
        parts.append(Text(
            f"Training sample: {sampling['drawn_leads']:,} of {sampling['leads']:,} leads "
            f"({sampling['drawn_snapshots']:,} of {sampling['snapshots']:,} snapshots), by "
            f"lead, stratified by outcome (snapshots.sample_leads); weights in meta.json"))
    rows = result.get("leakage") or []
    n_sus = sum(r["status"] == "suspect" for r in rows)
    if rows:
        table = Table(title=f"Leakage audit: {n_sus} suspect(s), "
                      f"{len(rows) - n_sus} excluded/safe (reports/leakage_audit.json)",
                      show_lines=False, title_justify="left")
        table.add_column("column", overflow="fold")
        table.add_column("status")
        table.add_column("score", justify="right")
        table.add_column("why", overflow="fold", ratio=1)
        style = {"suspect": "bold red", "excluded": "yellow", "safe": "green"}
        for r in rows[:25]:
            table.add_row(str(r["column"]), Text(r["status"], style=style.get(r["status"], "")),
                          f"{r['score']:.2f}", str(r["why"]))
        parts.append(table)
        if len(rows) > 25:
            parts.append(Text(f"... and {len(rows) - 25} more in reports/leakage_audit.json"))
    else:
        parts.append(Text("Leakage audit: no suspects, nothing excluded or marked safe."))
    parts.append(Text(activity_sentence(result.get("activity_after_outcome"))))
    return Group(*parts)
