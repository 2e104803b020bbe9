"""Reading raw tables (CSV or Parquet) with clear errors for files that cannot be read.

`read_table` only reads: it returns every CSV column as text and leaves typing and row
checks to `pipeline.contract`. The rows of the returned frame are numbered as a
spreadsheet shows them (the header is row 1, so the first data row is row 2; a Parquet
file has no header row, so its first row is row 1); the contract quotes those numbers in
its messages and in the rejects files.
"""

from __future__ import annotations

import codecs
import csv
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import ConfigError, DataError

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_DELIMITER_CANDIDATES = (",", ";", "\t", "|")
#: `ingest:` keys that are not read options (the ingest stage reads them).
STAGE_KEYS = ("now", "personal_data", "not_personal")


@dataclass(frozen=True)
class ReadOptions:
    """How raw files are read and how strict the contract is: the `ingest:` params section.

    Every field maps to the `ingest.<field>` key of the same name (see `from_params`).
    Empty or whitespace-only cells always count as missing; `na_values` adds more markers.
    """

    delimiter: str = ","
    encoding: str = "utf-8"
    decimal: str = "."
    date_format: str | None = None
    # Per-column formats (contract column name -> strftime format, e.g. {lost_at: '%d.%m.%Y'})
    # overriding date_format for that column: exports often write two dates two ways.
    date_formats: Mapping[str, str] = field(default_factory=dict)
    na_values: tuple[str, ...] = ("",)
    dayfirst: bool = False
    # Above this share of a column's non-empty values failing to parse (dates, counts) the
    # column is taken to be in the wrong format and ingest stops instead of rejecting rows.
    max_bad_share: float = 0.05
    # Above this share of a file's rows rejected, the file as a whole is taken to be wrong.
    max_reject_share: float = 0.5
    # Dates before this day are taken as typos (a year 1900 or 0001) and their rows rejected.
    min_date: str = "1990-01-01"
    # Rows that repeat an earlier row in every column: drop (counted) or error.
    duplicates: str = "drop"
    # The longest cell accepted, in characters: a longer one stops the read with an error
    # naming file, column and row (a runaway quote or a pasted file, not a CRM value).
    max_field_size: int = 1_000_000

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise ConfigError(f"`ingest.delimiter` must be one character; got {self.delimiter!r}.")
        if len(self.decimal) != 1 or self.decimal == self.delimiter:
            raise ConfigError(
                "`ingest.decimal` must be one character other than the delimiter "
                f"({self.delimiter!r}); got {self.decimal!r}."
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(
                f"`ingest.encoding` must be a known text encoding such as 'utf-8', 'cp1252' or "
                f"'latin-1'; got {self.encoding!r}."
            ) from None
        if self.date_format is not None and "%" not in self.date_format:
            raise ConfigError(
                "`ingest.date_format` must be a strftime-style format such as '%d/%m/%Y' or "
                f"'%Y-%m-%d %H:%M'; got {self.date_format!r}."
            )
        if not isinstance(self.date_formats, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and "%" in v
            for k, v in self.date_formats.items()
        ):
            raise ConfigError(
                "`ingest.date_formats` must map column names to strftime formats, e.g. "
                f"{{lost_at: '%d.%m.%Y'}}; got {self.date_formats!r}."
            )
        object.__setattr__(self, "date_formats", dict(self.date_formats))
        if isinstance(self.na_values, str) or not all(isinstance(v, str) for v in self.na_values):
            raise ConfigError(
                f"`ingest.na_values` must be a list of strings; got {self.na_values!r}."
            )
        object.__setattr__(self, "na_values", tuple(self.na_values))
        if not 0 <= self.max_bad_share < 1:
            raise ConfigError(
                f"`ingest.max_bad_share` must be >= 0 and < 1; got {self.max_bad_share!r}."
            )
        if not 0 < self.max_reject_share <= 1:
            raise ConfigError(
                f"`ingest.max_reject_share` must be > 0 and <= 1; got {self.max_reject_share!r}."
            )
        try:
            start = pd.Timestamp(str(self.min_date))
        except (ValueError, TypeError):
            start = pd.NaT
        if pd.isna(start):
            raise ConfigError(
                f"`ingest.min_date` must be a date such as '1990-01-01'; got {self.min_date!r}."
            )
        object.__setattr__(self, "min_date", start.strftime("%Y-%m-%d"))
        if self.duplicates not in ("drop", "error"):
            raise ConfigError(
                f"`ingest.duplicates` must be 'drop' or 'error'; got {self.duplicates!r}."
            )
        if (isinstance(self.max_field_size, bool) or not isinstance(self.max_field_size, int)
                or self.max_field_size < 1):
            raise ConfigError(
                "`ingest.max_field_size` must be a whole number of characters >= 1 (default "
                f"1000000); got {self.max_field_size!r}."
            )

    def for_column(self, column: str) -> ReadOptions:
        """These options with `date_formats[column]` (when given) as the date format."""
        fmt = self.date_formats.get(column)
        return self if fmt is None or fmt == self.date_format else replace(self, date_format=fmt)

    def __hash__(self) -> int:
        return hash((self.delimiter, self.encoding, self.date_format,
                     tuple(sorted(self.date_formats.items())), self.na_values))

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> ReadOptions:
        """Build from the `ingest:` params section; `STAGE_KEYS` (`now`, the personal-data
        settings) belong to the ingest stage and are skipped."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in (section or {}).items() if k not in STAGE_KEYS}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(
                f"`ingest.{unknown[0]}` is not a known setting; the ingest settings are "
                f"{', '.join(sorted(known | set(STAGE_KEYS)))}."
            )
        if isinstance(given.get("na_values"), list):
            given["na_values"] = tuple(given["na_values"])
        return cls(**given)


def read_table(
    path: Path, options: ReadOptions = ReadOptions(), what: str = "input"
) -> pd.DataFrame:
    """Read a CSV (every column as text) or Parquet file, chosen by the file's suffix.

    `what` names the table in messages ("leads", "events"). Raises `DataError` for a missing,
    empty, undecodable or unreadable file, a header that looks like another delimiter, or a
    row with more fields than the header.
    """
    path = Path(path)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(
            f"{path}: the {what} file {where}. Check the path (it is resolved from the "
            f"current folder, {Path.cwd()}).",
            file=str(path),
        )
    if path.stat().st_size == 0:
        raise DataError(
            f"{path}: the {what} file is empty (0 bytes). Export it again with a header row "
            "and at least one data row.",
            file=str(path),
        )
    suffixes = {s.lower() for s in path.suffixes}
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame = _read_parquet(path, what)
        first_row = 1
    elif suffixes & CSV_SUFFIXES:
        frame = _read_csv(path, options, what)
        first_row = 2
    else:
        raise DataError(
            f"{path}: cannot tell how to read the {what} file from its name; use a .csv "
            "(optionally compressed, e.g. .csv.gz) or a .parquet file.",
            file=str(path),
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(
            f"{path}: the {what} file has a header ({format_names(frame.columns)}) but no "
            "data rows. Export it again with its rows.",
            file=str(path),
            n_rows=0,
        )
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    check_field_sizes(frame, path, options, what)
    return frame


def _read_csv(path: Path, options: ReadOptions, what: str) -> pd.DataFrame:
    encoding = _python_encoding(options.encoding)
    scan_line_lengths(path, options, what)
    try:
        with warnings.catch_warnings():
            # A row with more fields than the header is dropped data, not a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=options.delimiter,
                encoding=encoding,
                dtype=str,
                keep_default_na=False,
                na_values=list(options.na_values),
                index_col=False,
                skip_blank_lines=True,
            )
    except UnicodeDecodeError as err:
        raise _decode_error(path, options, what, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}: the {what} file has no header row (it holds only blank lines). Export "
            "it again with a header row and at least one data row.",
            file=str(path),
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        raise _ragged_error(path, options, what) from None
    _check_delimiter(path, frame.columns, options, what)
    return frame


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise DataError(
            f"{path}: the {what} file is not a readable Parquet file ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). Export it again, or "
            "export CSV instead.",
            file=str(path),
        ) from None


def _python_encoding(encoding: str) -> str:
    # Excel writes a byte-order mark at the start of UTF-8 CSVs; it must not stick to the
    # first column's name.
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _decode_error(
    path: Path, options: ReadOptions, what: str, err: UnicodeDecodeError
) -> DataError:
    # Error path only: decode the whole file ourselves to find the offending line.
    data = path.read_bytes()
    where = ""
    try:
        data.decode(_python_encoding(options.encoding))
    except UnicodeDecodeError as full:
        line = data.count(b"\n", 0, full.start) + 1
        where = f" at line {line} (byte 0x{data[full.start]:02x})"
    hint = "'cp1252' or 'latin-1'" if codecs.lookup(options.encoding).name == "utf-8" else "'utf-8'"
    if suggest_encoding(data, options.encoding) == "cp1251":
        hint = ("'cp1251': the bytes look like Cyrillic text in the Windows Cyrillic code "
                "page, which cp1252 would turn into mojibake")
    return DataError(
        f"{path}: the {what} file is not valid {options.encoding} text{where}. The export "
        f"probably uses another character encoding; check `encoding` (set ingest.encoding, "
        f"e.g. to {hint}) or export the file as UTF-8.",
        file=str(path),
        example=f"0x{err.object[err.start]:02x}" if err.object else None,
    )


def _ragged_error(path: Path, options: ReadOptions, what: str) -> DataError:
    """A row has more fields than the header: find the first one (error path only)."""
    encoding = _python_encoding(options.encoding)
    detail = ""
    n_bad = 0
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=options.delimiter)
        header = next(reader, [])
        for record in reader:
            if len(record) > len(header):
                n_bad += 1
                if not detail:
                    detail = (
                        f" (e.g. line {reader.line_num} has {len(record)} fields where the "
                        f"header has {len(header)})"
                    )
    return DataError(
        f"{path}: {n_bad or 'some'} row{'' if n_bad == 1 else 's'} of the {what} file "
        f"{'has' if n_bad == 1 else 'have'} more fields than the header{detail}. A value "
        f"probably contains the delimiter {options.delimiter!r} without quotes, or "
        "`delimiter` is wrong (set ingest.delimiter). Fix the export so every row has as "
        "many fields as the header.",
        file=str(path),
        n_rows=n_bad or None,
    )


def _check_delimiter(path: Path, columns: pd.Index, options: ReadOptions, what: str) -> None:
    names = [str(c) for c in columns]
    looks_wrong = any(sum(name.count(c) for name in names) >= len(names)
                      for c in _DELIMITER_CANDIDATES if c != options.delimiter)
    if looks_wrong:
        candidate = suggest_delimiter(_head_lines(path, options), options.delimiter)
        if candidate is not None:
            shown = "tab" if candidate == "\t" else repr(candidate)
            raise DataError(
                f"{path}: the {what} file has {len(names)} column"
                f"{'s' if len(names) != 1 else ''} {format_names(names, limit=3)} — is "
                f"`delimiter` {shown}? Set ingest.delimiter to {shown} "
                f"(it is {options.delimiter!r} now).",
                file=str(path),
                column=names[0],
                example=names[0],
            )


# ------------------------------------------------------------------- hints and limits

_HINT_LINES = 50
_HINT_BYTES = 1 << 20


def _head_lines(path: Path, options: ReadOptions) -> list[str]:
    """The first lines of a text file (at most `_HINT_LINES`, from its first MB), decoded
    with the configured encoding (undecodable bytes replaced)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HINT_BYTES)
    except OSError:
        return []
    if path.suffix.lower() not in CSV_SUFFIXES:  # compressed: let pandas decompress
        return []
    text = head.decode(_python_encoding(options.encoding), errors="replace")
    lines = text.splitlines()
    if len(head) == _HINT_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    return [line for line in lines[:_HINT_LINES] if line.strip()]


