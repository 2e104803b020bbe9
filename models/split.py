"""Train / calibration / test assignment of snapshot rows, by lead.

A lead (all of its snapshots) always lands in exactly one part. With creation times the
split is by time: the oldest leads train, the next ones calibrate, the newest test. Without
them, `stratified_split` is the fallback and says so in a warning the caller logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.settings import InputError, InsufficientDataError, SettingsError

__all__ = [
    "PARTS",
    "STRATIFIED_WARNING",
    "SplitResult",
    "split_leads",
    "stratified_split",
    "time_split",
    "validation_slice",
]

#: Part names, in time order.
PARTS: tuple[str, str, str] = ("train", "calibration", "test")

STRATIFIED_WARNING = (
    "no created_at: stratified random split; test leads are not later than training "
    "leads, so the metrics are optimistic about drift"
)


@dataclass(frozen=True)
class SplitResult:
    """A split and how it was made. `parts` is aligned with the input frame's index."""

    parts: pd.Series
    method: str  # "time" | "stratified"
    warning: str | None = None

    def counts(self) -> dict[str, int]:
        """Rows per part."""
        return {part: int((self.parts == part).sum()) for part in PARTS}


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise SettingsError(f"`fractions` must be (train, calibration, test); got {fractions!r}")
    for name, f in zip(PARTS, fractions, strict=True):
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise SettingsError(f"`split.{name}` must be in (0, 1); got {f!r}")
    if abs(sum(fractions) - 1) > 1e-6:
        raise SettingsError(f"`split` fractions must sum to 1; got {sum(fractions):g}")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _require(frame: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise InputError(f"frame is missing column(s) {missing}; has {list(frame.columns)}")
    if frame[cols[0]].isna().any():
        raise InputError(f"`{cols[0]}` has {int(frame[cols[0]].isna().sum())} missing values")


def _cut_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Number of leads before the first and the second cut."""
    first = int(round(fractions[0] * n))
    second = int(round((fractions[0] + fractions[1]) * n))
    return first, second


def time_split(
    frame: pd.DataFrame,
    created_col: str = "created_at",
    lead_col: str = "lead_id",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> pd.Series:
    """'train' / 'calibration' / 'test' per row, by lead creation time.

    Distinct leads are sorted by (creation time, lead id) and cut at the cumulative
    fractions; a cut never separates leads created at the same moment (they go to the
    earlier part), so every test lead is created strictly after every training lead.
    Returns a Series named "split" on the frame's index.
    """
    fr = _check_fractions(fractions)
    _require(frame, lead_col, created_col)
    created = pd.to_datetime(frame[created_col])
    if created.isna().any():
        raise InputError(f"`{created_col}` has {int(created.isna().sum())} missing values")
    per_lead = created.groupby(frame[lead_col].to_numpy()).min()
    leads = (
        pd.DataFrame({"lead": per_lead.index, "created": per_lead.to_numpy()})
        .sort_values(["created", "lead"], kind="stable")
        .reset_index(drop=True)
    )
    n = len(leads)
    if n < 3:
        raise InsufficientDataError(f"time_split needs at least 3 leads; got {n}")
    first, second = _cut_counts(n, fr)
    times = leads["created"].to_numpy()
    # Move each cut forward past leads tied with the last lead before it.
    cuts = []
    for cut in (first, second):
        cut = max(cut, 1)
        while 0 < cut < n and times[cut] == times[cut - 1]:
            cut += 1
        cuts.append(cut)
    part = np.full(n, "test", dtype=object)
    part[: cuts[0]] = "train"
    part[cuts[0] : max(cuts)] = "calibration"
    assigned = pd.Series(part, index=leads["lead"].to_numpy())
    for name in PARTS:
        if not (assigned == name).any():
            raise InsufficientDataError(
                f"time_split left the {name} part empty ({n} leads, "
                f"{leads['created'].nunique()} distinct creation times)"
            )
    out = frame[lead_col].map(assigned)
    return pd.Series(out.to_numpy(dtype=object), index=frame.index, name="split").astype(str)


def stratified_split(
    frame: pd.DataFrame,
    label: str,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    lead_col: str = "lead_id",
) -> SplitResult:
    """Random split by lead, stratified by the lead's label (1 if any snapshot converts).

    For data without creation times. The result carries `STRATIFIED_WARNING` for the
    caller to log: test leads are not later than training leads.
    """
    fr = _check_fractions(fractions)
    _require(frame, lead_col, label)
    labels = frame[label]
    if labels.isna().any() or not labels.isin([0, 1]).all():
        raise InputError(f"`{label}` must contain only 0 and 1")
    per_lead = labels.astype(int).groupby(frame[lead_col].to_numpy()).max().sort_index()
    if len(per_lead) < 3:
        raise InsufficientDataError(f"stratified_split needs at least 3 leads; got {len(per_lead)}")
    rng = np.random.default_rng(seed)
    assigned: dict[object, str] = {}
    for value in (0, 1):
        group = per_lead.index[per_lead.to_numpy() == value].to_numpy()
        group = group[rng.permutation(group.size)]
        first, second = _cut_counts(group.size, fr)
        for i, lead in enumerate(group):
            assigned[lead] = "train" if i < first else "calibration" if i < second else "test"
    parts = pd.Series(
        frame[lead_col].map(assigned).to_numpy(dtype=object), index=frame.index, name="split"
    ).astype(str)
    return SplitResult(parts=parts, method="stratified", warning=STRATIFIED_WARNING)


def split_leads(
    frame: pd.DataFrame,
    label: str,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    created_col: str = "created_at",
    lead_col: str = "lead_id",
) -> SplitResult:
    """Time split when `created_col` exists and is complete, else the stratified fallback."""
    if created_col in frame.columns and frame[created_col].notna().all():
        parts = time_split(frame, created_col=created_col, lead_col=lead_col, fractions=fractions)
        return SplitResult(parts=parts, method="time")
    return stratified_split(frame, label, fractions=fractions, seed=seed, lead_col=lead_col)


def validation_slice(
    train_part: pd.DataFrame,
    fraction: float,
    created_col: str = "created_at",
    lead_col: str = "lead_id",
    seed: int | None = None,
) -> pd.Series:
    """Boolean mask (True = validation) of the most recent `fraction` of training leads.

    Used for early stopping. Without `created_col` a seeded random share of leads is taken
    instead (pass `seed`). All snapshots of a lead fall on the same side.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise SettingsError(f"`train.validation_fraction` must be in (0, 1); got {fraction!r}")
    has_time = created_col in train_part.columns
    _require(train_part, lead_col, *((created_col,) if has_time else ()))
    lead_ids = train_part[lead_col].to_numpy()
    if has_time:
        created = pd.to_datetime(train_part[created_col])
        if created.isna().any():
            raise InputError(f"`{created_col}` has {int(created.isna().sum())} missing values")
        per_lead = created.groupby(lead_ids).min()
        ordered = (
            pd.DataFrame({"lead": per_lead.index, "created": per_lead.to_numpy()})
            .sort_values(["created", "lead"], kind="stable")["lead"]
            .to_numpy()
        )
    else:
        if seed is None:
            raise SettingsError(f"no `{created_col}` column: pass `seed` for a random slice")
        ordered = np.sort(pd.unique(lead_ids))
        ordered = ordered[np.random.default_rng(seed).permutation(ordered.size)]
    n = ordered.size
    n_val = int(round(fraction * n))
    if n_val < 1 or n_val >= n:
        raise InsufficientDataError(
            f"validation_slice: {fraction:g} of {n} training leads leaves an empty part"
        )
    mask = pd.Index(lead_ids).isin(ordered[n - n_val :])
    return pd.Series(mask, index=train_part.index, name="is_validation")
