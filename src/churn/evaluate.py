"""Evaluation: held-out metrics of each model version, written to ``models/metrics.json``.

`compute_metrics` is shared with training (the metadata record and the MLflow run carry the
same figures). The ``evaluate`` stage reloads every saved model, checks that its file is the
one its metadata describes, scores the held-out split and writes ``{"v1": {...}, ...}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import joblib
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from threadpoolctl import threadpool_limits

from churn import dataset
from churn.config import ArtifactPaths
from churn.features import features
from churn.model_record import ModelRecord, RecordError, file_sha256, read_record
from churn.schema import TARGET_COLUMN

log = logging.getLogger(__name__)

#: The metrics reported for every version, in this order.
METRIC_NAMES: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "f1",
    "accuracy",
    "precision",
    "recall",
    "log_loss",
)


def compute_metrics(
    y_true: np.ndarray, churn_probability: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Return the held-out metrics of churn probabilities against 0/1 labels.

    Threshold-based metrics (F1, accuracy, precision, recall) call churn at
    ``probability >= threshold``; ROC AUC, PR AUC (average precision) and log loss use the
    probabilities themselves. Values are rounded to 6 decimals.
    """
    predicted = (churn_probability >= threshold).astype(int)
    values = {
        "roc_auc": roc_auc_score(y_true, churn_probability),
        "pr_auc": average_precision_score(y_true, churn_probability),
        "f1": f1_score(y_true, predicted, zero_division=0),
        "accuracy": accuracy_score(y_true, predicted),
        "precision": precision_score(y_true, predicted, zero_division=0),
        "recall": recall_score(y_true, predicted, zero_division=0),
        "log_loss": log_loss(y_true, churn_probability, labels=[0, 1]),
    }
    return {name: round(float(values[name]), 6) for name in METRIC_NAMES}


def held_out(paths: ArtifactPaths) -> tuple[np.ndarray, np.ndarray]:
    """Return the preprocessed test split and its 0/1 labels."""
    test = dataset.load_csv(paths.test_csv)
    preprocessor = joblib.load(paths.preprocessor)
    encoder = joblib.load(paths.label_encoder)
    x_test = preprocessor.transform(features(test))
    y_test = encoder.transform(np.asarray(test[TARGET_COLUMN], dtype=object))
    return x_test, y_test


def _check_artifacts(paths: ArtifactPaths, version: str) -> ModelRecord:
    """Read the record of ``version`` and check every artifact's sha256 against it."""
    try:
        record = read_record(paths.models, version)
    except RecordError as exc:
        raise RuntimeError(f"{exc}: re-run `dvc repro`") from None
    for kind, artifact in record.artifacts.items():
        if file_sha256(paths.root / artifact.path) != artifact.sha256:
            raise RuntimeError(
                f"{artifact.path} ({kind} of {version}) does not match its record "
                f"{paths.relative(paths.metadata(version))}: re-run `dvc repro`"
            )
    return record


def evaluate(paths: ArtifactPaths, versions: Sequence[str]) -> dict[str, dict[str, float]]:
    """Run the ``evaluate`` stage: score every version on the held-out split, write metrics."""
    x_test, y_test = held_out(paths)
    report: dict[str, dict[str, float]] = {}
    for version in versions:
        _check_artifacts(paths, version)
        model = joblib.load(paths.model(version))
        with threadpool_limits(limits=1):  # as in training (see churn.train.train)
            proba = model.predict_proba(x_test)[:, 1]
        report[version] = compute_metrics(y_test, proba)
        log.info("evaluate %s: %s", version, report[version])
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
