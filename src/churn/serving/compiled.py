"""The data-only model file (``models/model_<v>.compiled.json``) turned into a scorer.

The pipeline writes the file (`churn.export`, where the format is described); this module
reads it from bytes, so the bytes may come from the local ``models/`` folder or from
anywhere else (a registry download) once their sha256 has been checked against the model
record. It needs numpy only: no scikit-learn, scipy, joblib or pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from churn.serving import scorers
from churn.serving.artifacts import ArtifactError
from churn.serving.encoding import CompiledPreprocessor
from churn.serving.scorers import LinearScorer, Scorer, TreeEnsembleScorer

__all__ = ["FORMAT", "FORMAT_VERSION", "load_compiled"]

FORMAT = "churn-compiled-model"
FORMAT_VERSION = 1
#: The node fields the tree scorer reads, as the file names them and as numpy types.
_NODE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("value", "value", "<f8"),
    ("feature_idx", "feature", "<i8"),
    ("num_threshold", "threshold", "<f8"),
    ("missing_go_to_left", "missing_left", "u1"),
    ("left", "left", "<u4"),
    ("right", "right", "<u4"),
    ("is_leaf", "is_leaf", "u1"),
    # Training samples through each node: the covers of `churn.serving.explain` (optional;
    # without them a tree model is served unexplained).
    ("count", "count", "<f8"),
)


def _nodes(tree: Mapping[str, Any]) -> np.ndarray:
    """One tree's nodes as the structured array `TreeEnsembleScorer` reads."""
    n = len(tree["value"])
    nodes = np.zeros(n, dtype=[(name, kind) for name, _, kind in _NODE_FIELDS])
    for name, key, _ in _NODE_FIELDS:
        if key == "count" and key not in tree:
            continue  # stays 0: no covers
        column = np.asarray(tree[key])
        if column.shape != (n,):
            raise ValueError(f"tree field {key!r} has {column.size} values, not {n}")
        nodes[name] = column
    return nodes


def _scorer(document: Mapping[str, Any]) -> Scorer:
    pre_data = document["preprocessor"]
    pre = CompiledPreprocessor(
        pre_data["numeric_columns"],
        np.asarray(pre_data["fill"], dtype=np.float64),
        np.asarray(pre_data["mean"], dtype=np.float64),
        np.asarray(pre_data["scale"], dtype=np.float64),
        pre_data["categorical_columns"],
        pre_data["categories"],
    )
    positive = int(document["positive_column"])
    if positive not in (0, 1):
        raise ValueError(f"positive_column {positive} is not 0 or 1")
    model = document["model"]
    if model["kind"] == "logistic_regression":
        coef = np.asarray(model["coef"], dtype=np.float64)
        if coef.shape != (pre.n_features,):
            raise ValueError(f"{coef.size} coefficients for {pre.n_features} features")
        return LinearScorer(coef, float(model["intercept"]), pre, positive)
    if model["kind"] == "gradient_boosted_trees":
        trees = [_nodes(tree) for tree in model["trees"]]
        if not trees:
            raise ValueError("no trees")
        if TreeEnsembleScorer.table_bytes(trees) > scorers.MAX_COMPILED_BYTES:
            raise ValueError("the trees' lookup tables would exceed MAX_COMPILED_BYTES")
        return TreeEnsembleScorer(trees, float(model["baseline"]), pre, positive)
    raise ValueError(f"unknown model kind {model['kind']!r}")


def load_compiled(data: bytes, source: str) -> Scorer:
    """Build the scorer of a data-only model file from its (already verified) bytes.

    Raises:
        ArtifactError: not JSON, another format or version, or inconsistent content
            (one line naming ``source`` and the reason).

    """
    try:
        document = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both
        raise ArtifactError(f"{source}: unreadable ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArtifactError(f"{source}: wrong type (not a {FORMAT} file)")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: wrong type (format version {document.get('format_version')!r}; "
            f"this server reads {FORMAT_VERSION})"
        )
    try:
        return _scorer(document)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{source}: wrong type (inconsistent model file: {reason})") from None
