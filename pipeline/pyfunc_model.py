"""The registered MLflow model: raw leads (+ their events) and `as_of` in; propensity, 1-99
score, every band column and reasons out.

Input (the pyfunc signature, written at registration from the training data):

- one row per lead with the data contract's lead columns the model was trained on
  (`lead_id` required, `created_at` required for time-aware data, the rest optional):
  counts and numeric extras `double`, `converted` `long` (leave it out for open leads),
  booleans `boolean`, everything else `string` — dates too, as the export writes them
  (ISO or the source's `date_formats`), parsed by the contract exactly as `ingest` does;
- `events` (optional, string): the lead's activity as a JSON list of objects with
  `timestamp`, `event_type` and any other event attribute, e.g.
  `[{"timestamp": "2025-09-30 10:00:00", "event_type": "pricing_view"}]`;
- params: `as_of` (string, default `"now"`: the wall clock, UTC; or a date / moment such as
  `"2025-10-01"`), `allow_missing` (boolean, default false: see below), `source` and
  `contract_version` (strings, default empty; when given they must match the model's).

The rows go through the same code as `leadprop score --leads FILE --events FILE`: the
contract's validation (`pipeline.contract`), then the pure scoring core
`models.scoring.score_open_leads`. Output: one row per input row, in input order:
`lead_id`, `status` (`scored`, `not open: <reason>` or `rejected: <reason>`), `propensity`,
`score`, one column per band set (`temperature`, `lifecycle_stage`) and `reasons`; empty for
rows that are not scored. Every input lead comes out, scored or with its reason.

The bundle records what it was trained on (`metadata["input_contract"]`: source
configuration name and hash, contract version, the lead columns and their types, the fit
columns, feature settings); an input that lacks a required column, or a column the model's
fit features came from (unless `allow_missing`), is refused with a message naming them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd

from models.scoring import fit_source_columns, missing_fit_columns

EVENTS_COLUMN = "events"
INPUT_FILE = "model input"
#: Lead columns never sent to the model: the outcome is not known for open leads.
_OPTIONAL_ALWAYS = ("converted", "converted_at", "lost_at")
_EXAMPLE_ROWS = 5


# ------------------------------------------------------------------ training side


def input_contract(leads: pd.DataFrame, events: pd.DataFrame | None, *, source: str,
                   source_hash: str, features: Mapping[str, Any] | None,
                   ingest: Mapping[str, Any] | None, contract_version: str) -> dict[str, Any]:
    """What the served model accepts, from the validated training tables: `source`,
    `source_hash`, `contract_version`, `columns` (lead column -> MLflow type), `required`,
    `fit_columns` (the contract columns the fit features came from), `event_columns`,
    `time_aware`, the `features` / `ingest` params sections (plain dicts, rebuilt into typed
    settings when scoring) and `example` (a few raw leads with personal values masked,
    `example_input`)."""
    from features.settings import FeatureSettings

    features = _plain(features or {})
    ingest = _plain(ingest or {})
    columns = {str(c): _mlflow_type(str(c), leads[c]) for c in leads.columns}
    time_aware = "created_at" in leads.columns
    required = ["lead_id", *(["created_at"] if time_aware else [])]
    contract = {
        "source": source,
        "source_hash": source_hash,
        "contract_version": contract_version,
        "columns": columns,
        "required": required,
        "fit_columns": fit_source_columns(leads.columns, FeatureSettings.from_params(features)),
        "event_columns": [] if events is None else [str(c) for c in events.columns
                                                     if c != "lead_id"],
        "time_aware": time_aware,
        # other date columns (a source's `type: date` lead columns): parsed back from text
        "date_columns": [str(c) for c in leads.columns
                         if pd.api.types.is_datetime64_any_dtype(leads[c])
                         and c not in ("created_at", "converted_at", "lost_at")],
        "features": features,
        "ingest": ingest,
    }
    contract["example"] = example_input(leads, events, contract)
    return contract


def _plain(value: Any) -> Any:
    """A params section as plain dicts / lists (picklable, JSON-able)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _mlflow_type(column: str, values: pd.Series) -> str:
    if column == "converted":
        return "long"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "string"  # as the export writes it: parsed by the contract (source formats)
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "double"
    return "string"


