"""A randomised holdout of open leads, assigned by a keyed hash of `lead_id`.

A lead is held out when `u < share`, where `u` is the first 8 bytes of
HMAC-SHA256(key, "<source>\\x1f<lead_id>") read as an unsigned integer and divided by 2**64,
so `u` is uniform on [0, 1) and independent of anything about the lead. The assignment is:

- **stable**: the same lead of the same source is held out in every batch, whatever else the
  batch holds, so a lead is never treated one week and held out the next;
- **reproducible**: anyone with the key recomputes it from the lead id alone;
- **independent per source**: the source name is part of the message, so ids that repeat
  across sources do not share an assignment;
- **unpredictable without the key**: change `key` to re-randomise (a new experiment); keep it
  to continue one. Raising `share` keeps every lead already held out (u < old share implies
  u < new share).

Routing skips held-out leads; `models.lift` later compares their conversion with the scored
leads'.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_KEY", "HoldoutSpec", "assign_holdout", "holdout_draws"]

DEFAULT_KEY = "leadprop-holdout-v1"
_SEP = "\x1f"


def holdout_draws(lead_ids: Iterable[object], *, key: str, source: str) -> np.ndarray:
    """The uniform draw in [0, 1) of every lead id (an array aligned with `lead_ids`)."""
    if not key:
        raise ValueError("the holdout key must be a non-empty string; got ''")
    secret = key.encode("utf-8")
    prefix = f"{source}{_SEP}"
    raw = [
        hmac.new(secret, f"{prefix}{lead_id}".encode(), hashlib.sha256).digest()[:8]
        for lead_id in lead_ids
    ]
    ints = np.frombuffer(b"".join(raw), dtype=">u8") if raw else np.zeros(0, dtype=">u8")
    return ints.astype(np.float64) / 2.0**64


def assign_holdout(lead_ids: Iterable[object], share: float, *, key: str = DEFAULT_KEY,
                   source: str = "") -> np.ndarray:
    """True for the leads held out of routing; `share` in [0, 1) of them on average."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the holdout share must be in [0, 1); got {share!r}")
    draws = holdout_draws(lead_ids, key=key, source=source)
    return draws < share


@dataclass(frozen=True)
class HoldoutSpec:
    """Who is held out: `share` of the leads of `source`, drawn with `key`."""

    share: float
    key: str = DEFAULT_KEY
    source: str = ""

    def assign(self, lead_ids: Iterable[object]) -> np.ndarray:
        return assign_holdout(lead_ids, self.share, key=self.key, source=self.source)
