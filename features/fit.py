"""Fit / firmographic features from lead attributes (one row per lead).

Personal columns (email, names, phone; and any other column whose content holds emails,
phones or person names, see `features.pii`) and free text (company) never come out: the email
only yields its domain type and the shape of its local part. Categorical outputs are pandas
`category` columns with "unknown" for missing values; fixed vocabularies (domain type,
seniority, function, size bucket, region) always carry every level, open ones (industry,
country, BANT answers, source, extra columns) carry the observed values. At scoring time a
value the model never saw is not an error here: `build.align_categories` maps it to "other".

Caveat: a CRM export holds attributes as they are *now*, not as they were at as_of. A field
sales fills in after qualifying a lead (BANT, title corrections) can leak the outcome; the
leakage audit is there to catch the loud cases.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.behaviour import sanitize
from features.pii import CONTRACT_PERSONAL, personal_kind
from features.settings import FeatureSettings

UNKNOWN = "unknown"
OTHER = "other"

KEY_COLUMNS = ("lead_id", "created_at")
OUTCOME_COLUMNS = ("converted", "converted_at", "lost_at")
PERSONAL_COLUMNS = CONTRACT_PERSONAL
FREE_TEXT_COLUMNS = ("company", "company_name", "notes", "note", "comments", "description")
CONTRACT_FIT_COLUMNS = (
    "source", "company_size", "industry", "country", "job_title", "budget", "need", "timeframe",
)
KNOWN_COLUMNS = frozenset(
    KEY_COLUMNS + OUTCOME_COLUMNS + PERSONAL_COLUMNS + FREE_TEXT_COLUMNS + CONTRACT_FIT_COLUMNS
)

DOMAIN_TYPES = ("corporate", "free_mail", "disposable", "invalid", UNKNOWN)
LOCAL_KINDS = ("name", "handle", "role", OTHER, UNKNOWN)
SENIORITIES = ("c_level", "vp", "director", "head", "manager", "senior", "individual",
               "intern", UNKNOWN)
FUNCTIONS = ("marketing", "sales", "it_engineering", "finance", "operations", "hr",
             "executive", OTHER, UNKNOWN)
SIZE_BUCKETS = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+", UNKNOWN)
REGIONS = ("north_america", "latin_america", "europe", "middle_east_africa", "asia_pacific",
           OTHER, UNKNOWN)
BANT_RANKS = {
    "budget": ("<10k", "10k-50k", "50k-250k", ">250k"),
    "need": ("exploring", "problem_identified", "urgent"),
    "timeframe": ("12m+", "6-12m", "3-6m", "0-3m"),  # rank grows with urgency
}

_EMAIL = r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}"
_ROLE = (r"(?:info|sales|contact|contacts|admin|office|hello|hi|support|marketing|team|mail|"
         r"billing|hr|jobs|careers|enquiries|inquiries|enquiry|service|services|webmaster|"
         r"noreply|no-reply|accounts|accounting|finance|help|press|media|legal|privacy|"
         r"postmaster|orders|booking|reception|general|management|it)")
_NAME = r"[a-z]+(?:[._-][a-z]+){1,2}"
_HANDLE = r".*[0-9].*"

# (label, pattern) - first match wins; patterns run on lower-cased titles.
SENIORITY_RULES: tuple[tuple[str, str], ...] = (
    ("intern", r"\b(?:intern|internship|student|trainee|apprentice|werkstudent|praktikant\w*)\b"),
    ("vp", r"\b(?:vp|svp|evp|avp|vice[ -]?president)\b"),
    ("c_level", r"\b(?:ceo|cfo|cto|coo|cmo|cio|ciso|cro|cpo|cdo|chro|chief|founder|co-?founder|"
                r"owner|president|managing director|managing partner|general manager|"
                r"gesch[aä]ftsf[uü]hrer\w*)\b"),
    ("director", r"\b(?:director|directeur|direktor|directora)\b"),
    ("head", r"\bhead\b"),
    ("manager", r"\b(?:manager|mgr|supervisor|team ?lead|teamleader|leiter\w*)\b"),
    ("senior", r"\b(?:senior|sr|principal|staff|lead|expert)\b"),
)
FUNCTION_RULES: tuple[tuple[str, str], ...] = (
    ("marketing", r"\b(?:marketing|cmo|brand|growth|seo|sem|content|communications?|"
                  r"demand gen\w*|social media|campaigns?)\b"),
    ("sales", r"\b(?:sales|cro|account executive|account manager|key account|business "
              r"development|bdr|sdr|revenue|commercial|partnerships?|vertrieb)\b"),
    ("finance", r"\b(?:cfo|finance|financial|accounting|accountant|controller|controlling|"
                r"treasur\w*|audit\w*|tax|bookkeep\w*)\b"),
    ("hr", r"\b(?:hr|chro|human resources|people|talent|recruit\w*|personnel)\b"),
    ("it_engineering", r"\b(?:cto|cio|ciso|it|ict|engineer\w*|developer|software|devops|data|"
                       r"architect|technical|technology|security|sysadmin|system "
                       r"administrator|programmer|infrastructure|network|cloud)\b"),
    ("operations", r"\b(?:coo|operations?|operating|ops|supply chain|logistics|procurement|"
                   r"purchasing|facilit\w*|project manager|program manager|"
                   r"office manager)\b"),
    ("executive", r"\b(?:ceo|founder|co-?founder|owner|president|managing director|managing "
                  r"partner|general manager|chief executive|gesch[aä]ftsf[uü]hrer\w*|"
                  r"entrepreneur)\b"),
)

_REGION_OF = {
    **dict.fromkeys(["US", "CA", "PR", "BM"], "north_america"),
    **dict.fromkeys(["MX", "BR", "AR", "CL", "CO", "PE", "VE", "EC", "UY", "PY", "BO", "CR",
                     "PA", "GT", "HN", "SV", "NI", "DO", "CU", "JM", "TT"], "latin_america"),
    **dict.fromkeys(["GB", "IE", "DE", "FR", "NL", "BE", "LU", "AT", "CH", "IT", "ES", "PT",
                     "DK", "SE", "NO", "FI", "IS", "PL", "CZ", "SK", "HU", "RO", "BG", "GR",
                     "HR", "SI", "RS", "BA", "ME", "MK", "AL", "EE", "LV", "LT", "UA", "BY",
                     "MD", "RU", "MT", "CY", "LI", "MC"], "europe"),
    **dict.fromkeys(["AE", "SA", "QA", "KW", "BH", "OM", "IL", "TR", "EG", "JO", "LB", "IR",
                     "IQ", "MA", "DZ", "TN", "ZA", "NG", "KE", "GH", "ET", "TZ", "UG", "SN",
                     "CI", "CM", "RW", "MU"], "middle_east_africa"),
    **dict.fromkeys(["CN", "JP", "KR", "TW", "HK", "SG", "MY", "TH", "VN", "PH", "ID", "IN",
                     "PK", "BD", "LK", "NP", "AU", "NZ", "MO", "KH", "MM"], "asia_pacific"),
}
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}


@cache
def domain_list(name: str) -> frozenset[str]:
    """A shipped domain list (`free_mail` or `disposable`) as a set of lower-case domains."""
    text = resources.files("features").joinpath(f"resources/{name}_domains.txt").read_text(
        encoding="utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line)


def _clean(values: pd.Series, upper: bool = False) -> pd.Series:
    """Stripped, lower- (or upper-) cased strings; NA for missing or empty."""
    s = values.astype("str") if values.dtype != "str" else values
    s = s.str.strip()
    s = s.str.upper() if upper else s.str.lower()
    return s.where(values.notna() & (s != ""))


def _categorical(values: pd.Series, levels: tuple[str, ...] | None = None) -> pd.Categorical:
    """Category column: missing -> "unknown"; levels fixed (anything else -> "unknown"), or
    the sorted observed values + "unknown"."""
    codes, uniques = pd.factorize(values)
    seen = [str(u) for u in uniques]
    if levels is None:
        levels = tuple(sorted(set(seen) - {UNKNOWN})) + (UNKNOWN,)
    where = {v: i for i, v in enumerate(levels)}
    unknown = where[UNKNOWN]
    lut = np.array([where.get(v, unknown) for v in seen] + [unknown], dtype=np.int32)
    return pd.Categorical.from_codes(lut[codes], categories=list(levels))


def _by_unique(values: pd.Series, fn) -> pd.Series:
    """Apply a vectorised classifier (Arrow string array -> numpy labels) to the distinct
    non-missing values only, then map back; missing stays missing."""
    codes, uniques = pd.factorize(values)
    if len(uniques) == 0:
        return pd.Series(np.full(len(values), None, dtype=object), index=values.index)
    labels = np.asarray(fn(pa.array(pd.array(uniques, dtype="str"))), dtype=object)
    out = np.append(labels, None)[codes]
    return pd.Series(out, index=values.index, dtype=object)


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    """Boolean numpy array: does the (RE2) pattern match somewhere in each string."""
    return pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False).astype(bool)


def _first_match(arr: pa.Array, rules: tuple[tuple[str, str], ...], default: str) -> np.ndarray:
    conds = [_matches(arr, pat) for _, pat in rules]
    return np.select(conds, [label for label, _ in rules], default=default).astype(object)


def _split_email(arr: pa.Array) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(valid flags, local part without +tag, domain) of lower-cased emails."""
    valid = _matches(arr, f"^{_EMAIL}$")
    domain = pc.replace_substring_regex(arr, r"^.*@", "")
    local = pc.replace_substring_regex(pc.replace_substring_regex(arr, r"@[^@]*$", ""),
                                       r"\+.*$", "")
    return valid, local, domain


