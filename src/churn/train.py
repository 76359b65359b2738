"""Training: fit one model version on the preprocessed split, save it, describe it, track it.

The ``train`` stage, once per version: v1 is a logistic regression (the baseline), v2 a
histogram gradient boosting classifier; both take the preprocessor's output array. Each run
writes ``models/model_<v>.pkl``, its model record ``models/model_<v>.json``, its run
record ``models/model_<v>.run.json`` (see `churn.model_record`) and the reference
distributions for drift monitoring ``models/reference_<v>.json`` (`churn.drift`), and logs
params, metrics, the full preprocessing + model pipeline and the preprocessing files to
MLflow, registering the model there (see `churn.mlflow_store`).
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from churn import dataset, drift
from churn.config import ArtifactPaths, ModelParams, PipelineParams
from churn.evaluate import compute_metrics, held_out
from churn.export import export
from churn.features import features
from churn.model_record import (
    ArtifactRef,
    ModelRecord,
    RunRecord,
    file_sha256,
    write_record,
    write_run,
)
from churn.schema import TARGET_COLUMN

log = logging.getLogger(__name__)

#: Settings of each algorithm that the params file cannot change.
_FIXED: dict[str, dict[str, Any]] = {
    "LogisticRegression": {},
    # A fixed number of trees: no validation split drawn from the training data.
    "HistGradientBoostingClassifier": {"early_stopping": False},
}
_CLASSES: dict[str, Callable[..., ClassifierMixin]] = {
    "LogisticRegression": LogisticRegression,
    "HistGradientBoostingClassifier": HistGradientBoostingClassifier,
}
#: Rows of the training data logged to MLflow as the model's input example.
_EXAMPLE_ROWS = 5
#: Decimals kept of a fitted linear model's coefficients and intercept. The BLAS kernels of
#: different processors move newton-cholesky's solution by about 5e-14 (measured: up to
#: 4e-8 with lbfgs at its default tolerance); rounding to 1e-8 makes the model file the same
#: bytes on every machine, and moves a log-odds by less than 1e-6 (docs/ARCHITECTURE.md).
LINEAR_DECIMALS = 8


@dataclass(frozen=True)
class TrainingData:
    """The preprocessed training split, as the classifiers see it."""

    x: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame  # typed rows, for the MLflow input example
    preprocessor: ColumnTransformer  # fitted, as loaded from data/processed/


def hyperparameters(model: ModelParams) -> dict[str, Any]:
    """Return the hyperparameters of a version: the params file's plus the fixed ones."""
    return {**model.hyperparameters, **_FIXED[model.algorithm]}


def build_classifier(model: ModelParams) -> ClassifierMixin:
    """Return the unfitted classifier of a model version, with its hyperparameters."""
    try:
        return _CLASSES[model.algorithm](**hyperparameters(model))
    except TypeError as exc:  # an unknown hyperparameter name
        raise ValueError(f"models.{model.version}.hyperparameters: {exc}") from None


def load_training_data(paths: ArtifactPaths) -> TrainingData:
    """Load the training split and transform it with the fitted preprocessing."""
    train = dataset.load_csv(paths.train_csv)
    preprocessor = joblib.load(paths.preprocessor)
    encoder = joblib.load(paths.label_encoder)
    x = preprocessor.transform(features(train))
    y = encoder.transform(np.asarray(train[TARGET_COLUMN], dtype=object))
    return TrainingData(x=x, y=y, frame=train, preprocessor=preprocessor)


def fit(model: ModelParams, data: TrainingData) -> tuple[ClassifierMixin, float]:
    """Fit the classifier of ``model`` on ``data`` on one thread; return it and the seconds."""
    classifier = build_classifier(model)
    with threadpool_limits(limits=1):  # see `train`
        started = time.perf_counter()
        classifier.fit(data.x, data.y)
        seconds = time.perf_counter() - started
    return settle(classifier), seconds


