"""Leakage audit: which columns look like they know the outcome?

Method, per column (every feature and every raw lead attribute in the frame passed in):

1. Univariate ROC AUC against the label, on the rows where the column is present.
   Numeric (and boolean, datetime) columns: the AUC of the raw value, folded to >= 0.5 so
   direction does not matter. Categorical columns: the AUC of an out-of-fold category
   target rate (K folds; each row gets its category's conversion rate computed on the
   other folds, smoothed toward the base rate; unseen categories get the base rate). The
   out-of-fold step keeps high-cardinality ids from scoring by memorising single rows.
2. Missingness vs outcome: share missing, conversion rate when missing vs present, and the
   AUC of the is-missing indicator. For categoricals, "unknown" and "" count as missing
   (that is how the feature builder writes a missing value).
3. Outcome words: category values (and the column name) matched case-insensitively against
   words that name an outcome (won, lost, closed, converted, customer, paid, contract,
   signed, churn, junk, "not interested", "will revert", ...; the name against status,
   stage, outcome, result, tag, quality, ...).

Flags: AUC >= `settings.audit_auc_threshold` -> "separates the outcome almost alone";
outcome-naming values on >= 1% of rows whose conversion rate differs from the other rows'
(by at least max(0.05, half the smaller of base rate and 1 - base rate)); is-missing
AUC >= the threshold -> "missingness alone separates the outcome". A flagged column is a
suspect unless it is in settings.safe (reported with `safe: true`) or settings.exclude
(reported with `excluded: true`).
The score is max(2*(AUC-0.5), 2*(missing AUC-0.5)) + 0.5 for outcome values + 0.2 for an
outcome-sounding name; suspects are ranked by it.

Limits, stated plainly: a strong genuine predictor also scores high (a demo request may
really separate converters), so a flag is a question, not a verdict. Leakage through a
combination of columns, or through the *timing* of an otherwise innocent column (a field
filled in after the outcome), cannot be seen one column at a time - only the point-in-time
construction of the features and the leakage tests guard against that. Values are
matched by words, so a status coded as 1/2/3 shows only through its AUC. Large frames are
audited on a random sample of `max_rows` rows. The audit informs; the user decides,
through `features.exclude` and `features.safe`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.fit import PERSONAL_COLUMNS
from features.settings import FeatureSettings

OUTCOME_VALUE_PATTERN = re.compile(
    r"\b(?:closed|lost|won|converted|conversion|customer|already|paid(?!\s*(?:search|social|"
    r"media|ads?|campaign))|contract|signed|churn\w*|junk|will\s+revert|not\s+interested|"
    r"disqualified|unqualified|do\s+not\s+(?:call|contact)|purchased|bought|invoiced?|"
    r"onboard\w*|renewal|cancell?ed|rejected|dead)\b",
    re.IGNORECASE,
)
OUTCOME_NAME_PATTERN = re.compile(
    r"(?:status|stage|outcome|result|tag|quality|disposition|reason|won|lost|closed|"
    r"converted|conversion|churn|deal|opportunit|customer|paid|invoice|contract|signed)",
    re.IGNORECASE,
)
_MISSING_WORDS = {"unknown", ""}
_VALUE_SHARE = 0.01
_SMOOTHING = 1.0


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Folded ROC AUC (>= 0.5); 0.5 for a constant score; None without both classes."""
    if len(y) == 0 or y.min() == y.max():
        return None
    if np.all(score == score[0]):
        return 0.5
    a = float(roc_auc_score(y, score))
    return max(a, 1.0 - a)


