"""Population stability index (PSI): how far a scoring batch has moved from the training data.

The training stage stores a *reference* with the model (`drift_reference`): for the
calibrated propensity and for the model's top features, the bins and the share of training
rows in each. A scoring batch counts its rows into the same bins (`bin_counts`, chunk by
chunk if needed: counts add up) and compares (`psi`).

Bins:

- numeric: right-closed intervals between `edges` (training deciles, ties merged):
  (-inf, e1], (e1, e2], ..., (ek, +inf), plus a last bin for missing values. The number of
  shares is `len(edges) + 2`.
- categorical: one bin per stored level (the most frequent training levels), plus a last
  bin for every other value (unseen, rare or missing). The number of shares is
  `len(levels) + 1`.

PSI = sum over bins of (a - e) * ln(a / e), with e the reference share and a the batch share;
shares below `EPS` are raised to `EPS` so an empty bin gives a large but finite term.
Reading (the usual credit-scoring levels): < 0.10 stable, 0.10-0.25 moderate shift,
> 0.25 significant shift (`PSI_WARN`: worth a look before trusting the scores).

Pure: arrays and frames in, numbers and JSON-able dicts out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = [
    "EPS",
    "FORMAT_VERSION",
    "PSI_WARN",
    "bin_counts",
    "bin_sizes",
    "categorical_counts",
    "drift_psi",
    "drift_reference",
    "numeric_counts",
    "psi",
    "psi_noise_floor",
    "psi_verdict",
    "quantile_edges",
    "reference_spec",
    "top_features",
]

FORMAT_VERSION = 1
EPS = 1e-4
PSI_WARN = 0.25
_MODERATE = 0.10
# Below this many scored leads a batch's PSI is mostly sampling noise: no verdict.
MIN_BATCH_LEADS = 50
NOISE_QUANTILE = 0.99


def psi_noise_floor(n: int, bins: int, n_reference: int | None = None,
                    q: float = NOISE_QUANTILE) -> float:
    """The PSI that sampling noise alone exceeds with probability 1 - q, for a batch of `n`
    leads over `bins` bins (and a reference of `n_reference` rows, when known).

    Under no drift n * PSI is close to a chi-square with bins - 1 degrees of freedom (PSI is
    the symmetrised KL divergence, whose n-scaled form is the chi-square statistic), so the
    floor is chi2_q(bins - 1) * (1/n + 1/n_reference). On 200 leads in 10 bins it is 0.108: a
    small batch reaches the "moderate" 0.10 by chance."""
    from scipy.stats import chi2

    if n <= 0 or bins < 2:
        return math.inf
    inv = 1.0 / n + (1.0 / n_reference if n_reference else 0.0)
    return float(chi2.ppf(q, bins - 1) * inv)


def psi(expected: ArrayLike, actual: ArrayLike, eps: float = EPS) -> float:
    """PSI between two distributions over the same bins.

    Both arguments are counts or shares (each is normalised to sum to 1); shares below
    `eps` are raised to `eps`. Raises ValueError for mismatched lengths, negative values or
    an all-zero distribution.
    """
    e = np.asarray(expected, dtype=float).ravel()
    a = np.asarray(actual, dtype=float).ravel()
    if e.size == 0 or e.size != a.size:
        raise ValueError(f"psi: expected and actual must have the same, non-zero number of bins; "
                         f"got {e.size} and {a.size}")
    if not (np.isfinite(e).all() and np.isfinite(a).all()) or (e < 0).any() or (a < 0).any():
        raise ValueError("psi: bin counts/shares must be finite and >= 0")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi: a distribution with no mass has no PSI")
    if not eps > 0:
        raise ValueError(f"psi: eps must be > 0; got {eps}")
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_verdict(value: float | None, n: int | None = None, bins: int | None = None) -> str:
    """'stable' (< 0.10), 'moderate' (0.10-0.25), 'significant' (> 0.25), 'n/a' for None/NaN.

    Given the batch size `n` (and the number of `bins`): 'too few leads to judge' below
    `MIN_BATCH_LEADS`, and 'within noise' when the value does not clear the PSI that
    sampling alone reaches for that size (`psi_noise_floor`)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if n is not None and n < MIN_BATCH_LEADS:
        return "too few leads to judge"
    if n is not None and bins and value >= _MODERATE and value <= psi_noise_floor(n, bins):
        return "within noise"
    if value < _MODERATE:
        return "stable"
    return "moderate" if value <= PSI_WARN else "significant"