def example_input(leads: pd.DataFrame, events: pd.DataFrame | None,
                  contract: Mapping[str, Any], n: int = _EXAMPLE_ROWS) -> pd.DataFrame:
    """A few raw leads as the served model takes them (the first `n` leads that are open at
    the end of the data, else the first `n`), screened by `features.pii`: personal columns
    (the contract's by name, others by content) masked (`a***@example.com`, `***67`,
    `J***`), hashed `_` columns and the outcome columns left out."""
    from features.pii import CONTRACT_PERSONAL, detect_personal, mask_frame

    open_ = leads
    if "converted_at" in leads.columns:
        open_ = leads[leads["converted_at"].isna() & (leads["converted"] == 0)]
    rows = (open_ if len(open_) >= n else leads).head(n)
    kinds = {c: ("email" if "mail" in c else "phone" if c in ("phone", "phone_number",
                                                             "mobile") else "name")
             for c in rows.columns if c in CONTRACT_PERSONAL}
    kinds.update({p.column: p.kind for p in detect_personal(leads.head(2000), skip=kinds)})
    keep = [c for c in contract["columns"] if c in rows.columns and not c.startswith("_")
            and c not in _OPTIONAL_ALWAYS]
    out = as_model_input(mask_frame(rows[keep], kinds), contract)
    out[EVENTS_COLUMN] = events_json(out["lead_id"], events)
    return out.reset_index(drop=True)


def as_model_input(leads: pd.DataFrame, contract: Mapping[str, Any]) -> pd.DataFrame:
    """A leads frame in the signature's types (dates as 'YYYY-MM-DD HH:MM:SS' text, doubles,
    strings with None for missing); columns the contract does not know are dropped."""
    out = {}
    for col in leads.columns:
        kind = contract["columns"].get(col)
        values = leads[col]
        if kind is None:
            continue
        if pd.api.types.is_datetime64_any_dtype(values):
            text = values.dt.strftime("%Y-%m-%d %H:%M:%S")
            out[col] = text.astype(object).where(values.notna(), None)
        elif kind in ("double", "long"):
            out[col] = pd.to_numeric(values, errors="coerce").astype("float64" if kind ==
                                                                     "double" else "int64")
        elif kind == "boolean":
            out[col] = values.astype(bool)
        else:
            out[col] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out, index=leads.index)


def events_json(lead_ids: pd.Series, events: pd.DataFrame | None) -> list[str]:
    """Per lead id, its events as a JSON list of objects (timestamps 'YYYY-MM-DD HH:MM:SS',
    other attributes as text; missing ones left out)."""
    if events is None or not len(events):
        return ["[]"] * len(lead_ids)
    wanted = events[events["lead_id"].isin(set(lead_ids.astype(str)))]
    attrs = [c for c in wanted.columns if c != "lead_id"]
    text = {c: (wanted[c].dt.strftime("%Y-%m-%d %H:%M:%S")
                if pd.api.types.is_datetime64_any_dtype(wanted[c]) else wanted[c].astype("str"))
                .where(wanted[c].notna(), None).tolist() for c in attrs}
    by_lead: dict[str, list[dict[str, str]]] = {}
    for i, lead in enumerate(wanted["lead_id"].astype(str)):
        by_lead.setdefault(lead, []).append(
            {c: text[c][i] for c in attrs if text[c][i] is not None})
    return [json.dumps(by_lead.get(str(i), []), ensure_ascii=False) for i in lead_ids]


