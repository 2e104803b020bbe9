"""The randomised holdout: stable, reproducible, keyed, and of the configured share."""

from __future__ import annotations

import numpy as np
import pytest

from models.holdout import assign_holdout, holdout_draws
from models.metrics import wilson_interval


def test_share_on_100k_leads_is_inside_its_binomial_interval():
    ids = [f"L{i:06d}" for i in range(100_000)]
    held = assign_holdout(ids, 0.05, key="k", source="crm")
    low, high = wilson_interval(int(held.sum()), len(ids), z=3.29)  # 99.9 %
    assert low <= 0.05 <= high
    assert 0.045 < held.mean() < 0.055


def test_assignment_is_stable_across_batches_and_order():
    week1 = [f"L{i}" for i in range(2_000)]
    week2 = [f"L{i}" for i in range(1_000, 3_000)][::-1]   # overlap, other order
    h1 = dict(zip(week1, assign_holdout(week1, 0.1, key="k", source="crm"), strict=True))
    h2 = dict(zip(week2, assign_holdout(week2, 0.1, key="k", source="crm"), strict=True))
    shared = set(week1) & set(week2)
    assert len(shared) == 1_000
    assert all(h1[i] == h2[i] for i in shared)


def test_key_and_source_change_the_assignment_and_numbers_equal_strings():
    ids = list(range(5_000))
    base = assign_holdout(ids, 0.2, key="k", source="a")
    assert (assign_holdout([str(i) for i in ids], 0.2, key="k", source="a") == base).all()
    assert (assign_holdout(ids, 0.2, key="other", source="a") != base).sum() > 500
    assert (assign_holdout(ids, 0.2, key="k", source="b") != base).sum() > 500


def test_raising_the_share_keeps_every_held_out_lead():
    ids = [f"x{i}" for i in range(10_000)]
    small = assign_holdout(ids, 0.05, key="k")
    large = assign_holdout(ids, 0.10, key="k")
    assert (large[small]).all() and large.sum() > small.sum()


def test_draws_are_uniform_and_bad_settings_are_refused():
    u = holdout_draws(range(20_000), key="k", source="")
    assert ((u >= 0) & (u < 1)).all()
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert counts.min() > 1_800 and counts.max() < 2_200
    assert assign_holdout([], 0.05).shape == (0,)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        assign_holdout(["a"], 1.0)
    with pytest.raises(ValueError, match="key"):
        assign_holdout(["a"], 0.05, key="")
