"""Pure feature logic: DataFrames and typed settings in, feature frames out.

Training (the `features` stage)::

    snap = SnapshotSettings.from_params(params["snapshots"], params["label"])
    feat = FeatureSettings.from_params(params["features"])
    spine = training_spine(leads, snap, data_end(leads, events))   # + spine.attrs["dropped"]
    frame = build_features(spine, leads, events, feat)
    audit = leakage_audit(frame_with_raw_lead_columns, settings=feat)
    columns = feature_columns(frame); levels = category_levels(frame[columns])

Scoring::

    open_, not_open = scoring_spine(leads, as_of)                   # not_open has `reason`
    frame = build_features(open_, leads, events, feat)
    X = align_features(frame, columns, levels)                      # training shape

Modules: `settings` (validated settings), `snapshots` (spine and labels), `behaviour`
(event aggregates strictly before as_of), `fit` (lead attributes), `build` (assembly,
report groups, scoring alignment), `audit` (leakage audit). Nothing here reads a file
except the shipped domain lists in `resources/`.
"""

from features.audit import leakage_audit
from features.build import (
    align_features,
    build_features,
    category_levels,
    feature_columns,
    feature_groups,
)
from features.settings import FeatureSettings, SettingsError, SnapshotSettings
from features.snapshots import data_end, scoring_spine, snapshot_report, training_spine

__all__ = [
    "FeatureSettings",
    "SettingsError",
    "SnapshotSettings",
    "align_features",
    "build_features",
    "category_levels",
    "data_end",
    "feature_columns",
    "feature_groups",
    "leakage_audit",
    "scoring_spine",
    "snapshot_report",
    "training_spine",
]
