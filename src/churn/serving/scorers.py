"""Fitted classifiers compiled into plain numpy, working from `Encoded` records.

* `LinearScorer`: a binary ``LogisticRegression`` folded into per-category weights and a dot
  product over the numeric columns, then the logistic function.
* `TreeEnsembleScorer`: a binary ``HistGradientBoostingClassifier`` evaluated for all trees
  and all rows at once with leaf bitmasks (the QuickScorer idea, Lucchese et al., SIGIR 2015):
  leaves are numbered left to right; each split node has a mask clearing the leaves of its
  left subtree; a row's exit leaf in a tree is the lowest bit left after ANDing the masks of
  every node whose test sends the row right. Per feature those nodes are the ones whose
  threshold is below the value, so the AND over them is precomputed as a prefix table indexed
  by ``searchsorted``; for a categorical column (a block of one-hot features) and for small
  groups of such columns the table is indexed by the category codes directly. Scoring is
  then one gather-and-AND per column group, a lowest-set-bit, and a sum of leaf values.
Both are built from the data-only model file (`churn.serving.compiled`); neither needs
scikit-learn or scipy. Each returns the probability of the positive class per record, float64.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from operator import getitem
from typing import Protocol

import numpy as np

from churn.serving.encoding import CodeMap, CompiledPreprocessor, Record, values_getter

_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_WORD_BITS = 64
#: Largest number of code combinations of one column group's lookup table.
MAX_GROUP_ROWS = 256
#: Largest size of one lookup table (rows x trees x mask words x 8 bytes).
MAX_TABLE_BYTES = 16 * 2**20
#: Up to this many records, gather all table rows at once.
_SMALL_BATCH = 32
#: Larger batches go in chunks of masks of about this size (measured on 2 cores: a
#: 1,000-row batch about 1.8x faster than with one 800 KB block of masks).
_CHUNK_BYTES = 256 * 2**10
#: Largest total size of a tree ensemble's per-feature tables before it is left uncompiled.
MAX_COMPILED_BYTES = 256 * 2**20


class Scorer(Protocol):
    """A compiled model: records in, positive-class probabilities out."""

    #: a short name of the evaluation path, shown in `churn.serving.prediction.ModelInfo`
    engine: str

    def proba(self, records: Sequence[Record]) -> np.ndarray:
        """Return the positive-class probability of each record, float64, in order."""
        ...


def expit(z: np.ndarray) -> np.ndarray:
    """Return the logistic function of ``z``, overflow-free (as ``scipy.special.expit``)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _positive(p_one: np.ndarray, positive_column: int) -> np.ndarray:
    """Probability of the positive class from that of class 1 (``predict_proba[:, 1]``)."""
    return p_one if positive_column == 1 else 1.0 - p_one


def _logistic(z: float, positive_column: int) -> float:
    """`_positive` of the logistic function, for one Python float."""
    if z >= 0:
        p_one = 1.0 / (1.0 + math.exp(-z))
    else:
        e = math.exp(z)
        p_one = e / (1.0 + e)
    return p_one if positive_column == 1 else 1.0 - p_one


class LinearScorer:
    """A binary logistic regression on the preprocessor's output, folded per column."""

    engine = "numpy-linear"

    def __init__(
        self,
        coef: np.ndarray,
        intercept: float,
        preprocessor: CompiledPreprocessor,
        positive_column: int,
    ) -> None:
        pre = preprocessor
        self.pre = pre
        self.positive_column = positive_column
        self.intercept = float(intercept)
        k = len(pre.numeric_columns)
        self.numeric_weights = np.asarray(coef[:k], dtype=np.float64)
        # One weight per (column, code); the extra "unknown" code weighs 0 (no indicator set).
        tables = [
            np.append(coef[start : start + len(cats)], 0.0)
            for start, cats in zip(pre.offsets, pre.categories, strict=True)
        ]
        self.code_weights = np.concatenate(tables)
        self.code_offsets = np.cumsum([0] + [len(t) for t in tables])[:-1].astype(np.intp)
        # The same, as plain Python objects for the one-record path.
        self._numeric = tuple(
            zip(
                pre.numeric_columns,
                pre.fill.tolist(),
                pre.mean.tolist(),
                pre.scale.tolist(),
                self.numeric_weights.tolist(),
                strict=True,
            )
        )
        self._weight_maps = tuple(
            CodeMap(((v, float(t[i])) for i, v in enumerate(cats)), unknown=0.0)
            for cats, t in zip(pre.categories, tables, strict=True)
        )

    def proba(self, records: Sequence[Record]) -> np.ndarray:
        """Return the positive-class probability of each record."""
        if len(records) == 1:
            return np.array([self._one(records[0])])
        encoded = self.pre.encode(records)
        z = encoded.numeric @ self.numeric_weights
        z += self.code_weights[encoded.codes + self.code_offsets].sum(axis=1)
        z += self.intercept
        return _positive(expit(z), self.positive_column)

    def _one(self, record: Record) -> float:
        """One record in plain Python floats (no array overhead)."""
        z = self.intercept
        for column, fill, mean, scale, weight in self._numeric:
            x = record[column]
            x = fill if x is None or x != x else float(x)  # type: ignore[arg-type]
            z += (x - mean) / scale * weight
        z += sum(map(getitem, self._weight_maps, self.pre.categorical_values(record)))
        return _logistic(z, self.positive_column)


