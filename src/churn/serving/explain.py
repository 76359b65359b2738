"""Per-prediction explanations: each input column's contribution to the log-odds.

For every record, ``base_value + contributions.sum() == log-odds of churn`` (to rounding), with
one contribution per column of `churn.schema.FEATURE_COLUMNS`, in that order.

* `LinearExplainer` (logistic regression): exact. A numeric column contributes its weight
  times its imputed, scaled value; a categorical column the weight of its one-hot indicator
  that is set (0 for a value outside the fitted categories). The base value is the intercept.
* `TreeShapExplainer` (HistGradientBoosting): path-dependent TreeSHAP (Lundberg et al.,
  Nature MI 2020), with the training sample counts of the nodes as covers; the SHAP values of
  a column's one-hot indicators are summed into the column. The base value is the ensemble's
  expected raw score under those covers. It is computed leaf by leaf in closed form: along
  the path to a leaf, the unique features ``j`` each have a "zero fraction" ``z_j`` (the
  product of the cover ratios of the path's edges split on ``j``) and a "one fraction"
  ``o_j`` (1 when the record satisfies every test on ``j`` along the path, else 0), and the
  leaf adds ``v * (o_i - z_i) * integral_0^1 prod_{j != i} (t*o_j + (1-t)*z_j) dt`` to feature
  ``i`` (the Shapley weights are Beta integrals: the idea of Linear TreeShap, Yu et al.,
  NeurIPS 2022). The integrand is a polynomial of degree below the path's feature count
  ``m``, so Gauss-Legendre quadrature with ``ceil(m / 2)`` nodes computes it exactly; all
  leaves with the same number of unique path features are evaluated together in numpy. A
  leaf's values depend on the record only through which of its ``m`` slots the record
  satisfies, so the values of all ``2**m`` patterns are computed once, at load, and a
  record's are looked up: the leaves of the narrowest paths form one block (each padded to
  the widest of them) as long as its table stays within 8 MB; wider paths are evaluated per
  record. For the served v2 model (paths of at most 3 features), one lookup replaces the
  evaluation, and an explained ``/predict`` costs about 125 µs in-process instead of 225.

What the explainers need (a data-only export must carry these arrays):

* both: the compiled preprocessor (`CompiledPreprocessor`: numeric columns with their fill,
  mean and scale; categorical columns with their fitted categories) and ``positive_column``
  (the model's ``predict_proba`` column of the churn class);
* linear: ``coef`` (one weight per preprocessor output column) and ``intercept``;
* trees: per tree, its node array with the fields ``left``, ``right``, ``is_leaf``,
  ``feature_idx``, ``num_threshold``, ``value`` and ``count`` (the node's training sample
  count, the cover), as in scikit-learn's ``_predictors[i][0].nodes``; and the ``baseline``
  (the ensemble's baseline raw prediction). Missing values never reach a tree (the
  preprocessor imputes them), so ``missing_go_to_left`` is not needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from churn.schema import FEATURE_COLUMNS
from churn.serving.encoding import CompiledPreprocessor, Record

if TYPE_CHECKING:  # scorers imports nothing of this module; the import is for the annotations
    from churn.serving.scorers import LinearScorer, TreeEnsembleScorer

__all__ = [
    "Explainer",
    "Explanation",
    "LinearExplainer",
    "TreeShapExplainer",
    "explainer_for",
]

#: Largest number of float64 elements in one block of the TreeSHAP evaluation (512 KB):
#: a working set that stays in cache.
_BLOCK_ELEMENTS = 2**16
#: Largest table of a block's SHAP values per pattern (8 MB); a larger block is evaluated
#: per record.
_TABLE_ELEMENTS = 2**20


@dataclass(frozen=True)
class Explanation:
    """Contributions to the churn log-odds of a batch of records.

    Attributes:
        base_value: the log-odds when every contribution is 0 (the same for every record).
        contributions: shape ``(n, 19)``, one column per name of ``columns``.
        columns: the input columns, `FEATURE_COLUMNS` in order.

    """

    base_value: float
    contributions: np.ndarray
    columns: tuple[str, ...] = FEATURE_COLUMNS

    def log_odds(self) -> np.ndarray:
        """Return each record's churn log-odds: the base value plus its contributions."""
        return self.base_value + self.contributions.sum(axis=1)