def _oof_rate(codes: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Out-of-fold smoothed category conversion rate per row (codes >= 0)."""
    n_codes = int(codes.max()) + 1 if len(codes) else 0
    prior = float(y.mean()) if len(y) else 0.0
    fold = np.random.default_rng(seed).integers(0, n_folds, len(codes))
    count_all = np.bincount(codes, minlength=n_codes)
    pos_all = np.bincount(codes, weights=y, minlength=n_codes)
    key = fold * n_codes + codes
    count_f = np.bincount(key, minlength=n_folds * n_codes)
    pos_f = np.bincount(key, weights=y, minlength=n_folds * n_codes)
    count = count_all[codes] - count_f[key]
    pos = pos_all[codes] - pos_f[key]
    return (pos + _SMOOTHING * prior) / (count + _SMOOTHING)


def _kind(values: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        return "numeric"
    return "categorical"


def _numeric(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        arr = values.to_numpy()
        out = arr.view(np.int64).astype(np.float64)
        out[pd.isna(arr)] = np.nan
        return out
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _rate(y: np.ndarray) -> float | None:
    return float(y.mean()) if len(y) else None


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, digits)


def _column_report(
    name: str, values: pd.Series, y: np.ndarray, n_folds: int, seed: int, threshold: float
) -> dict[str, Any]:
    kind = _kind(values)
    n = len(values)
    if kind == "numeric":
        x = _numeric(values)
        missing = np.isnan(x)
    else:
        text = values.astype("object").where(values.notna(), None)
        as_str = text.map(lambda v: None if v is None else str(v).strip())
        missing = as_str.isna().to_numpy() | as_str.str.lower().isin(_MISSING_WORDS).to_numpy()
    present = ~missing
    n_missing = int(missing.sum())
    rep: dict[str, Any] = {"column": name, "kind": kind, "missing_share": _round(n_missing / n)
                           if n else None}
    # univariate AUC on present rows
    if present.sum() == 0:
        auc, distinct = None, 0
    elif kind == "numeric":
        xp = x[present]
        distinct = int(len(np.unique(xp)))
        auc = _auc(y[present], xp)
    else:
        codes, uniques = pd.factorize(as_str[present])
        distinct = int(len(uniques))
        auc = _auc(y[present], _oof_rate(codes, y[present], n_folds, seed)) \
            if distinct > 1 else _auc(y[present], np.zeros(int(present.sum())))
    rep["distinct_values"] = distinct
    rep["auc"] = _round(auc)
    # missingness
    rep["conversion_when_missing"] = _round(_rate(y[missing]))
    rep["conversion_when_present"] = _round(_rate(y[present]))
    miss_auc = _auc(y, missing.astype(np.float64))
    rep["missing_auc"] = _round(miss_auc)
    # outcome-naming values
    matched: list[str] = []
    matched_share, gap = 0.0, 0.0
    if kind == "categorical" and present.any():
        counts = as_str[present].value_counts()
        hits = [v for v in counts.index if OUTCOME_VALUE_PATTERN.search(str(v))]
        if hits:
            is_hit = as_str.isin(hits).to_numpy()
            matched_share = float(is_hit.mean())
            gap = abs(y[is_hit].mean() - y[~is_hit].mean()) if (~is_hit).any() else 1.0
        if name in PERSONAL_COLUMNS:
            matched = [f"<{len(hits)} personal value(s) not shown>"] if hits else []
        else:
            matched = [str(v)[:60] for v in hits[:10]]
    rep["outcome_values"] = matched
    rep["outcome_values_share"] = _round(matched_share)
    # Outcome words only count when those rows convert differently from the rest
    # ("Customer Success Manager" is a title, not an outcome).
    base = float(y.mean()) if len(y) else 0.0
    values_flag = bool(matched) and matched_share >= _VALUE_SHARE and gap >= max(
        0.05, 0.5 * min(base, 1 - base))
    name_hint = bool(OUTCOME_NAME_PATTERN.search(name))
    rep["name_suggests_outcome"] = name_hint
    # flags and score
    reasons = []
    if auc is not None and auc >= threshold:
        reasons.append(f"separates the outcome almost alone (AUC {auc:.3f} >= {threshold:.2f})")
    if values_flag:
        shown = ", ".join(repr(v) for v in matched[:5])
        reasons.append(f"values name an outcome: {shown} ({matched_share:.0%} of rows, "
                       f"conversion differs by {gap:.2f} from the other rows)")
    if miss_auc is not None and miss_auc >= threshold:
        reasons.append(
            f"missingness alone separates the outcome (is-missing AUC {miss_auc:.3f}; "
            f"conversion {rep['conversion_when_missing']} when missing vs "
            f"{rep['conversion_when_present']} when present)"
        )
    flagged = bool(reasons)
    if name_hint:
        reasons.append("the column name sounds like an outcome or status field")
    score = max(2 * ((auc or 0.5) - 0.5), 2 * ((miss_auc or 0.5) - 0.5))
    score += 0.5 if values_flag else 0.0
    score += 0.2 if name_hint else 0.0
    rep["score"] = round(score, 4)
    rep["reasons"] = reasons
    rep["flagged"] = flagged
    return rep


def leakage_audit(
    frame: pd.DataFrame,
    label: str = "label",
    columns: list[str] | None = None,
    settings: FeatureSettings | None = None,
    *,
    max_rows: int = 200_000,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit every column (default: all but `label`) for signs of outcome leakage.

    Returns a JSON-able dict: `label`, `rows` (audited), `rows_total`, `positives`,
    `base_rate`, `auc_threshold`, `columns` (one report per column, highest score first:
    column, kind, auc, distinct_values, missing_share, conversion_when_missing/present,
    missing_auc, outcome_values, outcome_values_share, name_suggests_outcome, score,
    reasons, flagged, suspect, safe, excluded), `suspects` (column, score, reasons; ranked)
    and `method` / `limits` (see the module docstring).
    """
    settings = settings or FeatureSettings()
    if label not in frame.columns:
        raise ValueError(f"leakage_audit: label column {label!r} not in the frame")
    y_all = pd.to_numeric(frame[label], errors="coerce")
    keep = y_all.notna().to_numpy()
    bad = set(np.unique(y_all[keep])) - {0, 1}
    if bad:
        raise ValueError(f"leakage_audit: label must be 0/1; got values {sorted(bad)[:5]}")
    rows = np.flatnonzero(keep)
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    y = y_all.to_numpy()[rows].astype(np.float64)
    cols = [c for c in (columns if columns is not None else frame.columns) if c != label]
    threshold = float(settings.audit_auc_threshold)
    reports = []
    for col in cols:
        values = frame[col].iloc[rows].reset_index(drop=True)
        rep = _column_report(str(col), values, y, n_folds, seed, threshold)
        rep["safe"] = col in settings.safe
        rep["excluded"] = col in settings.exclude
        rep["suspect"] = rep["flagged"] and not rep["safe"] and not rep["excluded"]
        reports.append(rep)
    reports.sort(key=lambda r: (-r["score"], r["column"]))
    suspects = [{"column": r["column"], "score": r["score"], "reasons": r["reasons"]}
                for r in reports if r["suspect"]]
    positives = int(y.sum())
    return {
        "label": label,
        "rows": int(len(rows)),
        "rows_total": int(len(frame)),
        "positives": positives,
        "base_rate": _round(positives / len(rows)) if len(rows) else None,
        "auc_threshold": threshold,
        "suspects": suspects,
        "columns": reports,
        "method": (
            "univariate ROC AUC per column (numeric: raw value, folded to >= 0.5; "
            f"categorical: {n_folds}-fold out-of-fold category conversion rate), "
            "is-missing AUC and conversion when missing vs present, and outcome words in "
            "category values and column names"
        ),
        "limits": (
            "a strong genuine predictor also scores high; leakage through combinations of "
            "columns or through the timing of an innocent-looking column is invisible one "
            "column at a time; the audit informs, the user decides (features.exclude / "
            "features.safe)"
        ),
    }