def model_signature(bundle: Any, example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """The pyfunc signature: the contract's lead columns with their types, `events`, the
    output columns, and the params `as_of`, `allow_missing`, `source` and
    `contract_version` (empty: not checked)."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    contract = bundle.metadata["input_contract"]
    required = set(contract["required"])
    inputs = Schema([
        *(ColSpec(kind, col, required=col in required)
          for col, kind in contract["columns"].items()),
        ColSpec("string", EVENTS_COLUMN, required=False),
    ])
    params = ParamSchema([ParamSpec("as_of", "string", "now"),
                          ParamSpec("allow_missing", "boolean", False),
                          ParamSpec("source", "string", ""),
                          ParamSpec("contract_version", "string", "")])
    outputs = infer_signature(example, output).outputs
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


# ------------------------------------------------------------------ serving side


def check_input(frame: pd.DataFrame, contract: Mapping[str, Any] | None,
                allow_missing: bool = False,
                expect: Mapping[str, Any] | None = None) -> list[str]:
    """DataError when `frame` breaks the contract the model was trained on: a required
    column missing, a fit column missing (unless `allow_missing`; then the missing fit
    columns are returned), or `expect` (`source` / `contract_version` params) naming
    another source or contract version."""
    from pipeline.errors import DataError

    if not contract:
        raise DataError("this model records no input contract (it was trained before "
                        "models took raw leads): retrain it (`dvc repro`) to score raw leads",
                        file=INPUT_FILE)
    trained = (f"source {contract['source']!r} (config hash {contract['source_hash']}), "
               f"contract version {contract['contract_version']}")
    for key in ("source", "contract_version"):
        if expect and expect.get(key) not in (None, "", contract[key]):
            raise DataError(f"{INPUT_FILE}: the input is from {key} {expect[key]!r} but the "
                            f"model was trained on {trained}; score it with that source's "
                            "model.", file=INPUT_FILE)
    columns = [str(c) for c in frame.columns]
    missing = [c for c in contract["required"] if c not in columns]
    if missing:
        raise DataError(f"{INPUT_FILE}: required lead column(s) {', '.join(missing)} missing "
                        f"({len(frame)} rows; columns given: {', '.join(columns[:12])}). The "
                        f"model was trained on {trained}; send its lead columns.",
                        file=INPUT_FILE, column=missing[0], n_rows=len(frame))
    gone = missing_fit_columns(columns, contract["fit_columns"])
    if gone and not allow_missing:
        raise DataError(
            f"{INPUT_FILE}: lead column(s) {', '.join(gone)} missing ({len(frame)} rows): the "
            f"model's fit features come from them ({trained}), so every lead would be scored "
            "as 'unknown' there. Add the column(s) (empty values are fine where unknown), or "
            "pass allow_missing=true to score without them.",
            file=INPUT_FILE, column=gone[0], n_rows=len(frame))
    return gone


def events_from_column(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The `events` column (JSON lists) as one raw events frame (`lead_id`, `timestamp`,
    `event_type`, other attributes as text); None when the column is absent. DataError
    naming the row when a cell is not a JSON list of objects."""
    from pipeline.errors import DataError

    if EVENTS_COLUMN not in frame.columns:
        return None
    rows: list[dict[str, Any]] = []
    for pos, (lead, cell) in enumerate(zip(frame["lead_id"], frame[EVENTS_COLUMN],
                                           strict=True)):
        if cell is None or (not isinstance(cell, str | list) and pd.isna(cell)) or cell == "":
            continue
        try:
            items = json.loads(cell) if isinstance(cell, str) else cell
        except json.JSONDecodeError as err:
            raise DataError(f"{INPUT_FILE}: row {pos} (lead {lead}): `events` is not JSON "
                            f"({err.msg}); send a JSON list such as "
                            '[{"timestamp": "2025-09-30 10:00:00", "event_type": "site_visit"}]',
                            file=INPUT_FILE, column=EVENTS_COLUMN, n_rows=1,
                            example=str(cell)[:80]) from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise DataError(f"{INPUT_FILE}: row {pos} (lead {lead}): `events` must be a JSON "
                            "list of objects with timestamp and event_type",
                            file=INPUT_FILE, column=EVENTS_COLUMN, n_rows=1,
                            example=str(cell)[:80])
        rows += [{**{k: None if v is None else str(v) for k, v in item.items()},
                  "lead_id": None if lead is None else str(lead)} for item in items]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="str")
                             for c in ("lead_id", "timestamp", "event_type")})
    out = pd.DataFrame(rows)
    for col in ("timestamp", "event_type"):
        if col not in out.columns:
            out[col] = None
    first = ["lead_id", "timestamp", "event_type"]
    out = out[first + [c for c in out.columns if c not in first]]
    return out.astype("str").where(out.notna(), None)


def parse_as_of(value: Any) -> pd.Timestamp:
    """`as_of` param -> naive UTC moment: 'now' (or empty) is the wall clock to the second."""
    from pipeline.contract import parse_moment, utc_now

    if value is None or str(value).strip().lower() in ("", "now"):
        return utc_now().floor("s")
    return parse_moment("as_of", value)