class _Tree:
    """One fitted tree: its split nodes with the mask each applies, and its leaf values."""

    def __init__(self, nodes: np.ndarray) -> None:
        left, right = nodes["left"].tolist(), nodes["right"].tolist()
        is_leaf = nodes["is_leaf"].astype(bool).tolist()
        order, stack = [], [0]
        while stack:  # pre-order, left child first: leaves come out left to right
            i = stack.pop()
            order.append(i)
            if not is_leaf[i]:
                stack += [right[i], left[i]]
        first, end = [0] * len(nodes), [0] * len(nodes)  # leaf range of each subtree
        leaves = [i for i in order if is_leaf[i]]
        for position, i in enumerate(leaves):
            first[i], end[i] = position, position + 1
        for i in reversed(order):
            if not is_leaf[i]:
                first[i], end[i] = first[left[i]], end[right[i]]
        self.leaf_values = nodes["value"][leaves].astype(np.float64)
        self.splits = [
            # (node, Python-int mask with the left subtree's leaves cleared)
            (i, ~(((1 << (end[left[i]] - first[left[i]])) - 1) << first[left[i]]))
            for i in order
            if not is_leaf[i]
        ]
        self.nodes = nodes


class TreeEnsembleScorer:
    """A binary HistGradientBoostingClassifier evaluated with precomputed leaf bitmasks."""

    engine = "numpy-trees"

    def __init__(
        self,
        trees: Sequence[np.ndarray],
        baseline: float,
        preprocessor: CompiledPreprocessor,
        positive_column: int,
    ) -> None:
        pre = self.pre = preprocessor
        self.positive_column = positive_column
        self.baseline = float(baseline)
        self.trees = tuple(trees)  # kept for `churn.serving.explain` (needs the node counts)
        compiled = [_Tree(nodes) for nodes in trees]
        self.n_trees = len(compiled)
        n_leaves = max(len(t.leaf_values) for t in compiled)
        self.words = w = max(1, -(-n_leaves // _WORD_BITS))  # mask words per tree
        tw = self.n_trees * w
        leaf_values = np.zeros((self.n_trees, w * _WORD_BITS))
        for t, tree in enumerate(compiled):
            leaf_values[t, : len(tree.leaf_values)] = tree.leaf_values
        self.leaf_values = leaf_values.ravel()
        # leaf_values index = this + the float64 exponent field of the leaf's bit (1023 + bit)
        self._exponent_base = np.arange(self.n_trees, dtype=np.int64) * (w * _WORD_BITS) - 1023

        # Per input feature (output column of the preprocessor): thresholds and prefix table.
        per_feature: dict[int, list[tuple[float, int, np.ndarray, bool]]] = {}
        word_mask = (1 << _WORD_BITS) - 1
        for t, tree in enumerate(compiled):
            for node, mask in tree.splits:
                row = tree.nodes[node]
                words = np.array(
                    [(mask >> (_WORD_BITS * j)) & word_mask for j in range(w)], dtype=np.uint64
                )
                per_feature.setdefault(int(row["feature_idx"]), []).append(
                    (float(row["num_threshold"]), t, words, bool(row["missing_go_to_left"]))
                )
        self.feature_tables = {
            f: self._prefix_table(entries, tw) for f, entries in per_feature.items()
        }

        # What proba() gathers from, stacked in one table: a block of rows per group of
        # categorical columns (row = combined category code), then per numeric column
        # (row = searchsorted of the scaled value). Columns no tree splits on are left out.
        per_column = [self._code_table(c, tw) for c in range(len(pre.categories))]
        blocks: list[np.ndarray] = []
        strides: list[np.ndarray] = []
        self._groups: list[list[int]] = []
        for group in self._group_columns([len(t) for t in per_column], tw):
            block = per_column[group[0]]
            for c in group[1:]:
                block = (block[:, None, :] & per_column[c][None, :, :]).reshape(-1, tw)
            if (block == _ALL).all():
                continue
            stride = np.zeros(len(per_column), dtype=np.intp)
            step = 1
            for c in reversed(group):
                stride[c] = step
                step *= len(per_column[c])
            blocks.append(block)
            strides.append(stride)
            self._groups.append(group)
        self.group_strides = (
            np.stack(strides, axis=1) if strides else np.zeros((len(per_column), 0), np.intp)
        )
        self.numeric_features = [i for i in range(len(pre.numeric_columns)) if i in per_feature]
        blocks += [self.feature_tables[i][1][:-1] for i in self.numeric_features]  # no NaN row
        starts = np.cumsum([0] + [len(b) for b in blocks])[:-1].astype(np.intp)
        self.table = np.ascontiguousarray(np.concatenate(blocks)) if blocks else None
        self.group_starts = starts[: len(self._groups)]
        self.numeric_starts = starts[len(self._groups) :].tolist()
        self._compile_one(strides)

    @staticmethod
    def table_bytes(trees: Sequence[np.ndarray]) -> int:
        """Size of the per-feature tables `TreeEnsembleScorer` would build for ``trees``."""
        splits = np.concatenate([nodes[nodes["is_leaf"] == 0] for nodes in trees])
        pairs = np.unique(np.stack([splits["feature_idx"], splits["num_threshold"]]), axis=1)
        rows = pairs.shape[1] + 2 * len(np.unique(splits["feature_idx"]))
        n_leaves = max(int(nodes["is_leaf"].sum()) for nodes in trees)
        return rows * len(trees) * -(-n_leaves // _WORD_BITS) * 8

    @staticmethod
    def _group_columns(sizes: Sequence[int], tw: int) -> list[list[int]]:
        """Consecutive categorical columns whose code combinations fit one small table."""
        groups: list[list[int]] = []
        rows = 0
        for c, size in enumerate(sizes):
            if groups and rows * size <= MAX_GROUP_ROWS and rows * size * tw * 8 <= MAX_TABLE_BYTES:
                groups[-1].append(c)
                rows *= size
            else:
                groups.append([c])
                rows = size
        return groups

    def _compile_one(self, strides: list[np.ndarray]) -> None:
        """Plain-Python lookups for one record: its table rows without array overhead."""
        pre = self.pre
        self._one_groups = []
        for group, stride, start in zip(
            self._groups, strides, self.group_starts.tolist(), strict=True
        ):
            maps = tuple(
                CodeMap(
                    ((v, int(stride[c]) * i) for i, v in enumerate(pre.categories[c])),
                    unknown=int(stride[c]) * len(pre.categories[c]),
                )
                for c in group
            )
            columns = [pre.categorical_columns[c] for c in group]
            self._one_groups.append((values_getter(columns), maps, start))
        self._one_numeric = [
            (
                pre.numeric_columns[i],
                float(pre.fill[i]),
                float(pre.mean[i]),
                float(pre.scale[i]),
                self.feature_tables[i][0].tolist(),
                start,
            )
            for i, start in zip(self.numeric_features, self.numeric_starts, strict=True)
        ]

    @staticmethod
    def _prefix_table(
        entries: list[tuple[float, int, np.ndarray, bool]], tw: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds ``u`` and masks ``P``: ``P[k]`` ANDs the nodes with threshold < ``u[k]``.

        For a value ``x``, ``P[searchsorted(u, x)]`` is the AND of the masks of the nodes that
        send ``x`` right (``x > threshold``); the last row is for NaN (nodes whose missing
        values go right).
        """
        entries = sorted(entries, key=lambda e: e[0])
        thresholds = np.unique([e[0] for e in entries])
        w = len(entries[0][2])
        table = np.full((len(thresholds) + 2, tw), _ALL, dtype=np.uint64)
        current = table[0].copy()
        nan_row = table[-1]
        k = 0
        for threshold, t, words, missing_go_to_left in entries:
            while thresholds[k] < threshold:
                k += 1
                table[k] = current
            current[t * w : (t + 1) * w] &= words
            if not missing_go_to_left:
                nan_row[t * w : (t + 1) * w] &= words
        table[k + 1 : -1] = current
        return thresholds, table

    def _feature_row(self, feature: int, value: float, tw: int) -> np.ndarray:
        """Return the AND of the masks of the nodes on ``feature`` sending ``value`` right."""
        if feature not in self.feature_tables:
            return np.full(tw, _ALL, dtype=np.uint64)
        thresholds, table = self.feature_tables[feature]
        return table[np.searchsorted(thresholds, value)]

    def _code_table(self, column: int, tw: int) -> np.ndarray:
        """Rows per code of one categorical column: its one-hot block's masks ANDed."""
        start, size = int(self.pre.offsets[column]), len(self.pre.categories[column])
        table = np.full((size + 1, tw), _ALL, dtype=np.uint64)
        for code in range(size + 1):  # code == size: unseen value, every indicator 0
            for j in range(size):
                table[code] &= self._feature_row(start + j, 1.0 if j == code else 0.0, tw)
        return table

    def _exit_values(self, masks: np.ndarray) -> np.ndarray:
        """Sum over trees of the value of each row's exit leaf (the lowest bit still set)."""
        if self.words == 1:
            word_index: np.ndarray | int = 0
            word = masks
        else:
            per_tree = masks.reshape(*masks.shape[:-1], self.n_trees, self.words)
            word_index = (per_tree != 0).argmax(axis=-1)
            word = np.take_along_axis(per_tree, word_index[..., None], axis=-1)[..., 0]
            word_index = word_index * _WORD_BITS
        lowest = word & (np.uint64(0) - word)  # isolates the lowest set bit, 2**p
        # 2**p is exact as a float64, whose exponent field is then 1023 + p.
        position = (lowest.astype(np.float64).view(np.int64) >> 52) + self._exponent_base
        if self.words > 1:
            position += word_index
        return self.leaf_values.take(position).sum(axis=-1)

    def raw_predict(self, features: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) for a dense feature matrix, NaN allowed, like the estimator.

        This evaluates feature by feature (no column groups); `proba` is the serving path.
        """
        x = np.asarray(features, dtype=np.float64)
        masks = np.full((x.shape[0], self.n_trees * self.words), _ALL, dtype=np.uint64)
        for feature, (thresholds, table) in self.feature_tables.items():
            column = x[:, feature]
            rows = np.searchsorted(thresholds, column)
            rows[np.isnan(column)] = len(table) - 1
            masks &= table[rows]
        return self._exit_values(masks) + self.baseline

    def proba(self, records: Sequence[Record]) -> np.ndarray:
        """Return the positive-class probability of each record."""
        if self.table is None:  # not a single split: every row gets the same leaves
            masks = np.full((len(records), self.n_trees * self.words), _ALL, dtype=np.uint64)
            return _positive(expit(self._exit_values(masks) + self.baseline), self.positive_column)
        if len(records) == 1:
            return np.array([self._one(records[0])])
        encoded = self.pre.encode(records)
        n = encoded.codes.shape[0]
        n_groups = len(self._groups)
        rows = np.empty((n, n_groups + len(self.numeric_starts)), dtype=np.intp)
        rows[:, :n_groups] = encoded.codes @ self.group_strides + self.group_starts
        for j, (i, start) in enumerate(
            zip(self.numeric_features, self.numeric_starts, strict=True)
        ):
            thresholds = self.feature_tables[i][0]
            rows[:, n_groups + j] = np.searchsorted(thresholds, encoded.numeric[:, i]) + start
        table = self.table
        if n <= _SMALL_BATCH:  # one gather: fewest numpy calls
            raw = self._exit_values(np.bitwise_and.reduce(table[rows], axis=1))
        else:  # one gather per block, in chunks: a working set that stays in cache
            raw = np.empty(n, dtype=np.float64)
            step = max(_SMALL_BATCH, _CHUNK_BYTES // (table.shape[1] * 8))
            for first in range(0, n, step):
                chunk = rows[first : first + step]
                masks = table[chunk[:, 0]]
                for j in range(1, chunk.shape[1]):
                    np.bitwise_and(masks, table[chunk[:, j]], out=masks)
                raw[first : first + step] = self._exit_values(masks)
        raw += self.baseline
        return _positive(expit(raw), self.positive_column)

    def _one(self, record: Record) -> float:
        """One record: its table rows found with dicts and bisect, then one gather."""
        rows = [
            start + sum(map(getitem, maps, values(record)))
            for values, maps, start in self._one_groups
        ]
        for column, fill, mean, scale, thresholds, start in self._one_numeric:
            x = record[column]
            x = fill if x is None or x != x else float(x)  # type: ignore[arg-type]
            rows.append(bisect_left(thresholds, (x - mean) / scale) + start)
        masks = np.bitwise_and.reduce(self.table[rows], axis=0)  # type: ignore[index]
        return _logistic(float(self._exit_values(masks)) + self.baseline, self.positive_column)
