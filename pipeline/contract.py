"""The data contract (docs/contract.md): typed `leads` and `events` tables and their checks.

`validate_leads` / `validate_events` take raw frames as `read_table` returns them (text
columns, rows numbered as in the file) and return `(clean, rejects)`:

- `clean`: the typed table. `lead_id` and every other attribute are text (pandas `str`),
  dates are `datetime64[us]` naive UTC, `converted` is int8 0/1, `company_size` is Int64;
  events are sorted by `lead_id, timestamp`. Unknown extra columns are kept as text.
  A date-only `converted_at` / `lost_at` ("that day") on created_at's day is not before
  it: it is set to created_at, counted in `attrs["dates_clipped_to_created_at"]`.
- `rejects`: the rows set aside, as they were read, behind two leading columns:
  `source_row` (the row number in the file) and `reason` (`; `-separated when several);
  personal columns (`personal_columns`) are masked (`a***@example.com`, `***67`, `J***`).

Every input row ends up in exactly one of the two. Problems with the file as a whole
(missing columns, duplicate ids, a non-binary outcome, a date column in another format,
most rows rejected) raise `DataError` instead. The row checks run as a pandera schema
with lazy validation; its failure cases are turned into the messages and reject reasons.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Callable, Collection, Iterable
from typing import Any

import pandas as pd

with warnings.catch_warnings():
    # pandera imports pyspark.pandas when pyspark (the Spark engine) is installed, which
    # warns on every run that pandas >= 3 is not fully supported; leadprop's Spark engine
    # uses only DataFrames and pandas UDFs, not pyspark.pandas.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    import pandera.pandas as pa

from features import pii
from pipeline.errors import ConfigError, DataError
from pipeline.readers import ReadOptions, format_names

log = logging.getLogger(__name__)

#: Version of this contract (the column names, types and rules above); a registered model
#: records the one it was trained on and refuses input declared for another.
CONTRACT_VERSION = "1"
LEADS_REQUIRED = ("lead_id", "created_at", "converted")
EVENTS_REQUIRED = ("lead_id", "timestamp", "event_type")
LEADS_DATE_COLUMNS = ("created_at", "converted_at", "lost_at")
LEADS_COUNT_COLUMNS = ("company_size",)
EVENTS_DATE_COLUMNS = ("timestamp",)
# Kept in the interim tables (features decide what to derive), never shown in reports,
# masked in rejects. Other columns holding personal data are found by content (features.pii).
PERSONAL_COLUMNS = frozenset(pii.CONTRACT_PERSONAL)
REJECT_COLUMNS = ("source_row", "reason")
# leads.attrs key: column -> how many date-only values on created_at's day were set to it.
CLIPPED_ATTR = "dates_clipped_to_created_at"
DATETIME = "datetime64[us]"

_TRUE = frozenset({"1", "1.0", "true", "yes"})
_FALSE = frozenset({"0", "0.0", "false", "no"})
_ISO = "ISO 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"
_DATE_LIKE = r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"  # day, month and year: worth a second try
# table attrs key: date column -> {"count", "rows"} of values that are not dates.
UNPARSED_ATTR = "unparsed_dates"
# table attrs key: how many exact duplicate rows were dropped (ReadOptions.duplicates).
DUPLICATES_ATTR = "duplicates_dropped"
_GUESS_FORMATS = (
    "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%m-%d-%Y",
    "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S",
)  # fmt: skip

# pandera check name -> reject reason ("{column}" is filled in); the order is the order in
# which several reasons for one row are listed.
_REASONS = {
    "not_nullable": "{column} is empty",
    "not_a_date": "{column} is not a date",
    "before_created": "{column} is before created_at",
    "not_a_count": "{column} is not a whole number >= 0",
    "rejected_lead": "lead_id belongs to a rejected lead",
    "unknown_lead": "lead_id is not in the leads file",
    "in_future": "{column} is in the future",
    "after_export": "{column} is after the export moment {now}",
    "before_min_date": "{column} is before {min_date} (ingest.min_date)",
}
# Checks whose failures stop the run when they hit more than `max_bad_share` of a column.
_SHARE_CHECKS = ("not_a_date", "not_a_count")


def _text_columns_check(typed: Collection[str]) -> pa.Check:
    return pa.Check(
        lambda df: all(
            isinstance(df[c].dtype, pd.StringDtype) for c in df.columns if c not in typed
        ),
        name="other_columns_are_text",
    )


def _date_after(column: str, start: str) -> pa.Check:
    return pa.Check(
        lambda df: ~(df[column] < df[start]) if column in df else True,
        name=f"{column}_not_before_{start}",
    )


#: The typed `leads` table that `validate_leads` returns and later stages may rely on.
LEADS_SCHEMA = pa.DataFrameSchema(
    {
        "lead_id": pa.Column(str, nullable=False, unique=True),
        "created_at": pa.Column(DATETIME, nullable=False),
        "converted": pa.Column("int8", pa.Check.isin([0, 1])),
        "converted_at": pa.Column(DATETIME, nullable=True, required=False),
        "lost_at": pa.Column(DATETIME, nullable=True, required=False),
        "company_size": pa.Column("Int64", pa.Check.ge(0), nullable=True, required=False),
    },
    checks=[
        _text_columns_check({"created_at", "converted", "converted_at", "lost_at", "company_size"}),
        _date_after("converted_at", "created_at"),
        _date_after("lost_at", "created_at"),
    ],
    name="leads",
)

#: The typed `events` table that `validate_events` returns, sorted by lead_id, timestamp.
EVENTS_SCHEMA = pa.DataFrameSchema(
    {
        "lead_id": pa.Column(str, nullable=False),
        "timestamp": pa.Column(DATETIME, nullable=False),
        "event_type": pa.Column(str, nullable=False),
    },
    checks=[
        _text_columns_check({"timestamp"}),
        pa.Check(
            lambda df: (
                pd.MultiIndex.from_frame(df[["lead_id", "timestamp"]]).is_monotonic_increasing
            ),
            name="sorted_by_lead_id_timestamp",
        ),
    ],
    name="events",
)


def empty_events() -> pd.DataFrame:
    """A typed `events` table with no rows (for exports without activity data)."""
    return pd.DataFrame(
        {
            "lead_id": pd.Series(dtype="str"),
            "timestamp": pd.Series(dtype=DATETIME),
            "event_type": pd.Series(dtype="str"),
        }
    )


def empty_rejects(columns: Iterable[str]) -> pd.DataFrame:
    """A header-only rejects table: `source_row`, `reason`, then `columns`."""
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
    return _with_reject_columns(frame, pd.Series(dtype="str"))


def fill_outcome(raw: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A copy of a raw leads frame with `converted` present and filled, for scoring (open
    leads have no outcome): an empty or missing value becomes "1" when the row has a
    `converted_at`, else "0". Returns the frame and what was done: 'given', 'filled' or
    'added'."""
    def blank(values: pd.Series) -> pd.Series:
        return values.isna() | (values.astype("str").str.strip() == "")

    has_date = ~blank(raw["converted_at"]) if "converted_at" in raw.columns \
        else pd.Series(False, index=raw.index)
    implied = pd.Series("0", index=raw.index, dtype="str").mask(has_date, "1")
    if "converted" not in raw.columns:
        return raw.assign(converted=implied), "added"
    empty = blank(raw["converted"])
    if not empty.any():
        return raw, "given"
    filled = raw["converted"].astype("str").where(~empty, implied)
    return raw.assign(converted=filled), "filled"