def suggest_delimiter(lines: list[str], current: str) -> str | None:
    """The delimiter among `;`, tab, `|` and `,` (other than `current`) that splits the
    header into the most columns while every sampled line has that many fields (quotes
    respected); None when none splits the header at all. Ties go to the candidate whose
    lines agree most often."""
    if not lines:
        return None
    best: tuple[float, int, str] | None = None
    for candidate in (";", "\t", "|", ","):
        if candidate == current:
            continue
        rows = list(csv.reader(lines, delimiter=candidate))
        width = len(rows[0]) if rows else 0
        if width < 2:
            continue
        agree = sum(len(r) == width for r in rows) / len(rows)
        score = (agree, width, candidate)
        if best is None or score[:2] > best[:2]:
            best = score
    return best[2] if best is not None else None


#: cp1251 bytes of Cyrillic letters (А-я, Ё, ё).
_CYRILLIC_BYTES = frozenset(range(0xC0, 0x100)) | {0xA8, 0xB8}


def suggest_encoding(data: bytes, current: str) -> str | None:
    """'cp1251' when bytes that are not valid UTF-8 look like Cyrillic text in the Windows
    Cyrillic code page: most bytes above 0x7F are cp1251 letters and stand next to another
    such letter (whole Cyrillic words), unlike accented letters of Western text (cp1252),
    which sit alone among ASCII letters. None otherwise."""
    if codecs.lookup(current).name == "cp1251":
        return None
    high = [i for i, b in enumerate(data) if b >= 0x80]
    if not high:
        return None
    letters = [i for i in high if data[i] in _CYRILLIC_BYTES]
    if len(letters) < 0.9 * len(high):
        return None
    def is_letter(j: int) -> bool:
        return 0 <= j < len(data) and data[j] in _CYRILLIC_BYTES
    paired = sum(1 for i in letters if is_letter(i - 1) or is_letter(i + 1))
    return "cp1251" if paired >= 0.6 * len(letters) else None