class Explainer(Protocol):
    """Records in, per-column log-odds contributions out."""

    #: the log-odds of a record with every contribution 0 (the same for every record)
    base_value: float

    def contributions(self, records: Sequence[Record]) -> np.ndarray:
        """Return shape ``(n, 19)``: each record's contribution per `FEATURE_COLUMNS` column."""
        ...


def _column_of_features(pre: CompiledPreprocessor) -> np.ndarray:
    """Index in `FEATURE_COLUMNS` of the input column behind each preprocessor output column."""
    index = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
    columns = [index[name] for name in pre.numeric_columns]
    for name, categories in zip(pre.categorical_columns, pre.categories, strict=True):
        columns += [index[name]] * len(categories)
    return np.array(columns, dtype=np.intp)


def _sign(positive_column: int) -> float:
    """+1 when the raw score is the churn log-odds, -1 when it is that of the other class."""
    return 1.0 if positive_column == 1 else -1.0


@dataclass(frozen=True)
class _Placement:
    """Where the preprocessor's numeric and categorical columns go among the 19."""

    numeric: np.ndarray
    categorical: np.ndarray

    @classmethod
    def of(cls, pre: CompiledPreprocessor) -> _Placement:
        index = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
        return cls(
            np.array([index[c] for c in pre.numeric_columns], dtype=np.intp),
            np.array([index[c] for c in pre.categorical_columns], dtype=np.intp),
        )


class LinearExplainer:
    """Exact log-odds contributions of a binary logistic regression on the preprocessor."""

    def __init__(self, scorer: LinearScorer) -> None:
        pre = self.pre = scorer.pre
        sign = _sign(scorer.positive_column)
        # The scorer's weights, already folded per column and code, turned towards churn.
        self.numeric_weights = scorer.numeric_weights * sign
        self.code_weights = scorer.code_weights * sign
        self.code_offsets = scorer.code_offsets
        self.base_value = scorer.intercept * sign
        self._place = _Placement.of(pre)

    def contributions(self, records: Sequence[Record]) -> np.ndarray:
        """Return each record's contribution per column (weight x encoded value)."""
        encoded = self.pre.encode(records)
        out = np.empty((len(records), len(FEATURE_COLUMNS)), dtype=np.float64)
        out[:, self._place.numeric] = encoded.numeric * self.numeric_weights
        out[:, self._place.categorical] = self.code_weights[encoded.codes + self.code_offsets]
        return out


@dataclass(frozen=True)
class _LeafBlock:
    """The leaves whose paths test ``M`` unique features: slot-major arrays (``L`` leaves)."""

    feature: np.ndarray  # (M, L) preprocessor output column tested
    low: np.ndarray  # (M, L) the record satisfies the path's tests on it when low < x <= high
    high: np.ndarray  # (M, L)
    zero: np.ndarray  # (M, L) zero fraction
    when_zero: np.ndarray  # (M, L, Q) the slot's factor (1 - t_q) z; plus t_q when satisfied
    nodes: np.ndarray  # (Q,) Gauss-Legendre nodes t_q on [0, 1]
    value: np.ndarray  # (L,) leaf value
    column: np.ndarray  # (M * L,) index in FEATURE_COLUMNS of each slot
    weights: np.ndarray  # (Q,) Gauss-Legendre weights on [0, 1]
    #: (M * L * 2**M,) every slot's SHAP value for each of the 2**M patterns of its leaf's
    #: "one" fractions, at ``(slot * L + leaf) * 2**M + pattern``; None for a block too large
    table: np.ndarray | None = None
    bits: np.ndarray | None = None  # (M,) 2**slot: a leaf's pattern is sum(one * bits)
    start: np.ndarray | None = None  # (M, L) where each slot's row of patterns starts


