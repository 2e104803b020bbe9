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
3. Outcome words: category values and the column name, lower-cased and split into words
   on anything that is not a letter (and at camelCase), matched as whole words against the
   vocabulary in `features/resources/outcome_words.txt` (English and Russian: won, lost,
   closed, paid, signed, churn*, refund*, invoice*, deal, "not interested", оплачено,
   оплат-, договор, подписан, отказ, сделк-, выигран, проигран, закрыт, ...; Cyrillic
   entries are stems) plus the user's `features.audit_outcome_words`. Names also match
   status words (status, stage, result, tag, quality, статус, этап, ...). So
   "filter_results" and "wonderful" are not hits; "Closed Won" and "Оплачено" are.

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.behaviour import as_epoch_us
from features.fit import PERSONAL_COLUMNS
from features.settings import FeatureSettings

VOCABULARY_FILE = Path(__file__).parent / "resources" / "outcome_words.txt"
_WORD = re.compile(r"[^\W\d_]+")
_CAMEL = re.compile(r"(?<=[a-zа-яё])(?=[A-ZА-ЯЁ])")
_CYRILLIC = re.compile(r"[а-яё]")


def words(text: str) -> list[str]:
    """Lower-case words of `text`: split on anything that is not a letter and at camelCase
    boundaries ("filter_results" -> filter, results; "LeadStatus" -> lead, status)."""
    return _WORD.findall(_CAMEL.sub(" ", str(text)).lower())


@dataclass(frozen=True)
class OutcomeVocabulary:
    """Outcome words and phrases, matched on whole words (see resources/outcome_words.txt).

    `values`: phrases (tuples of (word, is_prefix)) that name an outcome in a category value
    or a column name; `names`: phrases that only count in column names; `ignore`: phrases
    whose words are dropped before matching ("paid search" is a channel, not a payment).
    """

    values: tuple[tuple[tuple[str, bool], ...], ...]
    names: tuple[tuple[tuple[str, bool], ...], ...]
    ignore: tuple[tuple[tuple[str, bool], ...], ...]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> OutcomeVocabulary:
        """Entries: `word`, `word*` (prefix), `two words` (phrase), Cyrillic = stem (prefix),
        `!phrase` (not an outcome), `name: word` (column names only); `#` comments."""
        values, names, ignore = [], [], []
        for raw in lines:
            line = str(raw).split("#", 1)[0].strip()
            if not line:
                continue
            target = values
            if line.startswith("!"):
                target, line = ignore, line[1:]
            elif line.lower().startswith("name:"):
                target, line = names, line[5:]
            phrase = []
            for token in line.lower().split():
                prefix = token.endswith("*") or bool(_CYRILLIC.search(token))
                phrase.extend((w, prefix) for w in words(token.rstrip("*")))
            if phrase:
                target.append(tuple(phrase))
        return cls(tuple(dict.fromkeys(values)), tuple(dict.fromkeys(names)),
                   tuple(dict.fromkeys(ignore)))

    @classmethod
    def load(cls, extra: Iterable[str] = ()) -> OutcomeVocabulary:
        """The shipped vocabulary plus the user's entries (`features.audit_outcome_words`)."""
        base = VOCABULARY_FILE.read_text(encoding="utf-8").splitlines()
        return cls.parse([*base, *extra])

    @staticmethod
    def _find(tokens: list[str], phrases: Iterable[tuple[tuple[str, bool], ...]]
              ) -> list[tuple[int, int, str]]:
        hits = []
        for phrase in phrases:
            n = len(phrase)
            for i in range(len(tokens) - n + 1):
                if all(tokens[i + k].startswith(w) if pre else tokens[i + k] == w
                       for k, (w, pre) in enumerate(phrase)):
                    hits.append((i, i + n, " ".join(tokens[i:i + n])))
        return hits

    def _match(self, text: str, phrases: Iterable[tuple[tuple[str, bool], ...]]) -> list[str]:
        tokens = words(text)
        ignored = {k for i, j, _ in self._find(tokens, self.ignore) for k in range(i, j)}
        return list(dict.fromkeys(
            w for i, j, w in sorted(self._find(tokens, phrases))
            if not ignored.intersection(range(i, j))
        ))

    def value_words(self, text: str) -> list[str]:
        """The outcome words found in a category value ([] when none)."""
        return self._match(text, self.values)

    def name_words(self, text: str) -> list[str]:
        """The outcome or status words found in a column name ([] when none)."""
        return self._match(text, (*self.values, *self.names))


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
    name: str, values: pd.Series, y: np.ndarray, n_folds: int, seed: int, threshold: float,
    vocab: OutcomeVocabulary,
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
        found = {v: vocab.value_words(str(v)) for v in counts.index}
        hits = [v for v in counts.index if found[v]]
        rep["outcome_words"] = sorted({w for v in hits for w in found[v]})[:10]
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
    name_words = vocab.name_words(name)
    name_hint = bool(name_words)
    rep.setdefault("outcome_words", [])
    rep["name_words"] = name_words
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
        reasons.append("the column name sounds like an outcome or status field ("
                       + ", ".join(repr(w) for w in name_words) + ")")
    score = max(2 * ((auc or 0.5) - 0.5), 2 * ((miss_auc or 0.5) - 0.5))
    score += 0.5 if values_flag else 0.0
    score += 0.2 if name_hint else 0.0
    rep["score"] = round(score, 4)
    rep["reasons"] = reasons
    rep["flagged"] = flagged
    return rep