def score_raw(bundle: Any, frame: pd.DataFrame, params: Mapping[str, Any] | None = None,
              now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Raw leads (+ `events` column) -> one scored row per input row (see the module doc)."""
    from features.settings import FeatureSettings
    from models.scoring import score_open_leads
    from pipeline.contract import (
        fill_outcome,
        parse_dates,
        to_naive_utc,
        utc_now,
        validate_events,
        validate_leads,
    )
    from pipeline.readers import ReadOptions
    from pipeline.sources import drop_placeholder

    params = dict(params or {})
    contract = (getattr(bundle, "metadata", None) or {}).get("input_contract")
    frame = pd.DataFrame(frame).reset_index(drop=True)
    check_input(frame, contract, bool(params.get("allow_missing", False)), params)
    moment = parse_as_of(params.get("as_of"))
    clock = max(to_naive_utc(now) if now is not None else utc_now(), moment)
    raw_events = events_from_column(frame)
    raw = frame.drop(columns=[EVENTS_COLUMN], errors="ignore")
    filled, _ = fill_outcome(raw)
    options = ReadOptions.from_params(contract["ingest"])
    lead_level = not contract.get("time_aware", True)
    if lead_level:  # as ingest does: a placeholder created_at for validation only
        filled = filled.assign(created_at=pd.Timestamp(options.min_date))
    leads, rejects = validate_leads(filled, INPUT_FILE, options, clock)
    if lead_level:
        leads, rejects = drop_placeholder(leads), drop_placeholder(rejects)
    for col in contract.get("date_columns", []):
        if col in leads.columns:  # typed as the source config typed it at ingest
            leads[col] = parse_dates(leads[col], options.for_column(col))
    if raw_events is None:
        events = None
    else:
        ids = rejects["lead_id"].astype("str").str.strip() if "lead_id" in rejects else []
        events, _ = validate_events(raw_events, leads, f"{INPUT_FILE} (events)",
                                    options, clock,
                                    rejected_lead_ids=[i for i in ids if i])
    fs = FeatureSettings.from_params(contract["features"])
    scored = score_open_leads(leads, events, bundle, fs, moment)
    return assemble(frame, scored.table, scored.not_open, rejects, list(scored.table.columns))


def assemble(frame: pd.DataFrame, table: pd.DataFrame, not_open: pd.DataFrame,
             rejects: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One output row per input row (input order): scored values, or the status why not."""
    n = len(frame)
    ids = frame["lead_id"].astype(object).where(frame["lead_id"].notna(), None)
    status = np.full(n, "scored", dtype=object)
    rejected_at = {int(r): str(reason) for r, reason in
                   zip(rejects.get("source_row", []), rejects.get("reason", []), strict=True)}
    for pos, reason in rejected_at.items():
        status[pos] = f"rejected: {reason}"
    reason_of = dict(zip(not_open["lead_id"].astype(str), not_open["reason"], strict=True))
    key = ids.astype(str)
    for pos in range(n):
        if pos not in rejected_at and key.iloc[pos] in reason_of:
            status[pos] = f"not open: {reason_of[key.iloc[pos]]}"
    scored = table.set_index("lead_id")
    pos = scored.index.get_indexer(key.where(status == "scored", "\x00"))
    found = pos >= 0
    out = pd.DataFrame({"lead_id": ids, "status": pd.Series(status, dtype="string")})
    for col in columns:
        if col == "lead_id":
            continue
        values = scored[col].to_numpy()[np.maximum(pos, 0)] if len(scored) else \
            np.full(n, None, dtype=object)
        # nullable dtypes: a row that is not scored is null in JSON (not NaN)
        if col == "propensity":
            out[col] = pd.Series(np.where(found, values, np.nan), dtype="float64").astype(
                "Float64").mask(~found)
        elif col == "score":
            out[col] = pd.Series(np.where(found, values, 0), dtype="int64").astype(
                "Int64").mask(~found)
        else:
            out[col] = pd.Series(np.where(found, values, None), dtype=object).astype(
                "string")
    return out


class LeadPropensityModel(mlflow.pyfunc.PythonModel):
    """Raw leads (+ events) and `as_of` in; propensity, score, bands and reasons out."""

    def load_context(self, context: Any) -> None:
        self.bundle = joblib.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return score_raw(self.bundle, pd.DataFrame(model_input), params)


#: The `pipeline` modules the served model runs (the contract's validation and this file):
#: only these ship with it, not the generator, stages or tracking.
SERVED_PIPELINE_MODULES = ("__init__.py", "errors.py", "readers.py", "contract.py",
                           "pyfunc_model.py")


@contextmanager
def code_paths() -> Iterator[list[str]]:
    """The code MLflow ships with the model so it loads outside this checkout: the
    `models` and `features` packages and a `pipeline` package of `SERVED_PIPELINE_MODULES`
    (staged in a temporary folder while the model is logged)."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="leadprop-code-") as tmp:
        served = Path(tmp) / "pipeline"
        served.mkdir()
        for name in SERVED_PIPELINE_MODULES:
            shutil.copy2(root / "pipeline" / name, served / name)
        yield [str(root / "models"), str(root / "features"), str(served)]


def contract_from_params(params: Any) -> dict[str, Any]:
    """`input_contract` for the training data of a params set: the validated interim tables
    (`paths.interim`), the source configuration `params.source` (its file's hash; "none"
    for the built-in synthetic sample), the `features` and `ingest` settings."""
    from pipeline import tracking
    from pipeline.contract import CONTRACT_VERSION
    from pipeline.stages.features import read_interim

    leads, events = read_interim(Path(params.paths.interim))
    source = str(getattr(params, "source", None) or "synthetic")
    config = Path(source)
    return input_contract(
        leads, events, source=source,
        source_hash=tracking.file_hash([config]) if config.is_file() else "none",
        features=getattr(params, "features", None), ingest=getattr(params, "ingest", None),
        contract_version=CONTRACT_VERSION,
    )