class TreeShapExplainer:
    """Path-dependent TreeSHAP of a binary HistGradientBoosting ensemble, per input column.

    It reads the ensemble from its `TreeEnsembleScorer`, as `LinearExplainer` reads its scorer.
    """

    def __init__(self, scorer: TreeEnsembleScorer) -> None:
        self.pre = scorer.pre
        sign = _sign(scorer.positive_column)
        feature_column = _column_of_features(scorer.pre)
        paths: list[tuple[float, dict[int, list[float]]]] = []
        for nodes in scorer.trees:
            paths += _leaf_paths(nodes)
        base = scorer.baseline
        by_size: dict[int, list[tuple[float, dict[int, list[float]]]]] = {}
        for value, features in paths:
            base += value * float(np.prod([f[2] for f in features.values()]))
            if features:  # a tree with no split only adds to the base value
                by_size.setdefault(len(features), []).append((value, features))
        self.base_value = base * sign
        # The leaves of the narrowest paths in one block, each padded to the widest of them (a
        # padded slot always holds, with zero fraction 1: a factor of 1 and no share), as long
        # as its table of patterns fits; each wider size a block of its own.
        sizes = sorted(by_size)
        merged: list[tuple[float, dict[int, list[float]]]] = []
        width = 0
        for m in sizes:
            if 2**m * m * (len(merged) + len(by_size[m])) > _TABLE_ELEMENTS:
                break
            merged, width = merged + by_size[m], m
        self._blocks = [_block(merged, width, sign, feature_column)] if merged else []
        self._blocks += [_block(by_size[m], m, sign, feature_column) for m in sizes if m > width]
        self._columns = len(FEATURE_COLUMNS)
        #: The column of every block's every slot, in the order `contributions` lays them.
        self._slot_columns = np.concatenate(
            [np.zeros(0, np.intp), *(block.column for block in self._blocks)]
        )
        #: Float64 elements one record needs in the evaluation (chunks stay under a limit).
        self._row_elements = max(
            1,
            sum(b.feature.size if b.table is not None else b.when_zero.size for b in self._blocks),
        )

    def contributions(self, records: Sequence[Record]) -> np.ndarray:
        """Return each record's SHAP values summed per column."""
        x = self.pre.transform(records)
        n = x.shape[0]
        if not self._blocks:  # no tree splits: every contribution is 0
            return np.zeros((n, self._columns), dtype=np.float64)
        out = np.empty((n, self._columns), dtype=np.float64)
        step = max(1, _BLOCK_ELEMENTS // self._row_elements)
        for first in range(0, n, step):
            rows = x[first : first + step]
            c = rows.shape[0]
            # Every block's slots side by side, then summed per column in one pass.
            phi = np.concatenate([_block_shap(block, rows) for block in self._blocks], axis=1)
            index = self._slot_columns[None, :] + self._columns * np.arange(c)[:, None]
            out[first : first + c] = np.bincount(
                index.ravel(), weights=phi.ravel(), minlength=c * self._columns
            ).reshape(c, self._columns)
        return out


def _leaf_paths(nodes: np.ndarray) -> list[tuple[float, dict[int, list[float]]]]:
    """Each leaf of one tree: its value and, per feature tested on its path, [low, high, z]."""
    left, right = nodes["left"].tolist(), nodes["right"].tolist()
    is_leaf = nodes["is_leaf"].astype(bool).tolist()
    feature = nodes["feature_idx"].tolist()
    threshold = nodes["num_threshold"].astype(np.float64).tolist()
    cover = nodes["count"].astype(np.float64).tolist()
    value = nodes["value"].astype(np.float64).tolist()
    out: list[tuple[float, dict[int, list[float]]]] = []
    stack: list[tuple[int, dict[int, list[float]]]] = [(0, {})]
    while stack:
        i, path = stack.pop()
        if is_leaf[i]:
            out.append((value[i], path))
            continue
        f, t = feature[i], threshold[i]
        for child, goes_left in ((left[i], True), (right[i], False)):
            low, high, zero = path.get(f, (-np.inf, np.inf, 1.0))
            ratio = cover[child] / cover[i] if cover[i] > 0 else 0.0
            bounds = (low, min(high, t)) if goes_left else (max(low, t), high)
            stack.append((child, {**path, f: [*bounds, zero * ratio]}))
    return out


def _block(
    leaves: list[tuple[float, dict[int, list[float]]]],
    m: int,
    sign: float,
    feature_column: np.ndarray,
) -> _LeafBlock:
    """Pack leaves whose paths have ``m`` unique features into arrays."""
    n = len(leaves)
    feature = np.zeros((m, n), dtype=np.intp)
    low = np.full((m, n), -np.inf)
    high = np.full((m, n), np.inf)
    zero = np.ones((m, n))
    for leaf, (_, features) in enumerate(leaves):
        for slot, (f, (lo, hi, z)) in enumerate(features.items()):
            feature[slot, leaf], low[slot, leaf], high[slot, leaf], zero[slot, leaf] = f, lo, hi, z
    x, w = np.polynomial.legendre.leggauss(-(-m // 2))  # exact up to degree m - 1
    t = (x + 1.0) / 2.0
    when_zero = zero[..., None] * (1.0 - t)
    block = _LeafBlock(
        feature=feature,
        low=low,
        high=high,
        zero=zero,
        when_zero=when_zero,
        nodes=t,
        value=np.array([v for v, _ in leaves]) * sign,
        column=feature_column[feature].ravel(),
        weights=w / 2.0,
    )
    patterns = 2**m
    if patterns * m * n > _TABLE_ELEMENTS:
        return block  # evaluated per record (`_phi`)
    # A leaf's SHAP values depend on the record only through which of its m slots the record
    # satisfies: evaluate all 2**m patterns once, and a record's values are a lookup.
    bits = 1 << np.arange(m, dtype=np.intp)
    one = (np.arange(patterns)[:, None] & bits != 0)[:, :, None]  # (2**m, m, 1)
    phi = _phi(block, np.broadcast_to(one, (patterns, m, n)))  # (2**m, m * L)
    table = np.ascontiguousarray(phi.T).ravel()  # (m * L, 2**m): slot-major, then pattern
    start = (np.arange(m * n, dtype=np.intp) * patterns).reshape(m, n)
    return dataclasses.replace(block, table=table, bits=bits, start=start)


def _block_shap(block: _LeafBlock, x: np.ndarray) -> np.ndarray:
    """SHAP values of the block's leaves for the rows ``x``: shape ``(c, M * L)``."""
    values = x[:, block.feature]  # (c, M, L)
    one = (values > block.low) & (values <= block.high)
    if block.table is None:
        return _phi(block, one)
    pattern = block.bits @ one  # (c, L)
    return block.table.take(block.start + pattern[:, None, :]).reshape(x.shape[0], -1)


def _phi(block: _LeafBlock, one: np.ndarray) -> np.ndarray:
    """SHAP values of the block's leaves given each slot's one fraction ``one`` (c, M, L)."""
    factor = block.when_zero + one[..., None] * block.nodes  # (c, M, L, Q)
    # Product of every other slot's factor: prefix times suffix products (no division by 0).
    m = factor.shape[1]
    others = np.empty_like(factor)
    others[:, 0] = 1.0
    for slot in range(1, m):
        np.multiply(others[:, slot - 1], factor[:, slot - 1], out=others[:, slot])
    suffix = factor[:, m - 1].copy()
    for slot in range(m - 2, -1, -1):
        others[:, slot] *= suffix
        suffix *= factor[:, slot]
    phi = (one - block.zero) * (others @ block.weights)
    phi *= block.value
    return phi.reshape(one.shape[0], -1)


def explainer_for(scorer: object) -> Explainer | None:
    """Return the explainer of a compiled scorer, or None when its kind has none.

    A `churn.serving.scorers.LinearScorer` gets a `LinearExplainer`, a
    `churn.serving.scorers.TreeEnsembleScorer` a `TreeShapExplainer`; anything else None.
    """
    from churn.serving.scorers import LinearScorer, TreeEnsembleScorer

    if isinstance(scorer, LinearScorer):
        return LinearExplainer(scorer)
    if isinstance(scorer, TreeEnsembleScorer):
        if any(nodes["count"][0] <= 0 for nodes in scorer.trees):
            return None  # a model file without node counts (covers)
        return TreeShapExplainer(scorer)
    return None
