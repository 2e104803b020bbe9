"""Personal data recognised by content, not by name: emails, phone numbers, person names.

Pure functions on frames; `pipeline` decides what to do with what they find (refuse, drop
or hash at ingest, mask in rejects files, refuse to register a model).

- `detect_personal(frame)` screens every text column and returns one `PersonalColumn` per
  column that holds emails (anywhere in the value, so free-text notes count), phone numbers,
  or person names (by content: mostly 2-3 capitalised words with many distinct values and no
  ordinary category words; or by a header such as `first_name`, `contact`, `фамилия`, when
  the values are words with many distinct values). Numeric and date columns are skipped.
- `mask_value` / `mask_frame`: `a***@example.com`, `***67`, `J***`.
- `hash_values`: a salted SHA-256 (hex, 16 characters), stable for a given salt, so the
  column can still serve as an id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The contract's personal columns, by name: kept in the interim tables (features derive
#: only the email's domain type and shape from them), masked in rejects, never features.
CONTRACT_PERSONAL = (
    "email", "first_name", "last_name", "name", "full_name", "phone", "phone_number",
    "mobile", "contact_name", "address", "street", "ip", "ip_address",
)
KINDS = ("email", "phone", "name")
#: How many present values of a column are looked at (spread evenly over the column).
SAMPLE = 2000

_EMAIL_IN = re.compile(r"[^@\s<>(),;:\"']+@[^@\s<>(),;:\"']+\.[A-Za-z]{2,}")
_EMAIL_FULL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\s*$")
_PHONE = re.compile(r"^(?:\+|00)?[\d\s().\-/]{6,24}$")
_PHONE_SEPARATED = re.compile(r"^(?:\+|00)|[\s().\-/]")
_NOT_PHONE = re.compile(
    r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"  # dates
    r"|^\d+[.,]\d+$"  # decimals
    r"|^\d{1,3}(?:,\d{3})+(?:\.\d+)?$"  # thousands
    r"|^\d+\s*-\s*\d+$"  # ranges such as 1001-5000
)
_UPPER = "A-ZÀ-ÖØ-ÞĀ-ſА-ЯЁ"
_LOWER = "a-zß-öø-ÿа-яё"
_NAME_VALUE = re.compile(
    rf"^[{_UPPER}][{_LOWER}'’\-]+\.?(?:\s+[{_UPPER}][{_LOWER}'’\-]*\.?){{1,2}}$"
)
_WORDS_VALUE = re.compile(rf"^[{_UPPER}{_LOWER}'’.\-]+(?:\s+[{_UPPER}{_LOWER}'’.\-]+){{0,3}}$")
# Words that make a value an ordinary category (title, industry, place, company), not a name.
_CATEGORY_WORDS = frozenset("""
manager director engineer officer head chief executive president analyst consultant specialist
assistant coordinator administrator representative associate intern developer designer architect
accountant advisor agent partner owner founder vice general senior junior lead principal staff
sales marketing services service software technology technologies tech solutions systems group
inc ltd llc gmbh ag sa plc co corp corporation company limited holdings industries consulting
labs lab partners enterprises studio studios works capital ventures networks logistics foods
motors bank insurance health healthcare care medical pharma financial finance education retail
manufacturing media energy government business development customer support operations product
project research science data digital global international university school college hospital
center centre institute agency new san los las santa saint st united states kingdom republic
city north south east west island islands real estate street road avenue park lake valley
hills beach port fort mount county province district region online direct email search social
organic paid referral partner web website page visit form call chat event webinar campaign
other unknown none yes no true false not applicable select
""".split())  # noqa: SIM905 - a word list reads better as text
_NAME_HEADERS = frozenset("""
name first_name firstname last_name lastname full_name fullname surname given_name family_name
middle_name maiden_name contact contact_name contact_person person fio vorname nachname prenom
nom nombre apellido apellidos nome cognome imya familiya otchestvo
""".split())  # noqa: SIM905
_NAME_HEADER_PARTS = ("фамилия", "имя", "отчество", "фио", "контакт")
_PERSON_WORDS = frozenset(("first", "last", "full", "given", "family", "middle", "maiden", "sur",
                           "contact", "person", "customer", "client", "lead", "owner", "user",
                           "display"))


@dataclass(frozen=True)
class PersonalColumn:
    """A column found to hold personal data: `kind` (email / phone / name), `share` of the
    looked-at values that matched, `by` ("content" or "header"), a masked `example`."""

    column: str
    kind: str
    share: float
    by: str
    example: str

    def describe(self) -> str:
        what = {"email": "email addresses", "phone": "phone numbers", "name": "person names"}
        how = f"{self.share:.0%} of the values looked at"
        if self.by == "header":
            how += ", and the column name says so"
        return f"'{self.column}' ({what[self.kind]}: {how}; e.g. {self.example})"


def detect_personal(
    frame: pd.DataFrame, skip: Collection[str] = (), sample: int = SAMPLE
) -> list[PersonalColumn]:
    """Every column of `frame` (except those in `skip`) that holds personal data, in column
    order. Text columns only: numeric, boolean and datetime columns are never flagged."""
    found = []
    for column in frame.columns:
        if column in skip:
            continue
        hit = personal_kind(frame[column], str(column), sample)
        if hit is not None:
            found.append(hit)
    return found


def personal_kind(values: pd.Series, column: str = "", sample: int = SAMPLE
                  ) -> PersonalColumn | None:
    """The `PersonalColumn` for one column, or None when it looks like ordinary data."""
    dtype = values.dtype
    if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            or pd.api.types.is_datetime64_any_dtype(dtype)):
        return None
    text = _sample(values, sample)
    if text.empty:
        return None
    n = len(text)
    has_email = text.str.contains(_EMAIL_IN)
    full_email = text.str.match(_EMAIL_FULL)
    # Emails are unambiguous: a few in a free-text column are enough.
    if full_email.mean() >= 0.5 or (has_email.sum() >= 1 and has_email.mean() >= 0.02):
        example = text[has_email].iloc[0]
        return PersonalColumn(column, "email", float(has_email.mean()), "content",
                              mask_text(example, "email"))
    phone = _phone_like(text)
    if phone.mean() >= 0.5:
        return PersonalColumn(column, "phone", float(phone.mean()), "content",
                              mask_text(text[phone].iloc[0], "phone"))
    distinct = text.nunique() / n
    header = _name_header(column)
    if header:
        words = text.str.match(_WORDS_VALUE) & ~_category_words(text)
        if words.mean() >= 0.5 and (distinct >= 0.3 or text.nunique() >= 20 or n < 20):
            return PersonalColumn(column, "name", float(words.mean()), "header",
                                  mask_text(text[words].iloc[0], "name"))
    if n >= 30 and distinct >= 0.5:
        names = text.str.match(_NAME_VALUE) & ~_category_words(text)
        if names.mean() >= 0.8:
            return PersonalColumn(column, "name", float(names.mean()), "content",
                                  mask_text(text[names].iloc[0], "name"))
    return None


def mask_text(value: str, kind: str) -> str:
    """One value masked: emails keep the first character and the domain
    (`a***@example.com`), phones the last two digits (`***67`), names the first letter
    (`J***`)."""
    text = str(value).strip()
    if kind == "email":
        match = _EMAIL_IN.search(text)
        if match:
            local, _, domain = match.group(0).partition("@")
            return f"{local[:1]}***@{domain}"
        return "***"
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return f"***{digits[-2:]}" if len(digits) >= 7 else "***"
    return f"{text[:1]}***" if text else "***"


def mask_frame(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """A copy with each column in `kinds` (column -> kind) masked cell by cell; missing
    cells stay missing."""
    out = frame.copy()
    for column, kind in kinds.items():
        if column not in out.columns:
            continue
        values = out[column]
        present = values.notna()
        masked = values.astype(object).where(~present, None)
        masked[present] = [mask_text(v, kind) for v in values[present]]
        out[column] = masked.astype("str") if pd.api.types.is_string_dtype(values) else masked
    return out


def hash_values(values: pd.Series, salt: str) -> pd.Series:
    """Salted SHA-256 of each stripped value (16 hex characters); missing stays missing."""
    if not salt:
        raise ValueError("hash_values needs a non-empty salt")
    present = values.notna()
    out = pd.Series(pd.NA, index=values.index, dtype="str")
    prefix = salt.encode("utf-8")
    out[present] = [
        hashlib.sha256(prefix + b"\x00" + str(v).strip().encode("utf-8")).hexdigest()[:16]
        for v in values[present]
    ]
    return out


def personal_levels(levels: Iterable[object]) -> str | None:
    """"email" or "phone" when a list of category levels (a model's vocabulary for one
    feature) holds such values, else None. Levels are lower-cased by the features, so person
    names are not looked for here (ingest finds them in the raw column)."""
    values = pd.Series([str(v) for v in levels if v is not None], dtype="str")
    values = values[~values.isin(["unknown", "other"])]
    hit = personal_kind(values, "", SAMPLE)
    return hit.kind if hit is not None and hit.kind != "name" else None


def _sample(values: pd.Series, size: int) -> pd.Series:
    """Up to `size` present, stripped, non-empty values spread evenly over the column."""
    present = values[values.notna()]
    if len(present) > size:
        present = present.iloc[np.linspace(0, len(present) - 1, size).astype(int)]
    text = present.astype("str").str.strip()
    return text[text != ""].reset_index(drop=True)


def _phone_like(text: pd.Series) -> pd.Series:
    shape = text.str.match(_PHONE) & ~text.str.match(_NOT_PHONE)
    digits = text.str.count(r"\d")
    separated = text.str.contains(_PHONE_SEPARATED)
    # Plain digit strings are phones only from 10 digits on (shorter ones are ids, counts).
    return shape & digits.between(7, 15) & (separated | (digits >= 10))


def _category_words(text: pd.Series) -> pd.Series:
    words = text.str.lower().str.findall(r"[^\W\d_]+")
    return words.map(lambda ws: any(w in _CATEGORY_WORDS for w in ws)).astype(bool)


def _name_header(column: str) -> bool:
    key = re.sub(r"[^\w]+", "_", column.strip().lower()).strip("_")
    if key in _NAME_HEADERS or any(part in key for part in _NAME_HEADER_PARTS):
        return True
    tokens = set(key.split("_"))
    return ("name" in tokens or "surname" in tokens) and bool(tokens & _PERSON_WORDS)