def scan_line_lengths(path: Path, options: ReadOptions, what: str) -> None:
    """Before pandas reads a CSV: DataError when a line is longer than `max_field_size` x
    the header's field count (it must hold a cell over the limit, or a quote that never
    closes), so a 2 GB cell is refused without loading it. Compressed files are left to
    `check_field_sizes`."""
    if path.suffix.lower() not in CSV_SUFFIXES:
        return
    with open(path, "rb") as handle:
        first = handle.readline(_HINT_BYTES)
        width = max(1, first.count(options.delimiter.encode("latin-1", "replace")) + 1)
        limit = options.max_field_size * width + 2 * width
        line, run = 1, len(first)
        if run > limit:
            raise _field_error(path, what, None, 1, limit, options)
        if first.endswith(b"\n"):
            line, run = 2, 0
        while block := handle.read(1 << 20):
            if run + len(block) > limit:  # only then can a line in it be too long
                start = 0
                while (nl := block.find(b"\n", start)) != -1:
                    if run + nl - start > limit:
                        raise _field_error(path, what, None, line, limit, options)
                    line, run, start = line + 1, 0, nl + 1
                run += len(block) - start
                if run > limit:
                    raise _field_error(path, what, None, line, limit, options)
                continue
            last = block.rfind(b"\n")
            if last == -1:
                run += len(block)
            else:
                line += block.count(b"\n")
                run = len(block) - last - 1


