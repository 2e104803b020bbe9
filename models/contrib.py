"""Fast per-lead feature contributions of a LightGBM model (path attribution), from a numpy
evaluator of its trees.

For every tree, each split on the way from the root to the leaf a lead lands in moves the
tree's output from the parent's value to the child's; that change is credited to the split
feature (the "Saabas" attribution). Summed over trees, plus the roots' values (the bias),
the contributions add up exactly to the model's raw score (log-odds) for that lead.

Why not TreeSHAP (`pred_contrib=True`)? It is the better-founded attribution but costs
O(trees x leaves x depth^2) per lead: on this project's 2-core machine it scored under
2,000 leads/s, far from what a daily batch of a million open leads needs. Path attribution
needs only the leaf each lead lands in and, per tree, a table of each leaf's contributions.

Why not LightGBM's `predict(pred_leaf=True)` for the leaves, as before? It reads a
row-major copy of every feature, and turning (tree, leaf) hits into contributions took a
sparse product over all features: together 0.6 s of the 1 s a 100,000-lead chunk may take.
Instead `compile_forest` turns `booster.dump_model()` into small arrays once, and `Forest`
evaluates each split for all leads at once, reading one contiguous row of a feature-major
array: a lead reaches a node when it reached the parent and went that way, and its leaf's
left-to-right position is the sum of the left-subtree sizes it passed on the right. Per
tree, that position picks the leaf's value (added tree by tree, as LightGBM does, so the
raw score is LightGBM's to the last bit) and its contribution to each feature the tree
splits on. Only the features some tree splits on (`Forest.used`) are read or credited; row
blocks run on every core.

The decisions are LightGBM's (`NumericalDecision` / `CategoricalDecision` in its tree.h,
and its dense-matrix reader): |x| <= kZeroThreshold reads as 0.0; at a numerical split NaN
reads as 0.0 unless missing_type is NaN, a "missing" value (NaN for missing_type NaN, 0.0
for Zero) goes to the `default_left` side, and otherwise x <= threshold goes left; at a
categorical split the category is x truncated to an int, and NaN, negative, too large or
unlisted categories go right. The dump writes infinite thresholds as +-1e300; they are
read back as infinities. tests/unit/models/test_contrib.py holds leaves, raw scores and
contributions to LightGBM's own on values chosen to sit on every edge.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import lightgbm as lgb
import numpy as np

#: LightGBM's kZeroThreshold: the float literal 1e-35f widened to double.
ZERO_THRESHOLD = float(np.float32(1e-35))
#: Rows per block of evaluation at most (blocks run in parallel; smaller ones cost more
#: Python overhead per row), and at least when splitting rows between cores.
BLOCK_ROWS = 65_536
_MIN_BLOCK_ROWS = 8_192
_DUMPED_INF = 1e300  # dump_model() clips thresholds to +-1e300
_INT_END = 2.0**31  # a category at or beyond this is no int: LightGBM sends it right


class _Split(NamedTuple):
    """One internal node, testing feature `slot` (a row of `X`). Its bit per lead is, with
    `right_bit`, x > threshold and marks the right side (NaN compares False: it goes left),
    else x <= threshold and marks the left side; and-ed with x != 0 when `nonzero`. A
    categorical split's bit (`words`: (word, mask) pairs) is its categories' membership."""

    slot: int
    threshold: float
    right_bit: bool
    nonzero: bool
    words: tuple[tuple[int, int], ...]
    left: int  # child internal node (pre-order index), -1 for a leaf
    right: int
    left_leaves: int  # leaves under the left child


@dataclass(frozen=True)
class _Tree:
    """A tree's splits in pre-order, and per leaf (left to right) its LightGBM index, its
    value and its contributions to the used features `slots` (`table[k, leaf]` for
    `slots[k]`)."""

    splits: tuple[_Split, ...]
    leaf_index: np.ndarray
    leaf_value: np.ndarray
    slots: np.ndarray
    table: np.ndarray
    position_dtype: np.dtype


@dataclass(frozen=True)
class Forest:
    """The compiled trees of a booster. Inputs `X` are feature-major: `X[k]` holds model
    feature `used[k]` for every lead, as LightGBM reads it (float64, categories as their
    integer codes, NaN missing): a (used, rows) array, or a list of per-feature arrays."""

    used: np.ndarray
    n_features: int
    bias: float
    num_iteration: int
    trees: tuple[_Tree, ...]
    #: categorical slot -> (words, categories + 1) uint8/16/32: the bit of each category in
    #: its word (last column: none, for NaN, negative and unseen categories).
    category_bits: dict[int, np.ndarray]
    #: slots whose splits must see |x| <= kZeroThreshold as exactly 0.
    zero_tiny: frozenset[int]

    def leaves(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """(rows, trees) leaf index of every lead in every tree, as `pred_leaf=True`."""
        n = self._check(X)
        out = np.empty((len(self.trees), n), dtype=np.int32)

        def block(lo: int, hi: int) -> None:
            for t, (tree, pos) in enumerate(self._positions(X, lo, hi)):
                out[t, lo:hi] = tree.leaf_index.take(pos)

        _run_blocks(n, block)
        return out.T

    def contributions(self, X: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every lead's raw score (log-odds; summed tree by tree like LightGBM, so equal to
        its `raw_score` to the last bit) and the (used, rows) contributions, whose column
        sums + `bias` are the raw score up to rounding."""
        n = self._check(X)
        raw = np.zeros(n, dtype=np.float64)
        out = np.zeros((len(self.used), n), dtype=np.float64)

        def block(lo: int, hi: int) -> None:
            acc, score = out[:, lo:hi], raw[lo:hi]
            for tree, pos in self._positions(X, lo, hi):
                np.add(score, tree.leaf_value.take(pos), out=score)
                for slot, values in zip(tree.slots, tree.table, strict=True):
                    np.add(acc[slot], values.take(pos), out=acc[slot])

        _run_blocks(n, block)
        return raw, out

    def full_width(self, contrib: np.ndarray) -> np.ndarray:
        """(rows, n_features) from `contributions`' (used, rows): zero where never split on."""
        out = np.zeros((contrib.shape[1], self.n_features), dtype=np.float64)
        out[:, self.used] = contrib.T
        return out

    def _check(self, X: Sequence[np.ndarray]) -> int:
        """The number of rows; ValueError unless `X` has a float64 row per used feature."""
        n = X.shape[1] if isinstance(X, np.ndarray) and X.ndim == 2 else len(X[0]) if X else 0
        if len(X) != len(self.used) or any(x.dtype != np.float64 or x.shape != (n,) for x in X):
            raise ValueError(
                f"expected {len(self.used)} float64 rows of equal length (the values of the "
                f"features the trees split on), got {len(X)}"
            )
        return n

    def _positions(
        self, X: Sequence[np.ndarray], lo: int, hi: int
    ) -> Iterator[tuple[_Tree, np.ndarray]]:
        """Each tree with the left-to-right position (intp) of the leaf rows lo:hi reach."""
        rows = [_zero_tiny(x[lo:hi]) if k in self.zero_tiny else x[lo:hi] for k, x in enumerate(X)]
        bits = {k: _category_words(rows[k], lut) for k, lut in self.category_bits.items()}
        n = hi - lo
        for tree in self.trees:
            pos = np.zeros(n, dtype=tree.position_dtype)
            reach: list[np.ndarray | None] = [None] * len(tree.splits)
            for i, split in enumerate(tree.splits):
                bit = _decide(split, rows[split.slot], bits.get(split.slot))
                at = reach[i]  # rows reaching the split (None: all, at the root)
                right = _side(at, bit, split.right_bit)
                step = right.view(np.uint8)
                if split.left_leaves > 1:
                    step = step * pos.dtype.type(split.left_leaves)
                np.add(pos, step, out=pos)
                if split.left >= 0:
                    reach[split.left] = _side(at, bit, not split.right_bit)
                if split.right >= 0:
                    reach[split.right] = right
            yield tree, pos.astype(np.intp)


