"""`features` stage: point-in-time training snapshots, their features, the leakage audit.

Reads `paths.interim/{leads,events}.parquet`; writes `paths.features/train.parquet`
(spine + label + features), `paths.features/meta.json` (snapshot counts, feature list and
groups) and `paths.reports/leakage_audit.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from features.audit import leakage_audit
from features.build import build_features, feature_columns, feature_groups
from features.fit import CONTRACT_FIT_COLUMNS, KNOWN_COLUMNS
from features.settings import FeatureSettings, SnapshotSettings
from features.snapshots import data_end, snapshot_report, training_spine
from pipeline.errors import ConfigError, DataError
from pipeline.io import write_json, write_parquet

log = logging.getLogger(__name__)
SPINE = ("lead_id", "as_of", "age_days", "created_at", "label")


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


def run(
    leads: pd.DataFrame, events: pd.DataFrame | None, snap: SnapshotSettings, fs: FeatureSettings
) -> tuple[pd.DataFrame, dict, dict]:
    """(training frame, meta, leakage audit) from validated tables; no IO."""
    end = data_end(leads, events)
    spine = training_spine(leads, snap, end)
    if spine.empty:
        raise DataError(
            f"no training snapshots: every (lead, age) snapshot is censored or already "
            f"converted (data end {end:%Y-%m-%d}, ages {list(snap.ages_days)} days, horizon "
            f"{snap.horizon_days} days). Use shorter snapshots.ages_days or label.horizon_days.",
        )
    frame = build_features(spine, leads, events, fs)
    cols = feature_columns(frame, SPINE)
    audit = leakage_audit(
        audit_frame(frame, leads),
        label="label",
        settings=fs,
        columns=cols + raw_attribute_columns(leads, cols),
    )
    meta = {
        "data_end": end.isoformat(),
        "snapshots": snapshot_report(leads, snap, end),
        "horizon_days": snap.horizon_days,
        "n_rows": len(frame),
        "n_features": len(cols),
        "features": cols,
        "groups": feature_groups(cols, fs),
    }
    return frame, meta, audit


def from_params(params: Any) -> dict:
    """CLI entry (`leadprop features`)."""
    snap, fs = feature_settings(params)
    leads, events = read_interim(Path(params.paths.interim))
    frame, meta, audit = run(leads, events, snap, fs)
    out = Path(params.paths.features)
    write_parquet(out / "train.parquet", frame)
    write_json(out / "meta.json", meta)
    write_json(Path(params.paths.reports) / "leakage_audit.json", audit)
    suspects = [s for s in audit.get("suspects", []) if not s.get("safe") and not s.get("excluded")]
    for s in suspects[:10]:
        log.warning(
            "leakage suspect %s (score %.2f): %s", s["column"], s["score"], "; ".join(s["reasons"])
        )
    return {
        "rows": meta["n_rows"],
        "positives": meta["snapshots"]["positives"],
        "features": meta["n_features"],
        "leakage_suspects": [s["column"] for s in suspects],
        "dropped": meta["snapshots"]["dropped"],
    }