def check_field_sizes(frame: pd.DataFrame, path: Path, options: ReadOptions, what: str) -> None:
    """DataError naming the file, column, row and `ingest.max_field_size` when a text cell
    is longer than the limit."""
    if path.stat().st_size <= options.max_field_size:
        return  # no cell can be longer than the file
    for column in frame.columns:
        values = frame[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        try:
            lengths = values.str.len().fillna(0)
        except AttributeError:  # not text after all (e.g. bytes or lists from Parquet)
            continue
        if len(lengths) and int(lengths.max()) > options.max_field_size:
            row = lengths.idxmax()
            raise _field_error(path, what, str(column), row, int(lengths.max()), options,
                               n_rows=int((lengths > options.max_field_size).sum()))


def _field_error(path: Path, what: str, column: str | None, row: Any, size: int,
                 options: ReadOptions, n_rows: int | None = None) -> DataError:
    what_is = (f"a cell of {size:,} characters at column '{column}', row {row}"
               if column is not None else
               f"a line of more than {size:,} bytes at line {row}, which must hold a cell "
               "over the limit (or a quote that is never closed)")
    return DataError(
        f"{path}: the {what} file has {what_is}; the limit is "
        f"`ingest.max_field_size` = {options.max_field_size:,}. A CRM field that long is "
        "usually a quote left open or a file pasted into a cell: fix the export, or raise "
        "`ingest.max_field_size` if such cells are expected.",
        file=str(path),
        column=column,
        n_rows=n_rows,
        example=f"{size} characters",
    )


def format_names(columns: Any, limit: int = 12) -> str:
    """`'a', 'b', 'c'`, shortened to the first `limit` names and a count of the rest."""
    names = [f"'{c}'" for c in columns]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f", … ({len(names) - limit} more)"
    return ", ".join(names)
