"""Export: each fitted model version as a data-only file that the API loads instead of pickles.

Part of the ``train`` stage. ``models/model_<v>.compiled.json`` holds the fitted preprocessor
and classifier as plain numbers and strings (format below, ``FORMAT``); the serving core
(`churn.serving.compiled`) turns it into its numpy scorers without scikit-learn, joblib or
pickle. Before the file is written, the scorer built from it is checked against
scikit-learn's ``predict_proba`` on `CHECK_ROWS` generated customers (and the held-out rows):
any difference above `TOLERANCE` fails the stage.

Format (JSON, floats written with Python's round-trip ``repr``)::

    {"format": "churn-compiled-model", "format_version": 1, "version": "v1",
     "positive_column": 1,            # predict_proba column of the positive class ("Yes")
     "preprocessor": {"numeric_columns": [...], "fill": [...], "mean": [...], "scale": [...],
                      "categorical_columns": [...], "categories": [[...], ...]},
     "model": {"kind": "logistic_regression", "coef": [...], "intercept": -1.2}
           or {"kind": "gradient_boosted_trees", "baseline": -1.0,
               "trees": [{"value": [...], "feature": [...], "threshold": [...],
                          "missing_left": [...], "left": [...], "right": [...],
                          "is_leaf": [...], "count": [...]}, ...]}}

Only the estimators the serving core can evaluate exactly are exported; any other is refused
with `ExportError` naming what is not supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.schema import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES, TARGET_CLASSES

__all__ = [
    "CHECK_ROWS",
    "FORMAT",
    "TOLERANCE",
    "ExportError",
    "compile_classifier",
    "compile_preprocessor",
    "export",
]

FORMAT = "churn-compiled-model"
FORMAT_VERSION = 1
#: Generated customers the exported scorer is checked on, and the largest difference allowed.
CHECK_ROWS = 10_000
TOLERANCE = 1e-9
#: handle_unknown settings whose output for an unseen category is all zeros.
_UNKNOWN_AS_ZEROS = ("ignore", "infrequent_if_exist", "warn")


class ExportError(RuntimeError):
    """A fitted object cannot be exported, or the export does not reproduce scikit-learn.

    A `RuntimeError`: ``churn-pipeline`` prints its one-line message and exits with 1.
    """


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def compile_preprocessor(transformer: object) -> dict[str, Any]:
    """Return the data of a fitted ``ColumnTransformer`` of the documented shape.

    Raises:
        ExportError: not a fitted ColumnTransformer made of one impute-then-scale pipeline
            over the numeric columns and one one-hot encoder over the categorical columns.

    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def unsupported(why: str) -> ExportError:
        return ExportError(f"cannot export the preprocessor: {why}")

    if not isinstance(transformer, ColumnTransformer) or not hasattr(transformer, "transformers_"):
        raise unsupported(f"expected a fitted ColumnTransformer, got {type(transformer).__name__}")
    parts: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for name, step, columns in transformer.transformers_:
        if (isinstance(step, str) and step == "drop") or (
            name == "remainder" and len(columns) == 0
        ):
            continue
        kind = "num" if isinstance(step, Pipeline) else "cat"
        if kind in parts or not isinstance(step, Pipeline | OneHotEncoder):
            raise unsupported(f"unexpected transformer {name!r} ({type(step).__name__})")
        if kind == "num" and parts:
            raise unsupported("the numeric pipeline must come first")
        parts[kind] = (step, tuple(str(c) for c in columns))
    if set(parts) != {"num", "cat"}:
        raise unsupported("needs one numeric pipeline and one one-hot encoder")

    pipeline, numeric = parts["num"]
    steps = [step for _, step in pipeline.steps]
    if len(steps) != 2 or not (
        isinstance(steps[0], SimpleImputer) and isinstance(steps[1], StandardScaler)
    ):
        raise unsupported("the numeric pipeline must be SimpleImputer then StandardScaler")
    imputer, scaler = steps
    missing = imputer.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)) or imputer.add_indicator:
        raise unsupported("the imputer must replace NaN and add no indicator")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if fill.shape != (len(numeric),) or not np.isfinite(fill).all():
        raise unsupported("the imputer has no finite statistic for every numeric column")
    n = len(numeric)
    mean = np.asarray(scaler.mean_, np.float64) if scaler.with_mean else np.zeros(n)
    scale = np.asarray(scaler.scale_, np.float64) if scaler.with_std else np.ones(n)
    if mean.shape != (n,) or scale.shape != (n,):
        raise unsupported("the scaler does not match the numeric columns")

    encoder, categorical = parts["cat"]
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise unsupported("the one-hot encoder drops or groups categories")
    if encoder.handle_unknown not in _UNKNOWN_AS_ZEROS:
        raise unsupported(f"one-hot handle_unknown={encoder.handle_unknown!r}")
    categories = [[str(v) for v in c.tolist()] for c in encoder.categories_]
    if len(categories) != len(categorical):
        raise unsupported("the encoder does not match the categorical columns")
    if set(numeric) != set(NUMERIC_FEATURES) or set(categorical) != set(CATEGORICAL_FEATURES):
        raise unsupported("its columns are not the schema's feature columns")
    return {
        "numeric_columns": list(numeric),
        "fill": _floats(fill),
        "mean": _floats(mean),
        "scale": _floats(scale),
        "categorical_columns": list(categorical),
        "categories": categories,
    }


