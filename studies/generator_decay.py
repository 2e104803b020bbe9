"""The half-life each kind of action implies in the synthetic generator, against the learned
ones. A study, not a stage.

The generator (`pipeline/synth.py`) is phase-based, not decay-based: events depend only on
the hidden buying phase, and conversion only on the phase. So it has no "decay rate" of its
own; what it has is the truth `p_true` = P(convert within the horizon | hidden phase, fit,
intent at as_of). The half-life a group *implies* is the one whose decayed count explains
the truth best, in the same model family `models.decay` fits to labels,

    logit P(convert) = a + b * log1p(all-time count of the group) + c * log1p(D_h),

fitted with `p_true` as soft labels (cross-entropy against the truth: the estimator's limit
with unlimited labels of these snapshots), over the same half-life grid, the best grid point
refined by the same parabola in log h (`implied_half_lives`). (Least squares on
logit(p_true) is no good: leads in the `gone` phase have p_true = 0 and dominate it.)
The learned half-lives are
`models.decay.fit_decays` on the training split's labels (lead-bootstrap 95 % interval);
`compare` says whether each implied value lies inside its learned interval.

A second, analytic reference (`phase_half_life`): a ready-to-buy action opens a buying phase,
which ends at the rate (buying -> cooling) + conversion hazard; at fit = intent = 0 the
probability of still being in it halves every ln 2 / that rate days.

Usage, from the project root:

    python -m studies.generator_decay [--leads 20000] [--out reports/generator_decay.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.behaviour import group_decay_sums
from features.settings import FeatureSettings
from models.decay import DEFAULT_GRID, DecayFit, _design, _fit, _refine, fit_decays
from models.split import split_leads
from pipeline import synth

__all__ = ["compare", "implied_half_lives", "phase_half_life", "synthetic_sample"]

_LONG = 1e9  # every event weighs 1: the all-time count


def synthetic_sample(settings: synth.SynthSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(spine, events) of the generator's first chunk. spine: `lead_id`, `as_of`,
    `created_at`, `p_true`, `label` (converted within the horizon after as_of), only
    snapshots whose horizon ends before the data end; events: `lead_id`, `timestamp`,
    `event_type`."""
    from pipeline.stages.generate import to_tables

    leads_t, events_t, truth_t = to_tables(synth.generate_chunk(settings, 0), settings.start)
    leads = leads_t.to_pandas()
    events = events_t.select(["lead_id", "timestamp", "event_type"]).to_pandas()
    for col in ("lead_id", "event_type"):
        events[col] = events[col].astype(str)
    truth = truth_t.to_pandas()
    truth["lead_id"] = truth["lead_id"].astype(str)
    lead = leads.assign(lead_id=leads["lead_id"].astype(str)).set_index("lead_id")
    spine = truth
    spine["created_at"] = lead.loc[spine["lead_id"], "created_at"].to_numpy()
    conv = pd.to_datetime(lead.loc[spine["lead_id"], "converted_at"].to_numpy())
    horizon = pd.Timedelta(days=settings.horizon_days)
    end = pd.Timestamp(settings.end)
    spine = spine.assign(label=((conv > spine["as_of"]) & (conv <= spine["as_of"] + horizon))
                         .astype(np.int8))
    spine = spine[spine["as_of"] + horizon <= end].reset_index(drop=True)
    return spine[["lead_id", "as_of", "created_at", "p_true", "label"]], events


def implied_half_lives(spine: pd.DataFrame, events: pd.DataFrame, settings: FeatureSettings,
                       grid: Sequence[float] = DEFAULT_GRID) -> dict[str, dict[str, Any]]:
    """group -> {`half_life_days`, `profile` ((h, cross-entropy), ...)}: the half-life whose
    decayed count best explains `p_true` beside the all-time count (a logistic fit with
    `p_true` as soft labels), for every group with events before some snapshot's as_of."""
    hs = sorted(float(h) for h in grid)
    sums = group_decay_sums(spine[["lead_id", "as_of"]], events, settings, [*hs, _LONG])
    target = np.clip(spine["p_true"].to_numpy(dtype=float), 0.0, 1.0)
    ones = np.ones(len(target))
    out: dict[str, dict[str, Any]] = {}
    for g in settings.event_groups:
        col = f"decay_{g}"
        count = sums[_LONG][col].to_numpy()
        if not (count > 0).any():
            continue
        losses = [_fit(_design(count, sums[h][col].to_numpy()), target, ones)[1] for h in hs]
        out[g] = {"half_life_days": _refine(np.array(hs), np.array(losses)),
                  "profile": [(h, v) for h, v in zip(hs, losses, strict=True)]}
    return out


def phase_half_life(fit: float = 0.0, intent: float = 0.0) -> float:
    """ln 2 / (the rate at which a buying phase ends: to cooling + conversion), in days."""
    q = synth._rate_tensor(np.array([fit]), np.array([intent]))[0]
    return math.log(2) / float(q[synth.BUYING].sum())


def compare(implied: dict[str, dict[str, Any]], learned: Sequence[DecayFit]) -> list[dict]:
    """Per group fitted on both sides: implied, learned, interval, `inside`, and `off_by`
    (implied / nearest interval end, 1.0 when inside)."""
    rows = []
    for fit in learned:
        if fit.group not in implied:
            continue
        h = float(implied[fit.group]["half_life_days"])
        inside = fit.ci_low <= h <= fit.ci_high
        off = 1.0 if inside else (h / fit.ci_high if h > fit.ci_high else h / fit.ci_low)
        rows.append({"group": fit.group, "implied_half_life_days": round(h, 2),
                     "learned_half_life_days": round(fit.half_life_days, 2),
                     "ci_low": round(fit.ci_low, 2), "ci_high": round(fit.ci_high, 2),
                     "inside": bool(inside), "off_by": round(off, 3)})
    return rows


def run(settings: synth.SynthSettings, fs: FeatureSettings, *, n_boot: int = 40,
        seed: int = 0) -> dict[str, Any]:
    """The study on one synthetic sample: implied vs learned half-life per group."""
    spine, events = synthetic_sample(settings)
    parts = split_leads(spine, "label", seed=seed).parts.to_numpy()
    learned = fit_decays(spine[parts == "train"], spine[parts == "calibration"], events, fs,
                         n_boot=n_boot, seed=seed)
    implied = implied_half_lives(spine[parts == "train"], events, fs)
    return {"n_leads": settings.n_leads, "snapshots": int(len(spine)),
            "phase_half_life_days": round(phase_half_life(), 2),
            "groups": compare(implied, learned)}


def main(argv: list[str] | None = None) -> int:
    from pipeline.settings import load_params
    from pipeline.stages.features import feature_settings
    from pipeline.stages.generate import settings_from_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--out", default="reports/generator_decay.json")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    base = settings_from_params(params)
    settings = synth.SynthSettings(**{**base.__dict__, "n_leads": min(args.leads,
                                                                       synth.CHUNK_SIZE)})
    result = run(settings, feature_settings(params)[1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