# --------------------------------------------------------------------------- leads


def validate_leads(
    raw: pd.DataFrame,
    file: str,
    options: ReadOptions = ReadOptions(),
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check and type a raw leads frame; returns `(leads, rejects)` (see the module doc).

    `raw`'s index is taken as the row numbers quoted in messages and in `source_row`.
    A row with a date after the export moment `now` (default: the wall clock, UTC) or
    before `options.min_date` is rejected: such a date is a typo (a year 2062 for 2026),
    and kept it would move the data end (`features.snapshots.data_end`).
    Raises `DataError` for problems with the file as a whole.
    """
    now = to_naive_utc(now) if now is not None else utc_now()
    start = to_naive_utc(options.min_date)
    raw = _numbered(raw)
    _require_columns(raw, LEADS_REQUIRED, file, "leads")
    raw, n_duplicates = _drop_exact_duplicates(raw, file, "leads", options)
    _refuse_reserved_columns(raw, file)
    text = _normalise(raw)
    dates = {c: parse_dates(text[c], options.for_column(c)) for c in LEADS_DATE_COLUMNS
             if c in text}
    counts = {c: _parse_count(text[c], options.decimal) for c in LEADS_COUNT_COLUMNS if c in text}
    outcome = _parse_binary(text["converted"])
    created = dates["created_at"]
    # A date-only value means "that day": on created_at's day it is not before it.
    same_day = {c: _date_only(text[c]) & (p == created.dt.normalize())
                for c, p in dates.items() if c != "created_at"}

    columns = {
        "lead_id": pa.Column(
            nullable=False,
            checks=_check(lambda s: ~(s.duplicated(keep=False) & s.notna()), "duplicate"),
        ),
        "converted": pa.Column(
            nullable=False, checks=_check(lambda s: outcome.loc[s.index].notna(), "not_binary")
        ),
    }
    for column, parsed in dates.items():
        checks = [_parsed_check(parsed, "not_a_date"), *_plausible_checks(parsed, now, start)]
        if column != "created_at":
            checks.append(
                _check(
                    lambda s, p=parsed, d=same_day[column]: (
                        ~(p.loc[s.index] < created.loc[s.index]) | d.loc[s.index]
                    ),
                    "before_created",
                )
            )
        columns[column] = pa.Column(nullable=column != "created_at", checks=checks)
    for column, parsed in counts.items():
        columns[column] = pa.Column(nullable=True, checks=_parsed_check(parsed, "not_a_count"))
    failures = _failure_cases(pa.DataFrameSchema(columns, name="leads"), text)

    _refuse_duplicates(failures, file)
    _refuse_non_binary(failures, file)
    _refuse_bad_columns(failures, text, file, options)
    reasons = _reasons_by_row(failures, now=_day_or_moment(now), min_date=options.min_date)
    _refuse_mass_rejects(reasons, len(raw), file, "leads", options)

    typed: dict[str, pd.Series] = {}
    clipped: dict[str, int] = {}
    for column in text.columns:
        if column in same_day:
            early = same_day[column] & (dates[column] < created)
            typed[column] = dates[column].mask(early, created)
            clipped[column] = int(early[~text.index.isin(reasons.index)].sum())
        elif column in dates:
            typed[column] = dates[column]
        elif column in counts:
            typed[column] = counts[column]
        elif column == "converted":
            typed[column] = outcome
        else:
            typed[column] = _as_text(text[column])
    keep = ~text.index.isin(reasons.index)
    leads = pd.DataFrame(typed, index=text.index).loc[keep].reset_index(drop=True)
    leads["converted"] = leads["converted"].astype("int8")
    leads.attrs[CLIPPED_ATTR] = {c: n for c, n in clipped.items() if n}
    leads.attrs[UNPARSED_ATTR] = _note_unparsed(failures, file)
    leads.attrs[DUPLICATES_ATTR] = n_duplicates
    LEADS_SCHEMA.validate(leads)  # a failure here is a bug in this module, not bad data
    _log_rejects(reasons, len(raw), file)
    return leads, _with_reject_columns(raw.loc[~keep], reasons, raw, LEADS_DATE_COLUMNS)


# -------------------------------------------------------------------------- events


def validate_events(
    raw: pd.DataFrame,
    leads: pd.DataFrame,
    file: str,
    options: ReadOptions = ReadOptions(),
    now: pd.Timestamp | None = None,
    *,
    rejected_lead_ids: Collection[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check and type a raw events frame against the clean `leads`; returns `(events, rejects)`.

    Events later than `now` (default: the wall clock, UTC) are rejected as in the future.
    `rejected_lead_ids` (ids of rejected leads) only sharpens the reason of their events.
    """
    now = to_naive_utc(now) if now is not None else utc_now()
    raw = _numbered(raw)
    _require_columns(raw, EVENTS_REQUIRED, file, "events")
    raw, n_duplicates = _drop_exact_duplicates(raw, file, "events", options)
    _refuse_reserved_columns(raw, file)
    text = _normalise(raw)
    stamps = parse_dates(text["timestamp"], options.for_column("timestamp"))
    known = pd.Index(leads["lead_id"].dropna().unique())
    rejected = pd.Index(pd.Series(list(rejected_lead_ids), dtype="str").dropna().unique())

    columns = {
        "lead_id": pa.Column(
            nullable=False,
            checks=[
                _check(lambda s: ~s.isin(rejected), "rejected_lead"),
                _check(lambda s: s.isin(known) | s.isin(rejected), "unknown_lead"),
            ],
        ),
        "timestamp": pa.Column(
            nullable=False,
            checks=[
                _parsed_check(stamps, "not_a_date"),
                *_plausible_checks(stamps, now, to_naive_utc(options.min_date), "in_future"),
            ],
        ),
        "event_type": pa.Column(nullable=False),
    }
    failures = _failure_cases(pa.DataFrameSchema(columns, name="events"), text)
    _refuse_bad_columns(failures, text, file, options)
    reasons = _reasons_by_row(failures, min_date=options.min_date)
    _refuse_mass_rejects(reasons, len(raw), file, "events", options)

    typed = {
        column: stamps if column == "timestamp" else _as_text(text[column])
        for column in text.columns
    }
    keep = ~text.index.isin(reasons.index)
    events = (
        pd.DataFrame(typed, index=text.index)
        .loc[keep]
        .sort_values(["lead_id", "timestamp"], kind="stable")
        .reset_index(drop=True)
    )
    events.attrs[UNPARSED_ATTR] = _note_unparsed(failures, file)
    events.attrs[DUPLICATES_ATTR] = n_duplicates
    EVENTS_SCHEMA.validate(events)  # a failure here is a bug in this module, not bad data
    _log_rejects(reasons, len(raw), file)
    return events, _with_reject_columns(raw.loc[~keep], reasons, raw, EVENTS_DATE_COLUMNS)


# -------------------------------------------------------------------------- report


def data_quality_report(
    leads: pd.DataFrame,
    rejects_leads: pd.DataFrame,
    events: pd.DataFrame | None = None,
    rejects_events: pd.DataFrame | None = None,
    *,
    now: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Counts, missingness, base rate, date ranges and reject reasons; JSON-ready.

    Personal columns (`PERSONAL_COLUMNS`) are left out entirely, and no cell value other
    than dates and counts appears.
    """
    report: dict[str, Any] = {"leads": _table_report(leads, rejects_leads, LEADS_DATE_COLUMNS)}
    section = report["leads"]
    n_converted = int(leads["converted"].sum()) if len(leads) else 0
    section["converted"] = n_converted
    section["base_rate"] = round(n_converted / len(leads), 4) if len(leads) else None
    section[DUPLICATES_ATTR] = int(leads.attrs.get(DUPLICATES_ATTR, 0))
    section[CLIPPED_ATTR] = dict(leads.attrs.get(CLIPPED_ATTR, {}))
    section[UNPARSED_ATTR] = dict(leads.attrs.get(UNPARSED_ATTR, {}))
    if "converted_at" in leads:
        section["converted_without_date"] = int(
            ((leads["converted"] == 1) & leads["converted_at"].isna()).sum()
        )
    if events is not None:
        events_rejects = rejects_events if rejects_events is not None else empty_rejects([])
        report["events"] = _table_report(events, events_rejects, EVENTS_DATE_COLUMNS)
        report["events"]["leads_with_events"] = int(events["lead_id"].nunique())
        report["events"]["event_types"] = int(events["event_type"].nunique())
        report["events"][UNPARSED_ATTR] = dict(events.attrs.get(UNPARSED_ATTR, {}))
        report["events"][DUPLICATES_ATTR] = int(events.attrs.get(DUPLICATES_ATTR, 0))
    if now is not None:
        report["now"] = to_naive_utc(now).isoformat()
    return report


def _table_report(
    clean: pd.DataFrame, rejects: pd.DataFrame, date_columns: Iterable[str]
) -> dict[str, Any]:
    reasons = (
        rejects["reason"].str.split("; ").explode().value_counts()
        if len(rejects)
        else pd.Series(dtype="int64")
    )
    n = len(clean)
    return {
        "rows_in": n + len(rejects),
        "rows_clean": n,
        "rows_rejected": len(rejects),
        "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
        "missing": {
            str(c): {
                "count": int(clean[c].isna().sum()),
                "share": round(float(clean[c].isna().mean()), 4) if n else None,
            }
            for c in clean.columns
            if not is_personal(c)
        },
        "date_ranges": {
            c: {"min": _iso(clean[c].min()), "max": _iso(clean[c].max())}
            for c in date_columns
            if c in clean
        },
    }


def is_personal(column: str) -> bool:
    """True for the contract's personal columns (email, names, phone...), by name; other
    columns holding personal data are found by content (`personal_columns`)."""
    return str(column).strip().lower() in PERSONAL_COLUMNS


def personal_columns(frame: pd.DataFrame, skip: Iterable[str] = ()) -> dict[str, str]:
    """Column -> kind (email / phone / name) of every personal column of `frame`: the
    contract's ones by name, the others by content (`features.pii.detect_personal`)."""
    kinds = {}
    for column in frame.columns:
        if is_personal(column):
            key = str(column).strip().lower()
            kinds[column] = "email" if key == "email" else (
                "phone" if key in ("phone", "phone_number", "mobile") else "name")
    found = pii.detect_personal(frame, skip=set(kinds) | set(skip))
    return {**kinds, **{hit.column: hit.kind for hit in found}}


# ---------------------------------------------------------------- parsing helpers


def parse_dates(values: pd.Series, options: ReadOptions = ReadOptions()) -> pd.Series:
    """Dates as `datetime64[us]` naive UTC; NaT where empty or unparseable.

    Text is read as ISO `YYYY-MM-DD[ HH:MM[:SS]]` (offsets are converted to UTC; values
    without one are taken as UTC), or with `options.date_format`, or day-first. A column
    may mix precisions: with `date_format`, a value it does not read is tried with the
    format's other precisions (with / without seconds, with / without the time) first.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
        if getattr(parsed.dt, "tz", None) is None:
            return parsed.astype(DATETIME)
    else:
        text = _as_text(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
            if options.date_format:
                parsed = pd.to_datetime(text, format=options.date_format, errors="coerce", utc=True)
                for fmt in _format_variants(options.date_format):
                    missing = parsed.isna() & text.notna()
                    if not missing.any():
                        break
                    parsed = parsed.where(~missing, pd.to_datetime(
                        text[missing], format=fmt, errors="coerce", utc=True))
            elif options.dayfirst:
                parsed = pd.to_datetime(text, dayfirst=True, errors="coerce", utc=True)
                missing = parsed.isna() & text.str.match(_DATE_LIKE, na=False)
                if missing.any():  # other precisions than the first value's: one by one
                    parsed = parsed.where(~missing, pd.to_datetime(
                        text[missing], format="mixed", dayfirst=True, errors="coerce", utc=True))
            else:
                parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype(DATETIME)


def _format_variants(fmt: str) -> list[str]:
    """The other precisions of a date format: without / with seconds, the date part only.

    `'%d.%m.%Y %H:%M:%S'` -> `['%d.%m.%Y %H:%M', '%d.%m.%Y']`;
    `'%d/%m/%Y %H:%M'` -> `['%d/%m/%Y %H:%M:%S', '%d/%m/%Y']`; `'%d.%m.%Y'` -> the same
    with ` %H:%M` and ` %H:%M:%S` appended.
    """
    variants = []
    if "%H:%M:%S" in fmt:
        variants.append(fmt.replace("%H:%M:%S", "%H:%M"))
    elif "%H:%M" in fmt:
        variants.append(fmt.replace("%H:%M", "%H:%M:%S"))
    cut = min((fmt.find(t) for t in ("%H", "%I") if t in fmt), default=-1)
    if cut > 0:
        variants.append(fmt[:cut].rstrip(" T"))
    else:
        variants += [f"{fmt} %H:%M", f"{fmt} %H:%M:%S"]
    return [v for v in variants if v and v != fmt]


def to_naive_utc(moment: Any) -> pd.Timestamp:
    """A timestamp as naive UTC, microsecond unit (aware values are converted first)."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("us")


def utc_now() -> pd.Timestamp:
    """The wall clock as naive UTC."""
    return to_naive_utc(pd.Timestamp.now(tz="UTC"))


def _parse_binary(values: pd.Series) -> pd.Series:
    """0.0 / 1.0 for the accepted outcome spellings, NaN otherwise (float64)."""
    key = _as_text(values).str.lower()
    result = pd.Series(float("nan"), index=values.index)
    result[key.isin(_TRUE)] = 1.0
    result[key.isin(_FALSE)] = 0.0
    return result


def _parse_count(values: pd.Series, decimal: str) -> pd.Series:
    """Whole numbers >= 0 as Int64; NA where empty or not such a number."""
    text = _as_text(values)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    number = pd.to_numeric(text, errors="coerce")
    ok = number.notna() & (number >= 0) & (number < 2**62) & (number == number.round())
    return number.where(ok).astype("Float64").round().astype("Int64")


def _numbered(raw: pd.DataFrame) -> pd.DataFrame:
    """`raw` itself when its index can serve as row numbers, else renumbered from 1."""
    index = raw.index
    if pd.api.types.is_integer_dtype(index) and index.is_unique:
        return raw
    return raw.set_axis(pd.RangeIndex(1, 1 + len(raw)), axis=0)


def _normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """A copy with every non-datetime column as stripped text, blanks as missing."""
    out = {}
    for column in raw.columns:
        values = raw[column]
        out[column] = values if pd.api.types.is_datetime64_any_dtype(values) else _as_text(values)
    return pd.DataFrame(out, index=raw.index)


def _date_only(values: pd.Series) -> pd.Series:
    """True where a text date has no time of day (no ':'); False for typed datetimes."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.Series(False, index=values.index)
    return ~_as_text(values).str.contains(":", regex=False, na=True).astype(bool)


def _as_text(values: pd.Series) -> pd.Series:
    text = values.astype("str").str.strip()
    return text.mask(text == "")


def _iso(value: Any) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


# --------------------------------------------------------------------- pandera glue


def _check(fn: Callable[[pd.Series], pd.Series], name: str) -> pa.Check:
    return pa.Check(fn, name=name)


def _plausible_checks(parsed: pd.Series, now: pd.Timestamp, start: pd.Timestamp,
                      future: str = "after_export") -> list[pa.Check]:
    """Fail where a parsed date is after the export moment `now` (check `future`: a lead
    date "after the export moment", an event "in the future") or before `start`."""
    return [
        pa.Check(lambda s: ~(parsed.loc[s.index] > now), name=future),
        pa.Check(lambda s: ~(parsed.loc[s.index] < start), name="before_min_date"),
    ]


def _day_or_moment(moment: pd.Timestamp) -> str:
    """`2025-06-30` for a midnight, else `2025-06-30 12:00:00`."""
    if moment == moment.normalize():
        return moment.strftime("%Y-%m-%d")
    return moment.floor("s").isoformat(sep=" ")


def _parsed_check(parsed: pd.Series, name: str) -> pa.Check:
    """Fails where the raw value is present but its parsed form is missing."""
    return pa.Check(lambda s: s.isna() | parsed.loc[s.index].notna(), name=name)


def _failure_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases as (`column`, `check`, `failure_case`, `index`); empty if none."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases[["column", "check", "failure_case", "index"]].copy()
        cases["index"] = cases["index"].astype("int64")
        return cases.sort_values("index", kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "column": pd.Series(dtype="str"),
            "check": pd.Series(dtype="str"),
            "failure_case": pd.Series(dtype="object"),
            "index": pd.Series(dtype="int64"),
        }
    )


def _reasons_by_row(failures: pd.DataFrame, **fields: str) -> pd.Series:
    """One `; `-joined reason per failing row, indexed by row (`fields` fill in the
    reasons' other placeholders, e.g. `now`)."""
    rows = failures[failures["check"].isin(_REASONS)]
    if rows.empty:
        return pd.Series(dtype="str", index=pd.Index([], dtype="int64"))
    rank = {check: i for i, check in enumerate(_REASONS)}
    rows = rows.assign(
        reason=[
            _REASONS[c].format(column=col, **fields)
            for c, col in zip(rows["check"], rows["column"], strict=True)
        ],
        rank=rows["check"].map(rank),
    ).sort_values(["index", "rank"], kind="stable")
    rows = rows.drop_duplicates(["index", "reason"])
    return rows.groupby("index", sort=True)["reason"].agg("; ".join).astype("str")


def _with_reject_columns(
    raw_rows: pd.DataFrame,
    reasons: pd.Series,
    whole: pd.DataFrame | None = None,
    skip: Iterable[str] = (),
) -> pd.DataFrame:
    """The rejected rows behind `source_row` and `reason`, personal columns masked (found
    on the `whole` file, so a few rejected rows are judged like the column they come from)."""
    rejects = raw_rows.copy()
    if len(rejects) and whole is not None:
        rejects = pii.mask_frame(rejects, personal_columns(whole, skip))
    rejects.insert(0, "reason", reasons.reindex(raw_rows.index).astype("str"))
    rejects.insert(0, "source_row", pd.Series(raw_rows.index, index=raw_rows.index, dtype="int64"))
    return rejects.reset_index(drop=True)


# ------------------------------------------------------------------- fatal errors


def _require_columns(raw: pd.DataFrame, required: Iterable[str], file: str, what: str) -> None:
    schema = pa.DataFrameSchema({c: pa.Column(required=True) for c in required}, name=what)
    failures = _column_failures(schema, raw.head(0))
    if not failures:
        return
    found = [str(c) for c in raw.columns]
    lower = {c.lower(): c for c in found}
    hints = []
    for column in failures:
        close = difflib.get_close_matches(column.lower(), list(lower), n=1, cutoff=0.6)
        if close:
            hints.append(f"'{lower[close[0]]}' for '{column}'")
    missing = ", ".join(f"'{c}'" for c in failures)
    plural = "s" if len(failures) > 1 else ""
    hint = f" Did you mean {'; '.join(hints)}?" if hints else ""
    raise DataError(
        f"{file}: the {what} file has no column{plural} {missing}, which the data contract "
        f"requires (required: {format_names(required)}). It has {len(found)} column"
        f"{'s' if len(found) != 1 else ''}: {format_names(found)}.{hint} Rename the "
        "column in the export or map it in the source configuration (docs/contract.md).",
        file=file,
        column=failures[0],
    )


def _column_failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> list[str]:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        return [str(c) for c in cases.loc[cases["check"] == "column_in_dataframe", "failure_case"]]
    return []


def _drop_exact_duplicates(
    raw: pd.DataFrame, file: str, what: str, options: ReadOptions
) -> tuple[pd.DataFrame, int]:
    """`raw` without rows that repeat an earlier row in every column (a double export), and
    their count; `DataError` instead when `options.duplicates` is 'error'."""
    repeat = raw.duplicated(keep="first")
    n = int(repeat.sum())
    if not n:
        return raw, 0
    first = raw.index[repeat][0]
    hashes = pd.util.hash_pandas_object(raw, index=False)
    twin = hashes.index[hashes == hashes.loc[first]][0]
    if options.duplicates == "error":
        raise DataError(
            f"{file}: {n} row{'s' if n != 1 else ''} of the {what} file repeat an earlier row "
            f"in every column ({_rows(raw.index[repeat])}; e.g. row {first} is a copy of row "
            f"{twin}). Remove them from the export, or set ingest.duplicates: drop to drop "
            "them (they are counted in data_quality.json).",
            file=file, n_rows=n, example=f"row {first}",
        )
    log.warning("%s: dropped %d exact duplicate row%s (%s; e.g. row %s repeats row %s).",
                file, n, "s" if n != 1 else "", _rows(raw.index[repeat]), first, twin)
    return raw.loc[~repeat], n


def _refuse_reserved_columns(raw: pd.DataFrame, file: str) -> None:
    clash = [c for c in REJECT_COLUMNS if c in raw.columns]
    if clash:
        raise DataError(
            f"{file}: the file has a column named '{clash[0]}', a name the rejects files "
            "use for their own column. Rename it in the export.",
            file=file,
            column=clash[0],
        )


def _refuse_duplicates(failures: pd.DataFrame, file: str) -> None:
    dup = failures[failures["check"] == "duplicate"]
    if dup.empty:
        return
    ids = dup["failure_case"].astype("str")
    rows_by_id = dup.groupby(ids, sort=False)["index"].agg(list)
    examples = " and ".join(f"{_quote(i)} in {_rows(r)}" for i, r in rows_by_id.head(2).items())
    n_ids = len(rows_by_id)
    raise DataError(
        f"{file}: column 'lead_id' has {n_ids} id{'s' if n_ids != 1 else ''} that appear more "
        f"than once ({len(dup)} rows in all; e.g. {examples}). Each lead must appear once: "
        "with duplicates its attributes and outcome are ambiguous. Deduplicate the export "
        "(one row per lead) and run again.",
        file=file,
        column="lead_id",
        n_rows=len(dup),
        example=str(rows_by_id.index[0]),
    )


def _refuse_non_binary(failures: pd.DataFrame, file: str) -> None:
    bad = failures[failures["check"] == "not_binary"]
    if bad.empty:
        return
    values = bad["failure_case"].astype("str")
    rows_by_value = bad.groupby(values, sort=False)["index"].agg(list)
    rows_by_value = rows_by_value.loc[
        rows_by_value.map(len).sort_values(ascending=False, kind="stable").index
    ]
    shown = [
        f"{_quote(v)} ({len(r)} row{'s' if len(r) != 1 else ''}, e.g. row {r[0]})"
        for v, r in rows_by_value.head(3).items()
    ]
    more = len(rows_by_value) - len(shown)
    listing = ", ".join(shown) + (f" and {more} more" if more else "")
    raise DataError(
        f"{file}: column 'converted' must hold the outcome as 0 or 1 (true/false and yes/no "
        f"are read too), but {len(bad)} row{'s' if len(bad) != 1 else ''} hold "
        f"{len(rows_by_value)} other value{'s' if len(rows_by_value) != 1 else ''}: "
        f"{listing}. Map the outcome to 0/1 in the export and run again.",
        file=file,
        column="converted",
        n_rows=len(bad),
        example=str(rows_by_value.index[0]),
    )


def _refuse_bad_columns(
    failures: pd.DataFrame, text: pd.DataFrame, file: str, options: ReadOptions
) -> None:
    """Stop when a date or count column fails to parse for more than `max_bad_share`."""
    bad_all = failures[failures["check"].isin(_SHARE_CHECKS)]
    for (column, check), bad in bad_all.groupby(["column", "check"], sort=False):
        n_values = int(text[column].notna().sum())
        if len(bad) <= options.max_bad_share * n_values:
            continue
        examples = ", ".join(_quote(v) for v in bad["failure_case"].head(2))
        head = (
            f"{file}: column '{column}' has {len(bad)} of {n_values} values that are not "
            f"{'dates' if check == 'not_a_date' else 'whole numbers >= 0'} "
            f"({_rows(bad['index'])}; e.g. {examples}). "
            f"That is more than the {options.max_bad_share:.0%} of a column that may be set "
            "aside as rejects"
        )
        if check == "not_a_date":
            col = str(column)
            advice = _date_advice(bad["failure_case"], options.for_column(col), col)
            message = f"{head}, so {advice}"
        else:
            message = (
                f"{head}, so the column probably holds something else (ranges such as "
                "'11-50', or text). Clean the column in the export or map it in the source "
                "configuration."
            )
        raise DataError(
            message,
            file=file,
            column=str(column),
            n_rows=len(bad),
            example=str(bad["failure_case"].iloc[0]),
        )


def _date_advice(values: pd.Series, options: ReadOptions, column: str = "") -> str:
    """What was tried and what would read `column`: a format guessed from its own values,
    to set for this column only (`ingest.date_formats`), so fixing one column never breaks
    another that is written differently."""
    if options.date_format:
        reading = f"with the format {options.date_format!r}"
    elif options.dayfirst:
        reading = "day-first (ingest.dayfirst)"
    else:
        reading = f"as {_ISO}"
    guesses = _guess_date_formats(values.astype("str").head(200))
    guess = f" (these look like {' or '.join(repr(g) for g in guesses)})" if guesses else ""
    if guesses and column:
        fix = (f"set the format for this column only: ingest.date_formats: "
               f"{{{column}: '{guesses[0]}'}} (other date columns keep theirs)")
    else:
        fix = ("set ingest.date_formats: {" + (column or "<column>") + ": '<format>'} for "
               "this column (or ingest.date_format for every date column)")
    return (
        f"the file probably writes dates in another format than the one read ({reading}){guess}. "
        f"Fix them, or {fix}."
    )


def _guess_date_formats(values: pd.Series) -> list[str]:
    """The common formats that read the most of `values` (at least half of them)."""
    fits = {
        fmt: int(pd.to_datetime(values, format=fmt, errors="coerce").notna().sum())
        for fmt in _GUESS_FORMATS
    }
    best = max(fits.values(), default=0)
    if best == 0 or best < len(values) / 2:
        return []
    return [fmt for fmt, n in fits.items() if n == best][:2]


def _refuse_mass_rejects(
    reasons: pd.Series, n_rows: int, file: str, what: str, options: ReadOptions
) -> None:
    if n_rows == 0 or len(reasons) <= options.max_reject_share * n_rows:
        return
    top = _reason_counts(reasons)
    first_reason = top.index[0]
    hint = (
        " and that its lead_id values are the ones in the leads file"
        if first_reason.startswith("lead_id is not in")
        else ""
    )
    raise DataError(
        f"{file}: {len(reasons)} of {n_rows} rows ({len(reasons) / n_rows:.0%}) of the {what} "
        f"file would be rejected, more than the {options.max_reject_share:.0%} a file may "
        f"lose, so the file as a whole looks wrong: {_describe_reasons(reasons, top)}. Check "
        f"that the file matches the data contract (docs/contract.md){hint}.",
        file=file,
        column=first_reason.split(" ", 1)[0],
        n_rows=len(reasons),
    )


# ------------------------------------------------------------------ message helpers


def _reason_counts(reasons: pd.Series) -> pd.Series:
    return reasons.str.split("; ").explode().value_counts(sort=True)


def _describe_reasons(reasons: pd.Series, counts: pd.Series | None = None) -> str:
    counts = _reason_counts(reasons) if counts is None else counts
    exploded = reasons.str.split("; ").explode()
    parts = []
    for reason, n in counts.head(4).items():
        rows = exploded.index[exploded == reason]
        parts.append(f"{n} × {reason} ({_rows(rows)})")
    more = len(counts) - len(parts)
    return ", ".join(parts) + (f" and {more} more reasons" if more > 0 else "")


def _note_unparsed(failures: pd.DataFrame, file: str) -> dict[str, dict[str, Any]]:
    """Date column -> count and first rows of values that are not dates, each logged as a
    warning (they are rejected; a format problem shows here before it costs many rows)."""
    bad = failures[failures["check"] == "not_a_date"]
    notes = {}
    for column, cases in bad.groupby("column", sort=False):
        rows = sorted(int(i) for i in cases["index"])
        notes[str(column)] = {"count": len(rows), "rows": rows[:5]}
        log.warning(
            "%s: column '%s' has %d value%s that %s not read as dates (%s; e.g. %s): "
            "check ingest.date_format / date_formats / dayfirst.",
            file, column, len(rows), "s" if len(rows) != 1 else "",
            "are" if len(rows) != 1 else "is", _rows(rows), _quote(cases["failure_case"].iloc[0]),
        )  # fmt: skip
    return notes


def _log_rejects(reasons: pd.Series, n_rows: int, file: str) -> None:
    if len(reasons):
        log.warning(
            "%s: %d of %d rows set aside as rejects: %s.",
            file, len(reasons), n_rows, _describe_reasons(reasons),
        )  # fmt: skip


def _rows(index: Iterable[Any], limit: int = 3) -> str:
    rows = sorted(int(i) for i in index)
    shown = ", ".join(str(r) for r in rows[:limit])
    if len(rows) > limit:
        shown += ", …"
    return f"row{'s' if len(rows) != 1 else ''} {shown}"


def _quote(value: Any, width: int = 40) -> str:
    text = str(value)
    return f"'{text if len(text) <= width else text[: width - 1] + '…'}'"


def parse_moment(name: str, value: Any) -> pd.Timestamp | None:
    """A CLI/params moment as naive UTC (aware values converted); ConfigError if unreadable."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        moment = to_naive_utc(value)
    except (ValueError, TypeError):
        moment = pd.NaT
    if pd.isna(moment):
        raise ConfigError(f"`{name}` must be a date like 2026-06-30 or 2026-06-30 12:00:00 "
                          f"(UTC); got {value!r}")
    return moment