def compile_classifier(model: object, n_features: int) -> dict[str, Any]:
    """Return the data of a fitted binary classifier the serving core can evaluate.

    Supported: ``LogisticRegression`` and ``HistGradientBoostingClassifier`` (numeric
    splits), both binary, on the preprocessor's ``n_features`` columns.

    Raises:
        ExportError: any other estimator, or one of these in a form not supported.

    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    name = type(model).__name__
    if len(getattr(model, "classes_", ())) != 2:
        raise ExportError(f"cannot export {name}: not a fitted binary classifier")
    if getattr(model, "n_features_in_", n_features) != n_features:
        raise ExportError(
            f"cannot export {name}: it expects {model.n_features_in_} features, "  # type: ignore[attr-defined]
            f"the preprocessor makes {n_features}"
        )
    if isinstance(model, LogisticRegression):
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.shape != (1, n_features):
            raise ExportError(f"cannot export {name}: coefficients of shape {coef.shape}")
        return {
            "kind": "logistic_regression",
            "coef": _floats(coef),
            "intercept": float(np.asarray(model.intercept_).ravel()[0]),
        }
    if isinstance(model, HistGradientBoostingClassifier):
        predictors = model._predictors
        if model.n_trees_per_iteration_ != 1 or not predictors:
            raise ExportError(f"cannot export {name}: not one tree per iteration")
        trees = []
        for (predictor,) in predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ExportError(f"cannot export {name}: native categorical splits")
            trees.append(
                {
                    "value": _floats(nodes["value"]),
                    "feature": [int(v) for v in nodes["feature_idx"]],
                    "threshold": _floats(nodes["num_threshold"]),
                    "missing_left": [int(v) for v in nodes["missing_go_to_left"]],
                    "left": [int(v) for v in nodes["left"]],
                    "right": [int(v) for v in nodes["right"]],
                    "is_leaf": [int(v) for v in nodes["is_leaf"]],
                    "count": [int(v) for v in nodes["count"]],
                }
            )
        baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        return {"kind": "gradient_boosted_trees", "baseline": baseline, "trees": trees}
    raise ExportError(
        f"cannot export {name}: the serving core evaluates LogisticRegression and "
        "HistGradientBoostingClassifier only (add its compiler to churn.export and "
        "churn.serving.compiled first)"
    )


def _positive_column(model: object, encoder: object) -> int:
    """Return the ``predict_proba`` column of the positive class ("Yes")."""
    classes = [str(c) for c in getattr(encoder, "classes_", [])]
    if TARGET_CLASSES[1] not in classes:
        raise ExportError(f"cannot export: the label encoder has no class {TARGET_CLASSES[1]!r}")
    code = classes.index(TARGET_CLASSES[1])
    model_classes = [int(c) for c in model.classes_]  # type: ignore[attr-defined]
    if code not in model_classes:
        raise ExportError("cannot export: the model's classes are not the label encoder's codes")
    return model_classes.index(code)


def _check_frame(test: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """Return the customers the check scores: generated ones, blanks included, and ``test``."""
    from churn import dataset

    generated = dataset.to_typed(dataset.generate(n, seed=20261201))
    generated.loc[generated.index[::97], "TotalCharges"] = np.nan  # blanks: the imputer's path
    frames = [generated] if test is None else [generated, test]
    return pd.concat(frames, ignore_index=True)[list(FEATURE_COLUMNS)]


def export(
    path: Path,
    version: str,
    preprocessor: Any,
    encoder: Any,
    model: Any,
    check: pd.DataFrame | None = None,
) -> bytes:
    """Write the compiled form of ``version`` to ``path`` after checking it; return its bytes.

    ``check``: extra typed rows to compare on (the held-out split), besides `CHECK_ROWS`
    generated customers.

    Raises:
        ExportError: an object cannot be compiled, or the compiled scorer differs from
            scikit-learn's ``predict_proba`` by more than `TOLERANCE` on some row.

    """
    from churn.serving.compiled import load_compiled  # the exact code the API runs

    pre = compile_preprocessor(preprocessor)
    n_features = len(pre["numeric_columns"]) + sum(len(c) for c in pre["categories"])
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "positive_column": _positive_column(model, encoder),
        "preprocessor": pre,
        "model": compile_classifier(model, n_features),
    }
    try:
        data = (json.dumps(document, allow_nan=False, separators=(",", ":")) + "\n").encode()
    except ValueError as exc:
        raise ExportError(f"cannot export {version}: {exc}") from None
    compiled = load_compiled(data, str(path))
    frame = _check_frame(check, CHECK_ROWS)
    expected = model.predict_proba(preprocessor.transform(frame))[:, document["positive_column"]]
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]
    got = compiled.proba(records)
    worst = float(np.max(np.abs(got - expected)))
    if not worst <= TOLERANCE:
        raise ExportError(
            f"the compiled {version} differs from scikit-learn by {worst:.3g} "
            f"(more than {TOLERANCE:g}) on {len(records)} rows: not written"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