def _side(at: np.ndarray | None, bit: np.ndarray, on_bit: bool) -> np.ndarray:
    """Rows reaching a split (`at`; None: all) that take the side where `bit` is `on_bit`."""
    if at is None:
        return bit if on_bit else np.logical_not(bit)
    return np.logical_and(at, bit) if on_bit else np.greater(at, bit)


def _decide(split: _Split, x: np.ndarray, words: np.ndarray | None) -> np.ndarray:
    """The split's `bit` for every row (its feature's values `x`, or category `words`)."""
    if split.words:
        (word, mask), *more = split.words
        hit = np.bitwise_and(words[word], mask) != 0
        for word, mask in more:
            hit |= np.bitwise_and(words[word], mask) != 0
        return hit
    compare = np.greater if split.right_bit else np.less_equal
    bit = compare(x, split.threshold)
    if split.nonzero:
        bit &= x != 0.0
    return bit


def _zero_tiny(x: np.ndarray) -> np.ndarray:
    """x with |x| <= kZeroThreshold as 0.0, as LightGBM's dense-matrix reader has it."""
    return np.where(np.abs(x) <= ZERO_THRESHOLD, 0.0, x)


def _category_words(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(words, rows) bit of each row's category; no bit for NaN, < 0 or absent ones."""
    none = lut.shape[1] - 1
    valid = (x > -1.0) & (x < _INT_END)  # truncates to 0..INT_MAX (NaN compares False)
    code = np.trunc(np.where(valid, np.minimum(x, none), none)).astype(np.intp)
    return lut.take(code, axis=1)


def _run_blocks(n: int, block: Callable[[int, int], None]) -> None:
    """block(lo, hi) over all rows in about equal blocks of at most BLOCK_ROWS, on every
    core (numpy releases the GIL while it works on a block's arrays)."""
    workers = os.cpu_count() or 1
    count = max(-(-n // BLOCK_ROWS), min(workers, -(-n // _MIN_BLOCK_ROWS)), 1)
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    if count == 1 or workers == 1:
        for lo, hi in spans:
            block(lo, hi)
        return
    with ThreadPoolExecutor(min(workers, count)) as pool:
        list(pool.map(lambda span: block(*span), spans))


# ------------------------------------------------------------------------------ compiling


def compile_forest(
    booster: lgb.Booster, n_features: int, num_iteration: int | None = None
) -> Forest:
    """Compile the first `num_iteration` iterations (all when None) of a binary booster."""
    dump = booster.dump_model(num_iteration=num_iteration or -1)
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("average_output"):
        raise ValueError("boosters with several outputs or averaged trees (rf) are not supported")
    roots = [info["tree_structure"] for info in dump["tree_info"]]
    top: dict[int, int] = {}  # feature -> its largest category in any split (-1: numerical)
    for root in roots:
        for node in _splits(root):
            cats = _categories(node)
            top[node["split_feature"]] = max([top.get(node["split_feature"], -1), *cats])
    used = sorted(top)
    slot_of = {f: k for k, f in enumerate(used)}
    width = {slot_of[f]: _word_width(t) for f, t in top.items() if t >= 0}
    zero_tiny: set[int] = set()
    trees = tuple(_compile_tree(root, slot_of, width, zero_tiny) for root in roots)
    category_bits = {}
    for f, t in top.items():
        if t >= 0:
            w = width[slot_of[f]]
            cats = np.arange(t + 1)
            lut = np.zeros((t // w + 1, t + 2), dtype=f"uint{w}")
            lut[cats // w, cats] = np.left_shift(1, cats % w)
            category_bits[slot_of[f]] = lut
    return Forest(
        used=np.asarray(used, dtype=np.intp),
        n_features=n_features,
        bias=sum(float(r.get("internal_value", r.get("leaf_value"))) for r in roots),
        num_iteration=len(roots),
        trees=trees,
        category_bits=category_bits,
        zero_tiny=frozenset(zero_tiny),
    )


def _splits(node: dict) -> Iterator[dict]:
    """The internal nodes under `node`, in pre-order."""
    if "split_feature" in node:
        yield node
        yield from _splits(node["left_child"])
        yield from _splits(node["right_child"])


def _categories(node: dict) -> list[int]:
    """The categories a categorical split sends left ([] for a numerical split)."""
    if node["decision_type"] == "==":
        return [int(c) for c in str(node["threshold"]).split("||")]
    if node["decision_type"] != "<=":
        raise ValueError(f"unsupported LightGBM decision type {node['decision_type']!r}")
    return []


def _word_width(top: int) -> int:
    """Bits per word of a categorical feature's category bits: the fewest that hold them
    all, 32 at most (more words then)."""
    return next(w for w in (8, 16, 32) if top < w or w == 32)


def _compile_tree(
    root: dict, slot_of: dict[int, int], width: dict[int, int], zero_tiny: set[int]
) -> _Tree:
    """One tree of the dump; `zero_tiny` collects the slots that need tiny values zeroed."""
    nodes = list(_splits(root))  # pre-order
    order = {id(node): i for i, node in enumerate(nodes)}
    splits = tuple(
        _compile_split(
            node,
            slot_of[node["split_feature"]],
            order.get(id(node["left_child"]), -1),
            order.get(id(node["right_child"]), -1),
            sum(1 for _ in _leaves(node["left_child"], slot_of)),
            width.get(slot_of[node["split_feature"]]),
            zero_tiny,
        )
        for node in nodes
    )
    leaves = list(_leaves(root, slot_of))
    if any("leaf_coeff" in leaf for leaf, _ in leaves):
        raise ValueError("linear trees (linear_tree=True) are not supported")
    slots = sorted({s for _, path in leaves for s in path})
    table = np.array([[path.get(s, 0.0) for _, path in leaves] for s in slots], dtype=np.float64)
    return _Tree(
        splits=splits,
        leaf_index=np.asarray([leaf.get("leaf_index", 0) for leaf, _ in leaves], dtype=np.int32),
        leaf_value=np.asarray([leaf["leaf_value"] for leaf, _ in leaves], dtype=np.float64),
        slots=np.asarray(slots, dtype=np.intp),
        table=table.reshape(len(slots), len(leaves)),
        position_dtype=np.min_scalar_type(len(leaves)),
    )


def _leaves(
    node: dict, slot_of: dict[int, int], path: dict[int, float] | None = None
) -> Iterator[tuple[dict, dict[int, float]]]:
    """The leaves under `node` left to right, each with its path's contribution per slot
    (each split credits child value - parent value to its feature)."""
    path = path or {}
    if "split_feature" not in node:
        yield node, path
        return
    slot = slot_of[node["split_feature"]]
    for side in ("left_child", "right_child"):
        child = node[side]
        value = child["internal_value"] if "split_feature" in child else child["leaf_value"]
        step = {**path, slot: path.get(slot, 0.0) + float(value) - float(node["internal_value"])}
        yield from _leaves(child, slot_of, step)


def _compile_split(
    node: dict,
    slot: int,
    left: int,
    right: int,
    left_leaves: int,
    width: int | None,
    zero_tiny: set[int],
) -> _Split:
    """One split; `width`: the bits per word of a categorical feature's categories."""
    children = (left, right, left_leaves)
    if node["decision_type"] == "==" and width is not None:
        masks: dict[int, int] = {}
        for c in _categories(node):
            masks[c // width] = masks.get(c // width, 0) | (1 << (c % width))
        return _Split(slot, 0.0, False, False, tuple(sorted(masks.items())), *children)
    threshold = float(node["threshold"])
    if abs(threshold) >= _DUMPED_INF:  # the dump writes +-inf (numbers vs NaN) as +-1e300
        threshold = math.copysign(math.inf, threshold)
    zero_is_missing = node["missing_type"] == "Zero"
    # the side of NaN: the default one when NaN or 0.0 is "missing", else that of 0.0
    nan_left = (
        bool(node["default_left"]) if node["missing_type"] in ("NaN", "Zero") else threshold >= 0
    )
    if zero_is_missing or -ZERO_THRESHOLD <= threshold < ZERO_THRESHOLD:
        zero_tiny.add(slot)  # reading |x| <= kZeroThreshold as 0 can change the side
    # the comparison sends NaN to its side by itself; a "missing" 0.0 needs x != 0 when the
    # comparison would send it the other way
    nonzero = zero_is_missing and (threshold < 0 if nan_left else threshold >= 0)
    return _Split(slot, threshold, nan_left, nonzero, (), *children)
