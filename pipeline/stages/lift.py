"""`lift` stage: does scoring raise conversion? Scored-and-routed leads against the holdout.

`leadprop lift --since DATE` reads the scored batches since DATE (the file history under
`<scored table>_history/`, or the SQL table with `--db`) and the outcomes the pipeline knows
now (the latest `leadprop ingest` of a newer export). Each lead counts once, from the first
batch since DATE that scored it: its `holdout` flag and bands then. It converted when its
`converted_at` lies after that batch's `as_of` and within `label.horizon_days`; a lead
whose window is not over at the data's end is left out (counted as `censored`), never a
non-conversion. A `revenue` lead column, if the export has one, is averaged per lead.

The comparison itself is `models.lift.lift_table`: conversion per arm with intervals, the
difference, time to conversion and a plain verdict, for all leads and per band. "N more
weeks at this volume" counts new held-out leads a week: those first scored since DATE over
the weeks from DATE to the last batch (leads still inside their window included, since
their outcomes are on the way), not the backlog of open leads a first batch holds. Writes
`reports/lift.json`; no IO outside that and the reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.snapshots import data_end as find_data_end
from models.lift import as_records, lift_table
from pipeline.errors import DataError
from pipeline.io import write_json

log = logging.getLogger(__name__)

LIFT_FILE = "lift.json"
BAND_COLUMNS = ("lifecycle_stage", "temperature")


def first_scored(history: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """One row per lead: its first batch at or after `since` (`lead_id`, `as_of`,
    `holdout`, band columns)."""
    for col in ("lead_id", "as_of"):
        if col not in history.columns:
            raise DataError(f"the scored batches have no {col!r} column; are they leadprop "
                            "scores?", column=col)
    at = pd.to_datetime(history["as_of"])
    rows = history.loc[at >= since].assign(as_of=at[at >= since])
    if rows.empty:
        first = at.min() if len(at) else None
        raise DataError(f"no scored batch since {since:%Y-%m-%d} (the first is "
                        f"{first:%Y-%m-%d}); pass an earlier --since" if first is not None
                        else "no scored batch yet: run `leadprop score` first", n_rows=0)
    if "holdout" not in rows.columns or rows["holdout"].isna().all():
        raise DataError(f"the {len(rows):,} scored rows since {since:%Y-%m-%d} carry no "
                        "holdout flag: they were scored with `score.holdout_share: 0` or "
                        "before the holdout existed. Score with a share > 0 (default 0.05) "
                        "and compare later.", column="holdout", n_rows=len(rows))
    rows = rows[rows["holdout"].notna()]
    rows = rows.sort_values(["as_of", "lead_id"], kind="stable")
    keep = [c for c in ("lead_id", "as_of", "holdout", *BAND_COLUMNS) if c in rows.columns]
    first = rows.drop_duplicates("lead_id", keep="first")[keep].reset_index(drop=True)
    return first.assign(lead_id=first["lead_id"].astype(str),
                        holdout=first["holdout"].astype(bool))


def attach_outcomes(first: pd.DataFrame, leads: pd.DataFrame, horizon_days: float,
                    end: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, int]]:
    """`converted`, `days_to_conversion` (and `revenue`) per first-scored lead; leads whose
    outcome window is not over at `end`, or missing from `leads`, are dropped and counted."""
    horizon = pd.Timedelta(days=float(horizon_days))
    known = leads.assign(lead_id=leads["lead_id"].astype(str)).drop_duplicates("lead_id")
    cols = ["lead_id", *[c for c in ("converted_at", "revenue") if c in known.columns]]
    joined = first.merge(known[cols], on="lead_id", how="left", indicator=True)
    missing = joined["_merge"] == "left_only"
    open_window = joined["as_of"] + horizon > end
    conv_at = (pd.to_datetime(joined["converted_at"]) if "converted_at" in joined
               else pd.Series(pd.NaT, index=joined.index))
    converted = (conv_at > joined["as_of"]) & (conv_at <= joined["as_of"] + horizon)
    out = joined.assign(converted=converted.astype(np.int64),
                        days_to_conversion=(conv_at - joined["as_of"]).dt.total_seconds()
                        / 86_400).loc[~missing & ~open_window].drop(columns="_merge")
    out.loc[out["converted"] == 0, "days_to_conversion"] = np.nan
    counts = {"first_scored": int(len(first)), "compared": int(len(out)),
              "censored": int((open_window & ~missing).sum()),
              "not_in_export": int(missing.sum())}
    return out.drop(columns=["converted_at"], errors="ignore"), counts


def run(history: pd.DataFrame, leads: pd.DataFrame, since: pd.Timestamp, horizon_days: float,
        end: pd.Timestamp, min_effect: float = 0.2) -> dict[str, Any]:
    """The lift report (no IO)."""
    first = first_scored(history, since)
    outcomes, counts = attach_outcomes(first, leads, horizon_days, end)
    if outcomes.empty:
        raise DataError(f"none of the {counts['first_scored']:,} leads scored since "
                        f"{since:%Y-%m-%d} has a finished outcome window yet "
                        f"({horizon_days:g} days; data end {end:%Y-%m-%d}): compare later, "
                        "on a newer export", n_rows=0)
    # the volume ahead: new held-out leads a week since `since` (censored ones included:
    # their outcomes come later), not the backlog of open leads in the first batch
    last = pd.to_datetime(history["as_of"]).max()
    weeks = max(float((last - since) / pd.Timedelta(days=7)), 1.0)
    per_week = float(first["holdout"].sum()) / weeks
    bands = tuple(c for c in BAND_COLUMNS if c in outcomes.columns)
    rows = lift_table(outcomes, weeks=weeks, band_columns=bands, min_effect=min_effect,
                      holdout_per_week=per_week)
    return {"since": since.isoformat(), "data_end": end.isoformat(),
            "horizon_days": float(horizon_days), "weeks": weeks,
            "holdout_per_week": per_week, "counts": counts,
            "verdict": rows[0].verdict, "rows": as_records(rows)}


def read_history(params: Any, db: str | None, table: str | None) -> pd.DataFrame:
    """The scored batches of this source: the SQL table with `db`, else the file history."""
    from pipeline import outputs, scoring_io

    if db:
        target = scoring_io.SqlTarget(db, table or scoring_io.default_table(params.source_key))
        engine = scoring_io.open_engine(target)
        try:
            return scoring_io.read_batches(engine, target.table)
        finally:
            engine.dispose()
    out = scoring_io.default_out(params.paths.scored, params.source_key)
    folder = out.parent / f"{out.name}_history"
    if not folder.exists():
        raise DataError(f"{folder}: no scored-batch history; run `leadprop score` (with "
                        "`score.history: true`) or pass --db", file=str(folder))
    return outputs.read_history(folder)


def from_params(params: Any, since: str, db: str | None = None, table: str | None = None,
                min_effect: float = 0.2) -> dict[str, Any]:
    """CLI entry (`leadprop lift`)."""
    from pipeline.stages.features import read_interim

    try:
        moment = pd.Timestamp(since)
    except (ValueError, TypeError):
        raise DataError(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    history = read_history(params, db, table)
    leads, events = read_interim(Path(params.paths.interim))
    end = find_data_end(leads, events)
    horizon = float((params.label or {}).get("horizon_days", 30))
    result = run(history, leads, moment, horizon, end, min_effect)
    path = Path(params.paths.reports) / LIFT_FILE
    write_json(path, result)
    result["file"] = str(path)
    return result


def render(result: dict[str, Any]) -> Any:
    """A rich table: per group, both arms' conversion and the verdict."""
    from pipeline.console import num, summary_table

    rows = []
    for r in result["rows"]:
        t, h = r["treated"], r["holdout"]

        def rate(arm: dict) -> str:
            return "—" if not arm["n"] else (f"{100 * arm['rate']:.1f} % of {arm['n']:,} "
                                             f"({100 * arm['low']:.1f}–{100 * arm['high']:.1f})")

        rows.append((r["group"], rate(t), rate(h), r["verdict"]))
    c = result["counts"]
    title = (f"lift since {result['since'][:10]}: {num(c['compared'])} leads compared, "
             f"{num(c['censored'])} still inside their {result['horizon_days']:g}-day window")
    return summary_table(title, rows, headers=("group", "scored and routed", "held out",
                                               "verdict"), text_columns=("verdict",))