def _status(rep: dict[str, Any]) -> tuple[str, str]:
    """(status, why) of one column report: excluded, safe, suspect or ok."""
    evidence = "; ".join(rep["reasons"])
    if rep["excluded"]:
        return "excluded", "listed in features.exclude: never a feature" + (
            f" (evidence: {evidence})" if rep["flagged"] else "")
    if rep["safe"]:
        return "safe", "listed in features.safe: reviewed and kept" + (
            f" (evidence: {evidence})" if rep["flagged"] else "")
    if rep["suspect"]:
        return "suspect", evidence
    return "ok", "no flag"


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
    reasons, outcome_words, name_words, flagged, suspect, safe, excluded, status
    ("excluded", "safe", "suspect" or "ok") and status_reason), `suspects` (column, score,
    reasons; ranked), `reviewed` (the excluded and safe columns with status, reason, score
    and reasons) and `method` / `limits` (see the module docstring).
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
    vocab = OutcomeVocabulary.load(settings.audit_outcome_words)
    reports = []
    for col in cols:
        values = frame[col].iloc[rows].reset_index(drop=True)
        rep = _column_report(str(col), values, y, n_folds, seed, threshold, vocab)
        rep["safe"] = col in settings.safe
        rep["excluded"] = col in settings.exclude
        rep["suspect"] = rep["flagged"] and not rep["safe"] and not rep["excluded"]
        rep["status"], rep["status_reason"] = _status(rep)
        reports.append(rep)
    reports.sort(key=lambda r: (-r["score"], r["column"]))
    suspects = [{"column": r["column"], "score": r["score"], "reasons": r["reasons"]}
                for r in reports if r["suspect"]]
    reviewed = [{"column": r["column"], "status": r["status"], "reason": r["status_reason"],
                 "score": r["score"], "reasons": r["reasons"]}
                for r in reports if r["excluded"] or r["safe"]]
    positives = int(y.sum())
    return {
        "label": label,
        "rows": int(len(rows)),
        "rows_total": int(len(frame)),
        "positives": positives,
        "base_rate": _round(positives / len(rows)) if len(rows) else None,
        "auc_threshold": threshold,
        "suspects": suspects,
        "reviewed": reviewed,
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


def activity_after_outcome(leads: pd.DataFrame, events: pd.DataFrame | None) -> dict[str, Any]:
    """For leads with a known outcome date, the share of their events at or after it.

    The outcome date is `converted_at` for converted leads (converted == 1, or no
    `converted` column) and `lost_at` for the others; the earlier of the two when both are
    set. No training snapshot sees these events (each snapshot looks only before its
    as_of, and a lead's snapshots stop at its outcome), but a high share says the CRM keeps
    logging after the outcome (invoices, onboarding, a lost-reason call), so any column
    summarised over the whole log, or filled in later, would know the outcome.

    Returns `leads_with_outcome_date`, `leads_with_events` (of those), `events` (theirs),
    `events_at_or_after`, `share` (None without events), `leads_with_activity_after`, and
    `by_outcome` (the same for converted and lost leads).
    """
    empty = {"leads_with_outcome_date": 0, "leads_with_events": 0, "events": 0,
             "events_at_or_after": 0, "share": None, "leads_with_activity_after": 0}
    nat = np.iinfo(np.int64).min
    n = len(leads)
    conv = as_epoch_us(leads["converted_at"]) if "converted_at" in leads else np.full(n, nat)
    if "converted" in leads:
        is_conv = pd.to_numeric(leads["converted"], errors="coerce").fillna(0).to_numpy() == 1
        conv = np.where(is_conv, conv, nat)
    lost = as_epoch_us(leads["lost_at"]) if "lost_at" in leads else np.full(n, nat)
    big = np.iinfo(np.int64).max
    when = np.minimum(np.where(conv == nat, big, conv), np.where(lost == nat, big, lost))
    kind = np.where(when == big, "", np.where(when == conv, "converted", "lost"))
    known = when != big
    out: dict[str, Any] = {**empty, "leads_with_outcome_date": int(known.sum()),
                           "by_outcome": {k: {**empty, "leads_with_outcome_date":
                                              int((kind == k).sum())}
                                          for k in ("converted", "lost")}}
    if events is None or events.empty or not known.any() or not {"lead_id", "timestamp"} <= set(
            events.columns):
        return out
    ids = pd.Index(leads["lead_id"].astype(str)[known].to_numpy())
    pos = ids.get_indexer(events["lead_id"].astype(str).to_numpy())
    ts = as_epoch_us(events["timestamp"])
    ok = (pos >= 0) & (ts != nat)
    pos, ts = pos[ok], ts[ok]
    lead_when, lead_kind = when[known][pos], kind[known][pos]
    after = ts >= lead_when

    def block(mask: np.ndarray) -> dict[str, Any]:
        n_events, n_after = int(mask.sum()), int((after & mask).sum())
        return {
            "leads_with_events": int(len(np.unique(pos[mask]))),
            "events": n_events,
            "events_at_or_after": n_after,
            "share": _round(n_after / n_events) if n_events else None,
            "leads_with_activity_after": int(len(np.unique(pos[after & mask]))),
        }

    out.update(block(np.ones(len(pos), dtype=bool)))
    for k in ("converted", "lost"):
        out["by_outcome"][k].update(block(lead_kind == k))
    return out
