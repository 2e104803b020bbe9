"""`score` stage: the open leads as of one moment -> a scored table + an MLflow run.

Two ways in (`from_params`):

- **params mode** (`leadprop score`, the DVC stage): the validated `paths.interim/
  {leads,events}.parquet` written by `ingest`; as_of = `score.as_of`, or when null the end
  of the data (`features.snapshots.data_end`).
- **export mode** (`leadprop score --leads FILE [--events FILE]`): a raw CSV/Parquet export
  in the canonical contract, validated with the ingest code (`pipeline.contract`); rows it
  sets aside go to the batch's rejects file. `converted` is not required for scoring (open
  leads have no outcome): a missing column, or an empty cell, is read as 1 when the row has
  a `converted_at` and 0 otherwise. as_of defaults to now.

Then the pure scoring core `models.scoring.score_open_leads` (the same one the registered
MLflow model runs): the open leads at as_of (`scoring_spine`: created by then, neither
converted nor lost) get their features from the same code as training (`build_features`
with the `features` params, then `align_features` to the model's columns and category
levels), in chunks of `chunk_size` leads; the events file is never read whole:
`pipeline.streaming` reads it one bucket of leads at a time (at most `score.chunk_events`
events in memory) and calls the core per chunk. The model is the MLflow pyfunc at
`score.model` (an alias is resolved to its version first, so the version recorded is the
one that scored). The table, one row per open lead, sorted by propensity (ties: lead_id):

`lead_id`, `as_of`, `propensity`, `score` (1-99), `temperature`, `lifecycle_stage` (one
column per band set of the model), `previous_temperature`, `previous_lifecycle_stage`,
`movement` (`new` / `up` / `down` / `same`: the lifecycle stage decides, then the
temperature; `new` when the lead was not in the previous batch), `score_change`,
`change_reasons`, `reasons`, `model_version`, `scored_at`, `batch_id`.

`score_change` / `change_reasons` (`score.attribution`, `models.attribution`): for a lead in
the previous batch, its score minus the published one there, split into the model part (the
previous batch's model version, loaded from the registry, on the same features) and one part
per feature family (the same model, features rebuilt at the previous as_of from this batch's
leads and events, so only events before that moment), with the top one or two causes in
words. The rebuild happens per chunk inside the scoring core's call (`score_with_changes`),
so the events are still read only once, bucket by bucket. The biggest movers go to
`<out>.movers.csv` and the MLflow run (`score_changes/movers.csv`, metrics
`score_changes.*`). An old model that cannot be loaded leaves the points and says why in
the words; with `enabled: false` the two columns are left out.

`reasons` are the model's top reasons (`ScoringBundle.explain`) with "▲ " marking a reason
for and "▼ " one against (instead of "+ " / "− "), so no cell starts like a formula.

Determinism: `batch_id` is `<as_of>-<hash of as_of, model and input files>`, and everything
but `scored_at` (a parameter, default: now) depends only on the inputs, as_of and the model
version. Re-running a batch gives the same rows; in SQL it replaces the batch's rows. The
previous batch is the latest one *before* this as_of (the previous output file, or the SQL
table), so re-runs also give the same change columns.

Counts reconcile: input leads = scored + not open (by reason) + rejected, checked before
anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.settings import FeatureSettings
from features.snapshots import NOT_OPEN_REASONS, data_end
from models import drift
from models.attribution import PreviousBatch, change_summary, explain_changes
from models.holdout import HoldoutSpec
from models.scoring import (  # noqa: F401 - the scoring core, re-exported for callers
    CHUNK_SIZE,
    REASON_MARKS,
    MissingFeaturesError,
    ScoredLeads,
    band_orders,
    missing_fit_columns,
    pin_extra_types,
    score_open_leads,
)
from models.settings import SettingsError
from models.subscores import SCORED_COLUMNS
from pipeline import outputs, scoring_io, streaming, tracking
from pipeline.contract import (
    EVENTS_REQUIRED,
    empty_events,
    empty_rejects,
    fill_outcome,
    parse_moment,
    utc_now,
    validate_events,
    validate_leads,
)
from pipeline.errors import ConfigError, DataError
from pipeline.io import check_manifest, read_json, write_json
from pipeline.model_store import ModelRef, check_trusted, lineage, load_model, same_lineage
from pipeline.readers import ReadOptions, read_table
from pipeline.spark.session import check_engine

log = logging.getLogger(__name__)

MOVEMENTS = ("new", "up", "down", "same")
#: The marks of a cause's points in `change_reasons`: never "+"/"-" first (Excel formulas).
CHANGE_SIGNS = ("▲ +", "▼ −")
CHANGE_COLUMNS = ("score_change", "change_reasons")
#: Band columns compared first when deciding `movement`.
BAND_PRIORITY = ("lifecycle_stage", "temperature")
_PROGRESS_MIN = 20_000


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """Validated leads and events, what was set aside, and how many rows came in."""

    leads: pd.DataFrame
    events: pd.DataFrame
    rejects: pd.DataFrame
    rejects_events: pd.DataFrame
    n_leads: int
    n_events: int
    leads_file: Path
    events_file: Path | None


def read_export(leads_path: Path, events_path: Path | None, options: ReadOptions,
                now: pd.Timestamp) -> Inputs:
    """Read and validate a raw export (`pipeline.readers` + `pipeline.contract`).

    File-level problems (missing file, empty file, missing required column...) raise
    DataError; bad rows become rejects with their reason.
    """
    leads_path = Path(leads_path)
    raw = read_table(leads_path, options, "leads")
    filled, how = fill_outcome(raw)
    leads, rejects = validate_leads(filled, str(leads_path), options)
    if how == "added":
        rejects = rejects.drop(columns="converted")
    elif how == "filled" and len(rejects):
        rejects["converted"] = raw.loc[rejects["source_row"], "converted"].to_numpy()
    if events_path is None:
        events, rejects_events, n_events = empty_events(), empty_rejects(EVENTS_REQUIRED), 0
    else:
        events, rejects_events, n_events = _validated_events(events_path, leads, rejects,
                                                             options, now)
    return Inputs(leads, events, rejects, rejects_events, len(raw), n_events, leads_path,
                  Path(events_path) if events_path is not None else None)


def _validated_events(path: Path, leads: pd.DataFrame, rejects: pd.DataFrame,
                      options: ReadOptions, now: pd.Timestamp
                      ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    raw = read_table(Path(path), options, "events")
    ids = rejects["lead_id"].astype("str").str.strip() if "lead_id" in rejects else []
    events, rejected = validate_events(raw, leads, str(path), options, now,
                                       rejected_lead_ids=[i for i in ids if i])
    return events, rejected, len(raw)


def read_interim(leads_path: Path, events_path: Path | None, options: ReadOptions,
                 now: pd.Timestamp, validate_events_file: bool = False) -> Inputs:
    """The typed tables `ingest` wrote (already validated; its rejects are in
    `paths.interim/rejects_*.csv`). An events file given explicitly is validated."""
    leads_path = Path(leads_path)
    if not leads_path.is_file():
        raise DataError(f"{leads_path}: not found; run `leadprop ingest` (or `dvc repro`) "
                        "first, or pass an export with --leads", file=str(leads_path))
    check_manifest(leads_path.parent)  # ingest's tables and report written together?
    leads = pd.read_parquet(leads_path)
    if leads.empty:
        raise DataError(f"{leads_path}: the leads table has no rows: there is nothing to "
                        "score. Check the export that `ingest` read.", file=str(leads_path),
                        n_rows=0)
    rejects = empty_rejects(leads.columns)
    if events_path is None or not Path(events_path).is_file():
        if events_path is not None:
            raise DataError(f"{events_path}: the events file does not exist",
                            file=str(events_path))
        events, rejects_events, n_events = empty_events(), empty_rejects(EVENTS_REQUIRED), 0
    elif validate_events_file:
        events, rejects_events, n_events = _validated_events(events_path, leads, rejects,
                                                             options, now)
    else:
        events = pd.read_parquet(events_path)
        rejects_events, n_events = empty_rejects(events.columns), len(events)
    return Inputs(leads, events, rejects, rejects_events, len(leads), n_events, leads_path,
                  Path(events_path) if events_path is not None else None)


# ---------------------------------------------------------------------------- scoring


def check_fit_columns(leads: pd.DataFrame, bundle: Any, file: str,
                      allow_missing: bool = False) -> list[str]:
    """The lead columns the model's fit features came from (its `input_contract`) that
    `leads` lacks. DataError naming them unless `allow_missing`; then a loud warning, and
    the list goes to the batch summary and the MLflow run (tag `missing_fit_columns`)."""
    contract = (getattr(bundle, "metadata", None) or {}).get("input_contract") or {}
    if "fit_columns" not in contract:
        log.info("the model records no fit columns (trained by an older leadprop): the "
                 "missing-column check is skipped")
        return []
    gone = missing_fit_columns(list(leads.columns), contract["fit_columns"])
    if gone and not allow_missing:
        raise DataError(
            f"{file}: lead column(s) {', '.join(gone)} missing: the model's fit features come "
            f"from them (trained on source {contract.get('source')!r}), so all {len(leads):,} "
            "leads would be scored as 'unknown' there. Add the column(s) to the export or map "
            "them in the source configuration (empty values are fine where unknown), or pass "
            "--allow-missing to score without them.",
            file=file, column=gone[0], n_rows=len(leads))
    if gone:
        log.warning("--allow-missing: %s lack(s) %s, which the model's fit features come from; "
                    "every lead is scored as 'unknown' there, so scores are less sharp",
                    file, ", ".join(gone))
    return gone


def _has_rows(path: Path) -> bool:
    """False only for a readable Parquet table with no rows (a lead-level export's events);
    a damaged file counts as having rows, so its reader reports it."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows > 0
    except Exception:  # noqa: BLE001 - the events reader names the problem
        return True


def holdout_spec(params: Any) -> HoldoutSpec | None:
    """The batch's holdout (`score.holdout_share` of open leads, keyed by the source)."""
    share = float(getattr(params.score, "holdout_share", 0.0) or 0.0)
    if share <= 0:
        return None
    return HoldoutSpec(share, params.score.holdout_key, params.source_key)


def score_leads(leads: pd.DataFrame, events: pd.DataFrame | None, bundle: Any,
                fs: FeatureSettings, as_of: pd.Timestamp, *, file: str = "leads",
                **kwargs: Any) -> ScoredLeads:
    """`models.scoring.score_open_leads` (same keyword arguments) with its errors as
    DataError / ConfigError naming `file`."""
    try:
        return score_open_leads(leads, events, bundle, fs, as_of, **kwargs)
    except MissingFeaturesError as err:
        raise DataError(f"{file}: {err}", file=file,
                        column=err.missing[0] if err.missing else None) from None
    except SettingsError as err:
        raise ConfigError(str(err)) from None


def add_changes(table: pd.DataFrame, previous: pd.DataFrame | None,
                orders: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """`previous_<band>` per band column and `movement`: 'new' when the lead is not in the
    previous batch, else the direction of the first band column whose band changed
    ('up' / 'down'; `lifecycle_stage` is looked at first, then `temperature`, then any
    other), else 'same'. A previous band the current model does not know is not compared."""
    first = [c for c in BAND_PRIORITY if c in orders]
    orders = {c: orders[c] for c in [*first, *[c for c in orders if c not in first]]}
    out = table.copy()
    n = len(out)
    prev = previous if previous is not None else pd.DataFrame({"lead_id": pd.Series(dtype="str")})
    prev = prev.drop_duplicates("lead_id", keep="last").set_index("lead_id")
    pos = prev.index.get_indexer(out["lead_id"].astype(str))
    found = pos >= 0
    direction = np.zeros(n, np.int8)
    decided = np.zeros(n, bool)
    for col, names in orders.items():
        if col in prev.columns:
            before = prev[col].to_numpy(dtype=object)[np.maximum(pos, 0)] if len(prev) else \
                np.full(n, None, dtype=object)
            before = np.where(found, before, None)
        else:
            before = np.full(n, None, dtype=object)
        out[f"previous_{col}"] = pd.Series(before, index=out.index, dtype="str")
        rank = {name: i for i, name in enumerate(names)}
        now_r = out[col].map(rank).to_numpy(dtype=float)
        before_r = pd.Series(before).map(rank).to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            d = np.nan_to_num(np.sign(now_r - before_r)).astype(np.int8)
        take = ~decided & (d != 0)
        direction[take] = d[take]
        decided |= take
    movement = np.where(~found, "new", np.where(direction > 0, "up",
                                                np.where(direction < 0, "down", "same")))
    out["movement"] = pd.Series(movement, index=out.index, dtype="str")
    return out


def score_with_changes(leads: pd.DataFrame, events: pd.DataFrame | None, bundle: Any,
                       fs: FeatureSettings, as_of: pd.Timestamp, *, core: Any,
                       previous: PreviousBatch, **kwargs: Any) -> ScoredLeads:
    """`core` (the stage's `score_leads`) on one chunk of leads and events, then
    `models.attribution.explain_changes` on the same frames, so the previous batch's
    features are rebuilt from the events already in memory (any engine, any chunking)."""
    result = core(leads, events, bundle, fs, as_of, **kwargs)
    result.table = explain_changes(result.table, leads, events, bundle, fs, as_of, previous)
    return result


def carry_changes(table: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """`score_change` / `change_reasons` looked up by lead_id in `previous` (a re-run's own
    columns, `scoring_io.CHANGE_COLUMNS`), else NaN / empty: a batch with nothing to compare
    still has the columns."""
    out = table.copy()
    n = len(out)
    change, words = np.full(n, np.nan), np.full(n, "", dtype=object)
    if previous is not None and "score_change" in previous.columns:
        prev = previous.drop_duplicates("lead_id", keep="last").set_index("lead_id")
        pos = prev.index.get_indexer(out["lead_id"].astype(str))
        found = pos >= 0
        change[found] = prev["score_change"].to_numpy(dtype=float)[pos[found]]
        if "change_reasons" in prev.columns:
            words[found] = prev["change_reasons"].to_numpy(dtype=object)[pos[found]]
    out["score_change"] = change
    out["change_reasons"] = pd.Series(words, index=out.index, dtype="str")
    return out


def previous_scores(previous: pd.DataFrame | None, ref: ModelRef, settings: Any,
                    chunk_size: int, *, other_lineage: bool = False) -> PreviousBatch | None:
    """What attribution needs of the previous batch (`select_previous(..., scores=True)`):
    its published scores, as_of and model; the old model version is loaded from the
    registry (same registered name) unless it is this one. None without a previous batch
    with scores. A version that cannot be loaded (deleted, or a model outside the registry)
    or another model lineage is a logged warning and words in `change_reasons`, never an
    error."""
    if previous is None or previous.empty or "score" not in previous.columns:
        return None
    versions = (previous["model_version"].dropna().astype(str).unique()
                if "model_version" in previous.columns else [])
    old = str(versions[0]) if len(versions) == 1 else "unknown"
    at = (pd.to_datetime(previous["as_of"], errors="coerce").max()
          if "as_of" in previous.columns else pd.NaT)
    scores = pd.Series(previous["score"].to_numpy(dtype=float),
                       index=previous["lead_id"].astype(str).to_numpy()).dropna()
    base = {"scores": scores, "as_of": at, "old_version": old, "new_version": ref.version,
            "movers": settings.movers, "chunk_size": chunk_size, "signs": CHANGE_SIGNS}
    if other_lineage:
        return PreviousBatch(**base, compare=False, not_attributed=(
            "not compared: the previous batch was scored by another model lineage"))
    if pd.isna(at):
        log.warning("the previous batch records no as_of: score changes are not attributed")
        return PreviousBatch(**base, not_attributed="not attributed: the previous batch "
                             "records no as_of")
    if old == str(ref.version):
        return PreviousBatch(**base)
    if ref.name is None:
        why = f"the model changed ({old} → {ref.version}) outside the registry"
    else:
        try:
            old_bundle, _ = load_model(f"models:/{ref.name}/{old}")
        except ConfigError as err:
            why = f"model v{old} of the previous batch cannot be loaded"
            log.info("score changes: loading model v%s: %s", old, str(err).splitlines()[0])
        else:
            return PreviousBatch(**base, old_bundle=old_bundle)
    log.warning("score changes: %s; the points are given, their causes are not", why)
    return PreviousBatch(**base, not_attributed=f"not attributed: {why}")


def finish_table(table: pd.DataFrame, as_of: pd.Timestamp, orders: Mapping[str, Any], *,
                 model_version: str, scored_at: pd.Timestamp, batch_id: str) -> pd.DataFrame:
    """The scored table in its published column order, sorted by propensity (desc), then
    lead_id."""
    n = len(table)
    out = table.assign(
        as_of=pd.Series([as_of] * n, index=table.index, dtype="datetime64[us]"),
        model_version=pd.Series([model_version] * n, index=table.index, dtype="str"),
        scored_at=pd.Series([scored_at] * n, index=table.index, dtype="datetime64[us]"),
        batch_id=pd.Series([batch_id] * n, index=table.index, dtype="str"),
    )
    cols = ["lead_id", "as_of", "propensity", "score", *orders,
            *[f"previous_{c}" for c in orders], "movement",
            *[c for c in CHANGE_COLUMNS if c in out.columns],
            *[c for c in ("holdout", *SCORED_COLUMNS) if c in out.columns], "reasons",
            "model_version",
            "scored_at", "batch_id"]
    out = out[cols].sort_values(["propensity", "lead_id"], ascending=[False, True],
                                kind="stable")
    return out.reset_index(drop=True)


def make_batch_id(as_of: pd.Timestamp, model: ModelRef, leads_hash: str, events_hash: str) -> str:
    """`<as_of YYYYmmddTHHMMSS>-<8 hex>`: the same inputs, as_of and model give the same id."""
    key = "|".join([pd.Timestamp(as_of).isoformat(), model.name or "", model.version,
                    leads_hash, events_hash])
    return f"{pd.Timestamp(as_of):%Y%m%dT%H%M%S}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------- summary


def reconcile(n_input: int, scored: int, not_open: int, rejected: int) -> None:
    """Every input lead is scored, not open or rejected; anything else is a bug."""
    if n_input != scored + not_open + rejected:
        raise RuntimeError(f"lead counts do not reconcile: input {n_input} != scored {scored} "
                           f"+ not open {not_open} + rejected {rejected}")


ACCOUNTING_FILE = "accounting.json"


def end_to_end(quality: Mapping[str, Any] | None, counts: Mapping[str, Any]) -> dict[str, Any]:
    """From the export's raw lead rows to this batch: raw rows = duplicates dropped at ingest +
    rejected at ingest + scored + not open (by reason) + rejected at scoring.

    `quality` is ingest's `data_quality.json` (None when the batch did not come through
    ingest, e.g. `--leads FILE`: then the batch's own input is the raw count). DataError when
    the leads the batch read are not the ones ingest wrote (a torn or stale interim table).
    """
    leads = (quality or {}).get("leads") or {}
    duplicates = int(leads.get("duplicates_dropped", 0) or 0)
    rejected_ingest = int(leads.get("rows_rejected", 0) or 0)
    clean = int(leads.get("rows_clean", counts["input"]))
    if quality is not None and clean != counts["input"]:
        raise DataError(
            f"the interim leads hold {counts['input']:,} rows but ingest reported {clean:,} "
            "clean leads (reports/data_quality.json): the interim tables and the report are "
            "from different runs. Run `leadprop ingest` (or `dvc repro -f ingest`) again.")
    out = {
        "raw_rows": duplicates + rejected_ingest + int(counts["input"]),
        "duplicates_dropped": duplicates,
        "rejected_at_ingest": rejected_ingest,
        "scored": int(counts["scored"]),
        "not_open": int(counts["not_open"]),
        "not_open_by_reason": dict(counts["not_open_by_reason"]),
        "rejected_at_scoring": int(counts["rejected"]),
        "source": "reports/data_quality.json + this batch" if quality is not None
        else "this batch's input file",
    }
    parts = (out["duplicates_dropped"] + out["rejected_at_ingest"] + out["scored"]
             + out["not_open"] + out["rejected_at_scoring"])
    if parts != out["raw_rows"]:  # a bug, not bad data
        raise RuntimeError(f"end-to-end lead counts do not reconcile: {out}")
    return out


def batch_summary(table: pd.DataFrame, not_open: pd.DataFrame, inputs: Inputs,
                  orders: Mapping[str, Sequence[str]], psi: Mapping[str, float],
                  psi_bins: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Counts, band mix, movement, score distribution and drift of one batch (JSON-able);
    a drift verdict accounts for the batch size (`models.drift.psi_verdict`)."""
    psi_bins = psi_bins or {}
    reasons = not_open["reason"].value_counts()
    counts = {
        "input": inputs.n_leads, "scored": len(table), "not_open": len(not_open),
        "not_open_by_reason": {r: int(reasons.get(r, 0)) for r in NOT_OPEN_REASONS},
        "rejected": len(inputs.rejects),
        "events_input": inputs.n_events, "events_rejected": len(inputs.rejects_events),
    }
    reconcile(counts["input"], counts["scored"], counts["not_open"], counts["rejected"])
    n = len(table)
    bands = {}
    for col, names in orders.items():
        vc = table[col].value_counts()
        bands[col] = {b: {"n": int(vc.get(b, 0)), "share": float(vc.get(b, 0) / n) if n else 0.0}
                      for b in names}
    changes = {}
    for col, names in orders.items():
        top, prev = names[-1], table[f"previous_{col}"]
        changes[col] = {
            f"entered_{top}": int(((table[col] == top) & prev.notna() & (prev != top)).sum()),
            f"left_{top}": int(((prev == top) & (table[col] != top)).sum()),
        }
    p = table["propensity"].to_numpy(dtype=float)
    qs = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
    hist_edges = list(range(0, 100, 10)) + [99]
    hist, _ = np.histogram(table["score"].to_numpy(), bins=np.array(hist_edges) + 0.5)
    labels = [f"{a + 1:02d}-{b:02d}" for a, b in zip(hist_edges[:-1], hist_edges[1:], strict=True)]
    return {
        "counts": counts,
        "bands": bands,
        "movement": {m: int((table["movement"] == m).sum()) for m in MOVEMENTS},
        "changes": changes,
        "score": {
            "mean_propensity": float(p.mean()) if n else None,
            "mean_score": float(table["score"].mean()) if n else None,
            "propensity_quantiles": {f"q{int(q * 100):02d}": float(np.quantile(p, q)) if n else None
                                     for q in qs},
            "score_histogram": dict(zip(labels, (int(h) for h in hist), strict=True)),
        },
        "drift": {k: {"psi": round(v, 6), "verdict": drift.psi_verdict(v, n, psi_bins.get(k))}
                  for k, v in psi.items()},
        "drift_warnings": [k for k, v in psi.items()
                           if drift.psi_verdict(v, n, psi_bins.get(k)) == "significant"],
    }


def _metric_key(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-/ .]", "_", str(p)) for p in parts)


def batch_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flat MLflow metrics from `batch_summary`."""
    c = summary["counts"]
    out: dict[str, float] = {
        "rows.input": c["input"], "rows.open": c["scored"], "rows.scored": c["scored"],
        "rows.not_open": c["not_open"],
        "rows.rejected": c["rejected"], "events.input": c["events_input"],
        "events.rejected": c["events_rejected"],
    }
    for reason, n in c["not_open_by_reason"].items():
        out[_metric_key("rows.not_open", reason.replace(" ", "_"))] = n
    for col, bands in summary["bands"].items():
        for band, v in bands.items():
            out[_metric_key("band", col, band, "n")] = v["n"]
            out[_metric_key("band", col, band, "share")] = v["share"]
    for m, n in summary["movement"].items():
        out[_metric_key("movement", m)] = n
    for col, changes in summary["changes"].items():
        for k, n in changes.items():
            out[_metric_key("changes", col, k)] = n
    s = summary["score"]
    if s["mean_propensity"] is not None:
        out["propensity.mean"] = s["mean_propensity"]
        out["score.mean"] = s["mean_score"]
        out.update({_metric_key("propensity", q): v for q, v in s["propensity_quantiles"].items()})
    out.update({_metric_key("psi", k): v["psi"] for k, v in summary["drift"].items()})
    changes = summary.get("score_changes") or {}
    out.update({_metric_key("score_changes", k): v for k, v in changes.items()
                if isinstance(v, int | float) and not isinstance(v, bool)})
    return {k: float(v) for k, v in out.items()}


# ------------------------------------------------------------------------ entry point


def now_utc() -> pd.Timestamp:
    """The wall clock, naive UTC, to the second."""
    return utc_now().floor("s")


class _ProgressBar:
    """A rich progress bar on stderr, shown only for batches of `_PROGRESS_MIN` leads or more."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self._progress, self._task = enabled, None, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < _PROGRESS_MIN:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=Console(stderr=True),
                                      transient=True)
            self._progress.start()
            self._task = self._progress.add_task("score", total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def from_params(
    params: Any,
    *,
    leads: Path | str | None = None,
    events: Path | str | None = None,
    as_of: Any = None,
    model: str | None = None,
    out: Path | str | None = None,
    db: str | None = None,
    table: str | None = None,
    scored_at: Any = None,
    chunk_size: int | None = None,
    progress: bool = True,
    allow_empty: bool = False,
    trust_model: bool = False,
    allow_missing: bool = False,
    engine_name: str | None = None,
) -> dict[str, Any]:
    """Score one batch; returns its summary (counts, bands, drift, outputs, MLflow run id).

    One batch per (source, as_of, input content): it replaces an earlier batch with the
    same key (`scoring_io.BatchKey`); an empty batch never replaces one with rows unless
    `allow_empty`.

    Without `leads`: params mode (interim tables; as_of = score.as_of or the data end).
    With `leads`: export mode (validated raw export; as_of defaults to now). `out` defaults
    to `paths.scored/scored_leads`; `db` (+ `table`, default scored_leads) appends to SQL.
    `chunk_size` defaults to `score.chunk_size` when params have it, else 100 000.
    A model outside the configured MLflow store (a folder, a foreign URI) is refused before
    anything is read unless `trust_model` (`pipeline.model_store.check_trusted`).
    Leads without a column the model's fit features came from are refused unless
    `allow_missing` (`check_fit_columns`; the summary and the MLflow run then say so).
    `engine_name` (`--engine`, default params `engine`): `spark` scores on Spark
    (`pipeline.spark.score`), with the same core and the same table.
    """
    chunk_size = chunk_size or getattr(params.score, "chunk_size", None) or CHUNK_SIZE
    # `--engine` / params `engine` (not the SQL `engine` below): embedded or spark
    compute = check_engine(engine_name or getattr(params, "engine", "embedded"))
    if table is not None and db is None:
        raise ConfigError("`--table` needs `--db` (the database URL to write the table to)")
    history = getattr(params, "source_key", "synthetic")  # per-source tables and files
    sql = (scoring_io.SqlTarget(db, scoring_io.default_table(history) if table is None
                                else table) if db is not None else None)
    try:
        fs = FeatureSettings.from_params(params.features)
    except ValueError as err:
        raise ConfigError(f"params: {err}") from err
    options = ReadOptions.from_params(getattr(params, "ingest", None) or {})
    model_uri = model or params.score.model
    check_trusted(model_uri, trust_model)  # before any input is read or model unpickled
    paths = scoring_io.output_paths(Path(out) if out else
                                    scoring_io.default_out(params.paths.scored, history))
    stamp = parse_moment("--scored-at", scored_at) or now_utc()
    asked = parse_moment("--as-of", as_of)
    clock = params.ingest_now if getattr(params, "ingest_now", None) is not None else utc_now()

    with scoring_io.engine_for(sql) as engine:   # a bad --db fails before any work
        scoring_io.recover_interrupted(paths, engine, sql)  # a run killed mid-write
        # events are not read here: `streaming` reads them one bucket of leads at a time
        if leads is not None:
            moment = asked or now_utc()
            inputs = read_export(Path(leads), None, options, max(clock, moment))
            stream = streaming.events_to_stream(inputs, events, validate=True,
                                                now=max(clock, moment))
        else:
            interim = Path(params.paths.interim)
            ev_path = Path(events) if events else interim / "events.parquet"
            moment = asked or parse_moment("score.as_of", params.score.as_of)
            now = max(clock, moment) if moment is not None else clock
            inputs = read_interim(interim / "leads.parquet", None, options, now)
            # a lead-level export's interim events table has no rows: no events to stream
            has_events = events or (ev_path.is_file() and _has_rows(ev_path))
            stream = streaming.events_to_stream(
                inputs, ev_path if has_events else None,
                validate=events is not None, now=now)
            if moment is None and compute == "spark" and stream and not stream.validate:
                from pipeline.spark.features import SparkMoments  # summarised where it is
                from pipeline.spark.session import spark_session

                moment = data_end(inputs.leads, event_moments=SparkMoments(
                    spark_session(params.spark), stream.path))
            elif moment is None:
                moment = data_end(inputs.leads, streaming.event_timestamps(
                    stream.path, options, now if stream.validate else None) if stream else None)
        if inputs.events_file is None:
            log.warning("no events file: behaviour features are empty, so scores rest on lead "
                        "attributes only and run low for active leads")

        tracking.configure()
        bundle, ref = load_model(model_uri, trust=trust_model)
        missing_fit = check_fit_columns(inputs.leads, bundle, str(inputs.leads_file),
                                        allow_missing)
        leads_hash = tracking.file_hash([inputs.leads_file])
        events_hash = tracking.file_hash([inputs.events_file]) if inputs.events_file else "none"
        batch_id = make_batch_id(moment, ref, leads_hash, events_hash)
        reference = (getattr(bundle, "metadata", None) or {}).get("reference")
        if not reference:
            log.info("the model carries no drift reference (metadata['reference']): PSI skipped")

        orders = band_orders(bundle)
        # the previous batch first: attribution runs inside each chunk's scoring call
        attribution = getattr(params.score, "attribution", None)
        explain = bool(attribution is not None and attribution.enabled)
        if engine is not None:
            previous, previous_id = scoring_io.read_previous_sql(
                engine, sql.table, moment, list(orders),
                source=history, scores=explain)  # the same key BatchKey records
        else:
            previous, previous_id = scoring_io.select_previous(
                scoring_io.read_previous_file(paths), batch_id, moment, list(orders),
                scores=explain)
        other_lineage = previous_id is not None and not same_lineage(previous_id, ref)
        before = previous
        if other_lineage:
            log.warning("the previous batch %s was scored by another model lineage than %s: "
                        "its bands are not compared (movement=new)", previous_id, lineage(ref))
            previous, previous_id = None, None
        rerun = before is not None and "score_change" in before.columns
        changes = previous_scores(before, ref, attribution, chunk_size,
                                  other_lineage=other_lineage) if explain and not rerun else None

        bar = _ProgressBar(progress)
        core = functools.partial(score_leads, file=str(inputs.leads_file),
                                 phrases=outputs.reason_phrases(params.score),
                                 holdout=holdout_spec(params))
        if changes is not None:
            core = functools.partial(score_with_changes, core=core, previous=changes)
        try:
            if compute == "spark":
                # engine dispatch: the same core per lead-hash bucket (pipeline.spark.score)
                from pipeline.spark.score import score_stage_spark

                scored = score_stage_spark(params, inputs, stream, bundle, fs, moment,
                                           score=core, chunk_size=chunk_size,
                                           reference=reference)
            else:
                scored = streaming.score_inputs(
                    inputs, stream, bundle, fs, moment, options=options,
                    chunk_events=getattr(params.score, "chunk_events", None)
                    or streaming.CHUNK_EVENTS, score=core,
                    chunk_size=chunk_size, reference=reference, progress=bar)
        finally:
            bar.close()
        table = scored.table
        if explain and changes is None:   # nothing to compare, or a re-run's own columns
            table = carry_changes(table, before if rerun else None)
        movers, score_changes = None, None
        if explain:
            metrics, movers = change_summary(table, attribution.movers)
            score_changes = {
                "previous_batch": previous_id if not rerun else "re-run: carried over",
                "previous_model_version": changes.old_version if changes else None,
                "not_attributed": changes.not_attributed if changes else "", **metrics}
        final = finish_table(add_changes(table, previous, orders), moment, orders,
                             model_version=ref.version, scored_at=stamp, batch_id=batch_id)
        final = outputs.with_pass_through(final, inputs.leads, params.score,
                                          file=str(inputs.leads_file))  # scored table only
        psi = drift.drift_psi(reference, scored.drift_counts) if reference else {}
        summary = {
            "batch_id": batch_id, "as_of": moment.isoformat(), "scored_at": stamp.isoformat(),
            "source": history,
            "model": {"uri": ref.uri, "loaded_uri": ref.loaded_uri, "name": ref.name,
                      "version": ref.version, "run_id": ref.run_id},
            "inputs": {"leads": str(inputs.leads_file),
                       "events": str(inputs.events_file) if inputs.events_file else None,
                       "leads_hash": leads_hash, "events_hash": events_hash},
            "previous_batch": previous_id,
            "missing_fit_columns": missing_fit,
            **batch_summary(final, scored.not_open, inputs, orders, psi,
                            drift.bin_sizes(reference) if reference else None),
            "outputs": {**paths.as_dict(), "sql": sql.shown if sql else None},
        }
        if score_changes is not None:
            summary["score_changes"] = score_changes
        else:
            summary["outputs"]["movers"] = None
        if summary["drift_warnings"]:
            log.warning("drift: PSI above %.2f (a significant shift from the training data) "
                        "for %s; check the inputs before trusting this batch", drift.PSI_WARN,
                        ", ".join(f"{k} {psi[k]:.2f}" for k in summary["drift_warnings"]))
        quality_file = Path(params.paths.reports) / "data_quality.json"
        quality = read_json(quality_file) if leads is None and quality_file.is_file() else None
        summary["end_to_end"] = end_to_end(quality, summary["counts"])
        key = scoring_io.BatchKey(history, moment, f"{leads_hash}-{events_hash}")
        append = (lambda: scoring_io.append_batch(engine, sql.table, final, batch_id, key,
                                                  allow_empty)) \
            if engine is not None else None
        with batch_run(summary, chunk_size, movers) as run_id:  # failed write = failed run
            summary["outputs"].update(outputs.write_batch(  # csv/xlsx/parquet + history
                paths, final, inputs.rejects, inputs.rejects_events, bands=bundle.bands,
                settings=params.score, then=append, batch_id=batch_id, movers=movers,
                sql_target=sql.shown if sql else None, allow_empty=allow_empty))
        summary["mlflow_run_id"] = run_id
    if leads is None:
        write_json(Path(params.paths.reports) / ACCOUNTING_FILE,
                   {"batch_id": batch_id, "as_of": moment.isoformat(), **summary["end_to_end"]})

    c = summary["counts"]
    log.info("score: batch %s as of %s: %d scored, %d not open, %d rejected (of %d) -> %s",
             batch_id, moment, c["scored"], c["not_open"], c["rejected"], c["input"],
             ", ".join(v for v in summary["outputs"].values() if v))
    return summary


@contextmanager
def batch_run(summary: Mapping[str, Any], chunk_size: int,
              movers: pd.DataFrame | None = None) -> Iterator[str]:
    """One run in the scoring experiment around the writes: tags and params first, metrics
    and `batch_summary.json` once the outputs are in place (MLflow marks the run failed if
    the body raises). `movers` (the biggest score changes: ids, numbers, words) goes to the
    artifact `score_changes/movers.csv`. Yields the run id."""
    ml = tracking.mlflow()
    ml.set_experiment(tracking.SCORING_EXPERIMENT)
    model, inputs, outputs = summary["model"], summary["inputs"], summary["outputs"]
    with tracking.start_run(run_name=f"score-{summary['batch_id']}") as run:
        ml.set_tags({
            "stage": "score", "git_commit": tracking.git_commit(),
            "source": summary.get("source") or "synthetic",
            "batch_id": summary["batch_id"], "model_name": model["name"] or "unregistered",
            "model_version": model["version"], "model_uri": model["uri"],
            "model_run_id": model["run_id"] or "",
            "previous_batch": summary["previous_batch"] or "",
            "drift_warning": ", ".join(summary["drift_warnings"]) or "none",
            "missing_fit_columns": ", ".join(summary.get("missing_fit_columns") or []) or "none",
            **{f"output.{k}": v for k, v in outputs.items() if v},
        })
        tracking.log_params({
            "as_of": summary["as_of"], "model_uri": model["uri"],
            "model_name": model["name"] or "unregistered", "model_version": model["version"],
            "leads_file": inputs["leads"], "events_file": inputs["events"] or "none",
            "leads_hash": inputs["leads_hash"], "events_hash": inputs["events_hash"],
            "chunk_size": chunk_size,
        })
        yield run.info.run_id
        ml.log_metrics(batch_metrics(summary))
        if movers is not None:
            ml.log_text(movers.to_csv(index=False), "score_changes/movers.csv")
        ml.log_dict({**summary, "mlflow_run_id": run.info.run_id}, "batch_summary.json")


def counts_table(summary: Mapping[str, Any]) -> Any:
    """The end-of-batch rich table: where every input lead went, and where the outputs are."""
    from rich.table import Table

    c = summary["counts"]
    t = Table(title=f"batch {summary['batch_id']} (as of {summary['as_of']}, model "
                    f"{summary['model']['name'] or summary['model']['uri']} "
                    f"v{summary['model']['version']})", show_header=True)
    t.add_column("leads")
    t.add_column("count", justify="right")
    t.add_row("input", f"{c['input']:,}")
    t.add_row("scored (open)", f"{c['scored']:,}")
    t.add_row("not open", f"{c['not_open']:,}")
    for reason, n in c["not_open_by_reason"].items():
        if n:
            t.add_row(f"  {reason}", f"{n:,}")
    t.add_row("rejected", f"{c['rejected']:,}")
    ok = c["input"] == c["scored"] + c["not_open"] + c["rejected"]
    t.add_row("input = scored + not open + rejected", "[green]✓[/]" if ok else "[red]✗[/]")
    if c["events_rejected"]:
        t.add_row("events rejected", f"{c['events_rejected']:,}")
    e2e = summary.get("end_to_end")
    if e2e and e2e["source"] != "this batch's input file":
        t.add_row("[bold]raw rows in the export[/]", f"{e2e['raw_rows']:,}")
        t.add_row("  duplicates dropped at ingest", f"{e2e['duplicates_dropped']:,}")
        t.add_row("  rejected at ingest", f"{e2e['rejected_at_ingest']:,}")
        t.add_row("  scored + not open + rejected at scoring",
                  f"{e2e['scored'] + e2e['not_open'] + e2e['rejected_at_scoring']:,}")
    for m, n in summary["movement"].items():
        t.add_row(f"movement: {m}", f"{n:,}")
    changes = summary.get("score_changes")
    if changes and changes["leads_compared"]:
        t.add_row("score changes: leads compared", f"{int(changes['leads_compared']):,}")
        t.add_row("  mean |change| (points)", f"{changes['mean_abs_change']:.1f}")
        t.add_row("  share from model / data", f"{changes['share_model']:.0%} / "
                  f"{changes['share_data'] + changes['share_revised']:.0%}")
    for name in summary["drift_warnings"]:
        t.add_row(f"[yellow]drift: {name}[/]", f"PSI {summary['drift'][name]['psi']:.2f}")
    for name in summary.get("missing_fit_columns") or []:
        t.add_row(f"[bold red]missing fit column: {name}[/]",
                  "scored as 'unknown' (--allow-missing)")
    for k, v in summary["outputs"].items():
        if v:
            t.add_row(f"→ {k}", str(v))
    return t