def email_domain_type(email: pd.Series) -> pd.Series:
    """corporate / free_mail / disposable / invalid, or unknown when missing. A subdomain of a
    disposable service (x.mailinator.com) counts as disposable."""

    def classify(arr: pa.Array) -> np.ndarray:
        valid, _, domain = _split_email(arr)
        parent = pc.replace_substring_regex(domain, r"^[^.]+\.", "")
        has_parent = _matches(domain, r"\..*\.")
        free = pa.array(sorted(domain_list("free_mail")), pa.large_string())
        disposable = pa.array(sorted(domain_list("disposable")), pa.large_string())

        def member(values: pa.Array, known: pa.Array) -> np.ndarray:
            return pc.is_in(values, value_set=known).to_numpy(zero_copy_only=False).astype(bool)

        is_disposable = member(domain, disposable) | (has_parent & member(parent, disposable))
        is_free = member(domain, free)
        return np.select([~valid, is_disposable, is_free], ["invalid", "disposable", "free_mail"],
                         default="corporate").astype(object)

    return _by_unique(_clean(email), classify).fillna(UNKNOWN)


def email_local_kind(email: pd.Series) -> pd.Series:
    """Shape of the local part: name (first.last, f.last, first_last), handle (has digits,
    like superdrakon12345), role (info@, sales@...), other; unknown when missing/invalid."""

    def classify(arr: pa.Array) -> np.ndarray:
        valid, local, _ = _split_email(arr)
        rules = (("role", _ROLE), ("name", _NAME), ("handle", _HANDLE))
        conds = [_matches(local, f"^(?:{p})$") for _, p in rules]
        kind = np.select(conds, [r for r, _ in rules], default=OTHER).astype(object)
        return np.where(valid, kind, UNKNOWN)

    return _by_unique(_clean(email), classify).fillna(UNKNOWN)


