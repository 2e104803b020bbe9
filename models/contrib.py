"""Fast per-lead feature contributions of a LightGBM model (path attribution).

For every tree, each split on the way from the root to the leaf a lead lands in moves the
tree's output from the parent's value to the child's; that change is credited to the split
feature (the "Saabas" attribution). Summed over trees, plus the roots' values (the bias),
the contributions add up exactly to the model's raw score (log-odds) for that lead.

Why not TreeSHAP (`pred_contrib=True`)? It is the better-founded attribution but costs
O(trees x leaves x depth^2) per lead: on this project's 2-core machine it scored under
2,000 leads/s, far from what a daily batch of a million open leads needs. Path attribution
needs only the leaf each lead lands in (`pred_leaf=True`, as fast as predicting) and one
sparse product with a precomputed (leaf x feature) table. Both agree on which features
push a lead up or down in the large majority of cases; reasons use the top few only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class PathTable:
    """The precomputed attribution of every leaf: row `offsets[t] + leaf` of `table` holds
    the contributions of landing in that leaf of tree t."""

    table: sp.csr_matrix
    offsets: np.ndarray
    bias: float
    num_iteration: int


def path_table(
    booster: lgb.Booster, n_features: int, num_iteration: int | None = None
) -> PathTable:
    """Walk every tree once and tabulate each leaf's per-feature contributions."""
    dump = booster.dump_model(num_iteration=num_iteration or -1)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    offsets = []
    bias = 0.0
    start = 0
    for tree in dump["tree_info"]:
        offsets.append(start)
        root = tree["tree_structure"]
        if "leaf_value" in root:  # a single-leaf tree: a constant
            bias += float(root["leaf_value"])
            start += 1
            continue
        bias += float(root["internal_value"])
        stack: list[tuple[dict, list[tuple[int, float]]]] = [(root, [])]
        while stack:
            node, path = stack.pop()
            for side in ("left_child", "right_child"):
                child = node[side]
                is_leaf = "leaf_index" in child
                value = child["leaf_value"] if is_leaf else child["internal_value"]
                step = [
                    *path,
                    (int(node["split_feature"]), float(value) - float(node["internal_value"])),
                ]
                if is_leaf:
                    for feature, delta in step:
                        rows.append(start + int(child["leaf_index"]))
                        cols.append(feature)
                        vals.append(delta)
                else:
                    stack.append((child, step))
        start += int(tree["num_leaves"])
    table = sp.csr_matrix((vals, (rows, cols)), shape=(start, n_features), dtype=np.float64)
    table.sum_duplicates()
    used = len(dump["tree_info"])
    return PathTable(
        table=table, offsets=np.asarray(offsets, dtype=np.int64), bias=bias, num_iteration=used
    )


def path_contributions(booster: lgb.Booster, X, table: PathTable) -> np.ndarray:  # noqa: ANN001
    """(rows, features) contributions in log-odds; row sums + table.bias = raw score."""
    # every core (the model was fitted single-threaded for determinism; leaves are exact anyway)
    threads = os.cpu_count() or 1
    leaves = np.asarray(
        booster.predict(X, pred_leaf=True, num_iteration=table.num_iteration, num_threads=threads)
    )
    if leaves.ndim == 1:
        leaves = leaves[:, None]
    n, t = leaves.shape
    index = (leaves.astype(np.int64) + table.offsets[None, :t]).ravel()
    hits = sp.csr_matrix(
        (np.ones(index.size), index, np.arange(0, n * t + 1, t)), shape=(n, table.table.shape[0])
    )
    return np.asarray((hits @ table.table).todense())