def quantile_edges(values: ArrayLike, bins: int = 10) -> list[float]:
    """Interior bin edges: the 1/bins ... (bins-1)/bins quantiles of the finite values, ties
    merged, and edges at the maximum dropped (they would only bound an empty top bin)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2; got {bins}")
    x = _as_float(values)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return []
    qs = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(qs)
    edges = edges[edges < x.max()]
    return [float(v) for v in edges]


def numeric_counts(values: ArrayLike, edges: Sequence[float]) -> np.ndarray:
    """Counts per right-closed bin between `edges`, then the count of missing (NaN) values;
    length len(edges) + 2."""
    x = _as_float(values)
    missing = np.isnan(x)
    idx = np.searchsorted(np.asarray(edges, dtype=float), x[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)
    return np.append(counts, np.int64(missing.sum()))


def categorical_counts(values: ArrayLike, levels: Sequence[str]) -> np.ndarray:
    """Counts per level (compared as text), then the count of everything else (other values
    and missing ones); length len(levels) + 1."""
    text = _as_text(values)
    position = {str(level): i for i, level in enumerate(levels)}
    codes = text.map(position)
    codes = codes.fillna(len(levels)).to_numpy(dtype=np.int64)
    return np.bincount(codes, minlength=len(levels) + 1).astype(np.int64)


def reference_spec(values: ArrayLike, bins: int = 10, max_levels: int = 30) -> dict[str, Any]:
    """The reference entry of one variable: its kind, bins and training shares."""
    if _is_categorical(values):
        text = _as_text(values)
        counts = text.value_counts(dropna=True)
        ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        levels = [str(k) for k, _ in ranked[:max_levels]]
        shares = _shares(categorical_counts(text, levels))
        return {"kind": "categorical", "levels": levels, "shares": shares}
    edges = quantile_edges(values, bins)
    return {"kind": "numeric", "edges": edges, "shares": _shares(numeric_counts(values, edges))}


def bin_counts(values: ArrayLike, spec: Mapping[str, Any]) -> np.ndarray:
    """Counts of `values` in the bins of a reference entry (see module doc)."""
    kind = spec.get("kind")
    if kind == "numeric":
        return numeric_counts(values, spec["edges"])
    if kind == "categorical":
        return categorical_counts(values, spec["levels"])
    raise ValueError(f"unknown reference kind {kind!r}; expected 'numeric' or 'categorical'")


def drift_reference(
    X_train: pd.DataFrame,
    p_train: ArrayLike,
    features: Sequence[str],
    bins: int = 10,
    max_levels: int = 30,
) -> dict[str, Any]:
    """The drift reference to keep with a model (JSON-able):

    `{"format_version": 1, "n": rows, "bins": bins,
      "propensity": {"kind": "numeric", "edges": [...], "shares": [...]},
      "features": {name: {"kind": "numeric", "edges": [...], "shares": [...]}
                        | {"kind": "categorical", "levels": [...], "shares": [...]}}}`

    `X_train`: the training-split rows in the model's feature shape (e.g.
    `bundle.matrix(frame.loc[train])`); `p_train`: their calibrated propensity;
    `features`: the columns to track (e.g. `top_features(...)`, the ten most important).
    """
    p = _as_float(p_train)
    if p.size != len(X_train):
        raise ValueError(f"p_train has {p.size} values for {len(X_train)} rows")
    if p.size == 0:
        raise ValueError("drift_reference needs at least one training row")
    missing = [f for f in features if f not in X_train.columns]
    if missing:
        raise ValueError(f"X_train lacks the feature column(s) {missing}")
    return {
        "format_version": FORMAT_VERSION,
        "n": int(p.size),
        "bins": int(bins),
        "propensity": reference_spec(p, bins),
        "features": {str(f): reference_spec(X_train[f], bins, max_levels) for f in features},
    }


def drift_psi(reference: Mapping[str, Any], counts: Mapping[str, ArrayLike]) -> dict[str, float]:
    """PSI per tracked variable ('propensity' and feature names) from a batch's bin counts;
    variables with no counts (or no batch rows) are left out."""
    specs = {"propensity": reference["propensity"], **reference.get("features", {})}
    out: dict[str, float] = {}
    for name, spec in specs.items():
        c = counts.get(name)
        if c is None or np.asarray(c).sum() == 0:
            continue
        c = np.asarray(c, dtype=float)
        # a bin a small batch leaves empty is not evidence of drift: Jeffreys' +0.5 per bin
        # instead of eps (a newly empty decile alone gave PSI ~0.8 with eps 1e-4)
        newly_empty = (c == 0) & (np.asarray(spec["shares"], dtype=float) > 0)
        out[name] = psi(spec["shares"], c + 0.5 if newly_empty.any() else c)
    return out


def bin_sizes(reference: Mapping[str, Any]) -> dict[str, int]:
    """Variable -> number of bins in a drift reference (for `psi_verdict`)."""
    specs = {"propensity": reference["propensity"], **reference.get("features", {})}
    return {name: len(spec["shares"]) for name, spec in specs.items()}


def top_features(names: Sequence[str], importances: ArrayLike, n: int = 10) -> list[str]:
    """The `n` features with the largest positive importance (ties by name)."""
    imp = _as_float(importances)
    if imp.size != len(names):
        raise ValueError(f"{imp.size} importances for {len(names)} feature names")
    ranked = sorted(
        ((float(v), str(name)) for name, v in zip(names, imp, strict=True) if v > 0),
        key=lambda t: (-t[0], t[1]),
    )
    return [name for _, name in ranked[:n]]


# ----------------------------------------------------------------------------- helpers


def _is_categorical(values: ArrayLike) -> bool:
    if isinstance(values, pd.Series):
        dtype = values.dtype
        return (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)
                or pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_object_dtype(dtype))
    arr = np.asarray(values)
    return arr.dtype.kind in "OUSb"


def _as_float(values: ArrayLike) -> np.ndarray:
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float).ravel()


def _as_text(values: ArrayLike) -> pd.Series:
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    obj = s.astype(object)
    return obj.where(obj.isna(), obj.astype(str)).reset_index(drop=True)


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]