def title_seniority(title: pd.Series) -> pd.Series:
    """Seniority from a free-text job title by keyword rules (first match wins)."""
    return _by_unique(_clean(title), lambda a: _first_match(a, SENIORITY_RULES, "individual")
                      ).fillna(UNKNOWN)


def title_function(title: pd.Series) -> pd.Series:
    """Business function from a free-text job title by keyword rules (first match wins)."""
    return _by_unique(_clean(title), lambda a: _first_match(a, FUNCTION_RULES, OTHER)
                      ).fillna(UNKNOWN)


def size_bucket(size: pd.Series) -> pd.Series:
    """Employee count -> 1-10, 11-50, 51-200, 201-1000, 1001-5000, 5000+ (0 counts as 1-10;
    missing or negative -> unknown)."""
    x = pd.to_numeric(size, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    conds = [x <= 10, x <= 50, x <= 200, x <= 1000, x <= 5000, x > 5000]
    out = np.select(conds, list(SIZE_BUCKETS[:6]), default=UNKNOWN).astype(object)
    out[~(x >= 0)] = UNKNOWN
    return pd.Series(out, index=size.index)


def region_of(country: pd.Series) -> pd.Series:
    """ISO alpha-2 country -> region (north_america, latin_america, europe,
    middle_east_africa, asia_pacific, other; unknown when missing)."""
    clean = _clean(country, upper=True).replace(_COUNTRY_ALIASES)
    out = clean.map(_REGION_OF).astype(object)
    out = out.where(out.notna(), np.where(clean.notna(), OTHER, UNKNOWN))
    return out


def is_numeric_like(values: pd.Series) -> bool:
    """True when every present value reads as a number (numeric and bool dtypes included)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return True
    present = values.dropna()
    if present.empty or pd.api.types.is_datetime64_any_dtype(values):
        return False
    for part in (present.iloc[:1000], present):  # a cheap look first, then all of it
        parsed = pd.to_numeric(part.astype("str").str.strip(), errors="coerce")
        if not parsed.notna().all():
            return False
    return True



def extra_columns(leads: pd.DataFrame, settings: FeatureSettings) -> list[str]:
    """Lead columns outside the contract that pass through as `extra_<col>` features: not
    excluded, not starting with `_` (hashed ids), and not holding personal data by content
    (emails, phones, person names; ingest refuses those, this is the second line)."""
    return [c for c in leads.columns if c not in KNOWN_COLUMNS and c not in settings.exclude
            and not str(c).startswith("_") and personal_kind(leads[c], str(c)) is None]


def fit_features(leads: pd.DataFrame, settings: FeatureSettings) -> pd.DataFrame:
    """Fit features per lead: `lead_id` plus

    `fit_email_domain_type`, `fit_email_local_kind`, `fit_seniority`, `fit_function`,
    `fit_company_size_bucket`, `fit_log_company_size` (log1p employees), `fit_industry`,
    `fit_country`, `fit_region`, `fit_budget`, `fit_need`, `fit_timeframe`,
    `fit_budget_rank` / `fit_need_rank` / `fit_timeframe_rank` (0-based rank of a contract
    answer, NaN otherwise), `fit_bant_answered` (0-3), `fit_source`, and `extra_<col>` for
    every non-contract column (float when numeric-looking, else category; datetime extras are
    left to `build_features`, which turns them into days before as_of).
    A source column listed in settings.exclude yields no feature; a missing one yields
    all-"unknown" / NaN features.
    """
    if "lead_id" not in leads.columns:
        raise ValueError("leads: missing column 'lead_id'")
    idx = leads.index
    n = len(leads)
    ex = set(settings.exclude)

    absent = pd.Series(np.full(n, np.nan), index=idx).astype("str")

    def col(name: str) -> pd.Series:
        return leads[name] if name in leads.columns and name not in ex else absent

    out: dict[str, object] = {"lead_id": leads["lead_id"].to_numpy()}
    if "email" not in ex:
        out["fit_email_domain_type"] = _categorical(email_domain_type(col("email")), DOMAIN_TYPES)
        out["fit_email_local_kind"] = _categorical(email_local_kind(col("email")), LOCAL_KINDS)
    if "job_title" not in ex:
        out["fit_seniority"] = _categorical(title_seniority(col("job_title")), SENIORITIES)
        out["fit_function"] = _categorical(title_function(col("job_title")), FUNCTIONS)
    if "company_size" not in ex:
        size = pd.to_numeric(col("company_size"), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan)
        out["fit_company_size_bucket"] = _categorical(size_bucket(col("company_size")),
                                                      SIZE_BUCKETS)
        with np.errstate(invalid="ignore"):
            out["fit_log_company_size"] = np.where(size >= 0, np.log1p(np.maximum(size, 0)),
                                                   np.nan)
    if "industry" not in ex:
        out["fit_industry"] = _categorical(_clean(col("industry")))
    if "country" not in ex:
        country = _clean(col("country"), upper=True).replace(_COUNTRY_ALIASES)
        out["fit_country"] = _categorical(country)
        out["fit_region"] = _categorical(region_of(col("country")), REGIONS)
    answered = np.zeros(n, np.int8)
    for name, ranks in BANT_RANKS.items():
        if name in ex:
            continue
        clean = _clean(col(name))
        out[f"fit_{name}"] = _categorical(clean)
        out[f"fit_{name}_rank"] = clean.map({v: float(i) for i, v in enumerate(ranks)}).to_numpy(
            dtype=float, na_value=np.nan)
        answered += clean.notna().to_numpy().astype(np.int8)
    out["fit_bant_answered"] = answered
    if "source" not in ex:
        out["fit_source"] = _categorical(_clean(col("source")))
    for name in extra_columns(leads, settings):
        values = leads[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            continue
        key = f"extra_{sanitize(name)}"
        if is_numeric_like(values):
            num = values.astype("float64") if pd.api.types.is_bool_dtype(values) else values
            if not pd.api.types.is_numeric_dtype(num):
                num = num.astype("str").str.strip()
            out[key] = pd.to_numeric(num, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            out[key] = _categorical(_clean(values))
    return pd.DataFrame(out, index=idx)