def settle(classifier: ClassifierMixin) -> ClassifierMixin:
    """Round a fitted linear model's parameters to `LINEAR_DECIMALS`, in place; return it.

    The rounded model is the model: its file, its metrics and every served prediction come
    from these values. Other estimators are returned as they are (the tree ensemble's fit
    uses no BLAS and is already the same on every machine).
    """
    if isinstance(classifier, LogisticRegression):
        classifier.coef_ = np.round(classifier.coef_, LINEAR_DECIMALS)
        classifier.intercept_ = np.round(classifier.intercept_, LINEAR_DECIMALS)
    return classifier


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made (and must read) the artifacts."""
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "mlflow": version("mlflow"),
    }


def train(paths: ArtifactPaths, params: PipelineParams, version: str) -> ModelRecord:
    """Run the ``train`` stage for ``version``; return the model record it wrote.

    Runs on one thread (OpenMP and BLAS): the same model bits whatever the core count, and
    no thread contention on a shared machine, where two threads made HistGradientBoosting
    ten times slower (the data is small, so more threads buy little anyway).
    """
    with threadpool_limits(limits=1):
        return _train(paths, params, version)


def _train(paths: ArtifactPaths, params: PipelineParams, version: str) -> ModelRecord:
    model = params.model(version)
    data = load_training_data(paths)
    classifier, seconds = fit(model, data)
    x_test, y_test = held_out(paths)
    scores = classifier.predict_proba(x_test)[:, 1]
    metrics = compute_metrics(y_test, scores)
    log.info("train %s (%s) in %.2f s: %s", version, model.algorithm, seconds, metrics)

    paths.models.mkdir(parents=True, exist_ok=True)
    joblib.dump(classifier, paths.model(version))
    export(
        paths.compiled(version),
        version,
        data.preprocessor,
        joblib.load(paths.label_encoder),
        classifier,
        check=dataset.load_csv(paths.test_csv),
    )
    artifact_files = {
        "model": paths.model(version),
        "preprocessor": paths.preprocessor,
        "label_encoder": paths.label_encoder,
        "compiled": paths.compiled(version),
    }
    data_sha256 = file_sha256(paths.train_csv)
    record = ModelRecord(
        version=version,
        algorithm=model.algorithm,
        hyperparameters=hyperparameters(model),
        artifacts={
            kind: ArtifactRef(paths.relative(path), file_sha256(path))
            for kind, path in artifact_files.items()
        },
        training_data_sha256=data_sha256,
        metrics=metrics,
    )
    write_record(paths.models, record)

    from churn import mlflow_store  # training only: keeps MLflow out of every other import

    pipeline = Pipeline([("preprocessor", data.preprocessor), ("classifier", classifier)])
    tracking = mlflow_store.log_training_run(
        root=paths.root,
        version=version,
        pipeline=pipeline,
        input_example=features(data.frame).head(_EXAMPLE_ROWS),
        params={
            "algorithm": model.algorithm,
            **hyperparameters(model),
            "train_rows": len(data.y),
            "test_rows": len(y_test),
            "split_seed": params.split.seed,
            "data_source": params.data.source
            or f"generated(n_rows={params.data.n_rows}, seed={params.data.seed})",
        },
        metrics=metrics,
        tags={"data_sha256": data_sha256, "algorithm": model.algorithm},
        artifacts={**artifact_files, "record": paths.metadata(version)},
    )
    write_run(
        paths.models,
        RunRecord(
            version=version,
            model_sha256=record.artifact("model").sha256,
            trained_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            training_seconds=round(seconds, 3),
            library_versions=library_versions(),
            mlflow=tracking,
        ),
    )
    inputs = features(data.frame)
    drift.write_reference(
        drift.reference_path(paths.models, version),
        drift.build_reference(version, {c: inputs[c].tolist() for c in inputs}, scores.tolist()),
    )
    mlflow_store.register_serving_version(paths.root, record, paths.metadata(version), tracking)
    return record
