"""Shared test fixtures: a small but real set of trained artifacts, and random valid customers.

Fixtures (see each docstring):

* ``artifact_root``: session-wide project root holding the artifacts in the documented format
  (docs/ARCHITECTURE.md). Read-only: tests that tamper with files use ``artifact_copy``.
* ``artifact_copy``: a fresh, writable copy of ``artifact_root`` for one test.
* ``make_records``: a function returning random valid customer records (dicts).

The artifacts are built here with pandas and scikit-learn directly, not with the pipeline's
modules, so serving and API tests do not depend on the training code.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churn.config import ArtifactPaths
from churn.export import export
from churn.model_record import (
    ArtifactRef,
    ModelRecord,
    RunRecord,
    file_sha256,
    write_record,
    write_run,
)
from churn.schema import (
    CATEGORICAL,
    CATEGORICAL_FEATURES,
    CSV_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    INTERNET_ADDONS,
    NUMERIC_FEATURES,
    TARGET_CLASSES,
    TARGET_COLUMN,
)

#: Rows in the fixture's training + test data (small, so the whole set builds in 1-2 s).
FIXTURE_ROWS = 2000
FIXTURE_SEED = 20261127
#: Hyperparameters of the fixture's models (v2 kept at scikit-learn's default tree size).
V1_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 1000}
V2_PARAMS: dict[str, Any] = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "early_stopping": False,
    "random_state": 0,
}

RecordFactory = Callable[..., list[dict[str, object]]]


def random_records(
    n: int,
    rng: np.random.Generator,
    *,
    null_total_rate: float = 0.02,
    unseen_rate: float = 0.0,
) -> list[dict[str, object]]:
    """Return ``n`` random customers as the API hands them to the serving core.

    Values are consistent the way the Telco data is (no internet service -> every add-on is
    "No internet service"; TotalCharges about tenure x MonthlyCharges, None when tenure is 0).
    ``null_total_rate`` sets extra TotalCharges to None; ``unseen_rate`` replaces that share of
    categorical values with a spelling no encoder has seen.
    """
    internet_addons = INTERNET_ADDONS
    # Draw every column at once (a per-value rng.choice is ~100x slower).
    drawn = {c: rng.integers(0, len(CATEGORICAL[c]), n).tolist() for c in CATEGORICAL_FEATURES}
    yes_no = rng.integers(0, 2, (n, len(internet_addons) + 1)).tolist()
    addon_internet = (rng.random(n) < 0.97).tolist()
    tenures = rng.integers(0, 73, n).tolist()
    monthlies = np.round(rng.uniform(18.25, 118.75, n), 2).tolist()
    factors = rng.uniform(0.9, 1.1, n).tolist()
    seniors = (rng.random(n) < 0.16).astype(int).tolist()
    null_totals = (rng.random(n) < null_total_rate).tolist()
    unseen = (rng.random((n, len(CATEGORICAL_FEATURES))) < unseen_rate).tolist()
    unseen_kind = rng.integers(0, 3, (n, len(CATEGORICAL_FEATURES))).tolist()
    records: list[dict[str, object]] = []
    for i in range(n):
        rec: dict[str, object] = {c: CATEGORICAL[c][drawn[c][i]] for c in CATEGORICAL_FEATURES}
        if rec["InternetService"] == "No":
            for c in internet_addons:
                rec[c] = "No internet service"
        elif addon_internet[i]:
            for k, c in enumerate(internet_addons):
                if rec[c] == "No internet service":
                    rec[c] = ("No", "Yes")[yes_no[i][k]]
        if rec["PhoneService"] == "No":
            rec["MultipleLines"] = "No phone service"
        elif rec["MultipleLines"] == "No phone service":
            rec["MultipleLines"] = ("No", "Yes")[yes_no[i][-1]]
        tenure, monthly = int(tenures[i]), float(monthlies[i])
        rec["SeniorCitizen"] = int(seniors[i])
        rec["tenure"] = tenure
        rec["MonthlyCharges"] = monthly
        total = round(tenure * monthly * factors[i], 2)
        rec["TotalCharges"] = None if tenure == 0 or null_totals[i] else total
        for k, c in enumerate(CATEGORICAL_FEATURES):
            if unseen[i][k]:
                rec[c] = f"unseen-{c}-{unseen_kind[i][k]}"
        records.append({c: rec[c] for c in FEATURE_COLUMNS})
    return records


def _plausible_churn(records: list[dict[str, object]], rng: np.random.Generator) -> list[str]:
    """Draw a label from a logistic model with the Telco data's known directions."""
    labels = []
    for r in records:
        z = -1.2
        z += {"Month-to-month": 1.3, "One year": -0.4, "Two year": -1.6}[str(r["Contract"])]
        z += {"Fiber optic": 0.8, "DSL": -0.1, "No": -0.9}[str(r["InternetService"])]
        z += 0.5 if r["PaymentMethod"] == "Electronic check" else 0.0
        z += 0.4 if r["TechSupport"] == "No" else 0.0
        z += 0.3 * float(r["SeniorCitizen"])  # type: ignore[arg-type]
        z -= 0.035 * float(r["tenure"])  # type: ignore[arg-type]
        z += 0.012 * (float(r["MonthlyCharges"]) - 65.0)  # type: ignore[arg-type]
        p = 1.0 / (1.0 + np.exp(-z))
        labels.append(TARGET_CLASSES[int(rng.random() < p)])
    return labels


def build_artifacts(root: Path, *, n_rows: int = FIXTURE_ROWS, seed: int = FIXTURE_SEED) -> Path:
    """Train the fixture's models and write every artifact under ``root``; return ``root``."""
    import joblib
    import pandas as pd
    import sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    records = random_records(n_rows, rng)
    frame = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    frame.insert(0, ID_COLUMN, [f"{i:04d}-FIXTR" for i in range(n_rows)])
    frame[TARGET_COLUMN] = _plausible_churn(records, rng)
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")  # None -> NaN
    frame = frame[list(CSV_COLUMNS)]
    n_train = int(n_rows * 0.8)
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]

    paths = ArtifactPaths(root)
    processed, models = paths.processed, paths.models
    processed.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    train.to_csv(paths.train_csv, index=False)
    test.to_csv(paths.test_csv, index=False)

    preprocessor = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                list(NUMERIC_FEATURES),
            ),
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(CATEGORICAL_FEATURES),
            ),
        ]
    )
    x_train = preprocessor.fit_transform(train[list(FEATURE_COLUMNS)])
    x_test = preprocessor.transform(test[list(FEATURE_COLUMNS)])
    encoder = LabelEncoder().fit(train[TARGET_COLUMN])
    y_train = encoder.transform(train[TARGET_COLUMN])
    y_test = encoder.transform(test[TARGET_COLUMN])
    joblib.dump(preprocessor, paths.preprocessor)
    joblib.dump(encoder, paths.label_encoder)

    specs = {
        "v1": (LogisticRegression(**V1_PARAMS), {"C": V1_PARAMS["C"]}),
        "v2": (HistGradientBoostingClassifier(**V2_PARAMS), dict(V2_PARAMS)),
    }
    all_metrics: dict[str, dict[str, float]] = {}
    versions = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "mlflow": "3.17.2",
    }
    for version, (model, hyperparameters) in specs.items():
        started = time.perf_counter()
        # One thread: on a shared 2-core machine OpenMP's spinning threads make HGB 2-5x slower.
        with threadpool_limits(1):
            model.fit(x_train, y_train)
        seconds = round(time.perf_counter() - started, 3)
        joblib.dump(model, paths.model(version))
        proba = model.predict_proba(x_test)[:, 1]
        predicted = (proba >= 0.5).astype(int)
        metrics = {
            "roc_auc": float(roc_auc_score(y_test, proba)),
            "pr_auc": float(average_precision_score(y_test, proba)),
            "f1": float(f1_score(y_test, predicted)),
            "accuracy": float(accuracy_score(y_test, predicted)),
            "precision": float(precision_score(y_test, predicted, zero_division=0)),
            "recall": float(recall_score(y_test, predicted)),
            "log_loss": float(log_loss(y_test, proba)),
        }
        all_metrics[version] = metrics
        artifacts = {
            "model": paths.relative(paths.model(version)),
            "preprocessor": paths.relative(paths.preprocessor),
            "label_encoder": paths.relative(paths.label_encoder),
            "compiled": paths.relative(paths.compiled(version)),
        }
        # The data-only file the API loads, written and checked as the pipeline does it.
        export(root / artifacts["compiled"], version, preprocessor, encoder, model, check=test)
        record = ModelRecord(
            version=version,
            algorithm=type(model).__name__,
            hyperparameters=hyperparameters,
            artifacts={
                kind: ArtifactRef(rel, file_sha256(root / rel)) for kind, rel in artifacts.items()
            },
            training_data_sha256=file_sha256(paths.train_csv),
            metrics=metrics,
        )
        write_record(models, record)
        mlflow = {
            "tracking_uri": "sqlite:///mlruns/mlflow.db",
            "experiment": "churn-prediction",
            "run_id": hashlib.md5(version.encode()).hexdigest(),  # a fake, stable run id
            "registered_model": f"churn-model-{version}",
            "registered_version": "1",
        }
        run = RunRecord(
            version,
            record.artifact("model").sha256,
            "2026-11-27T09:00:00Z",
            seconds,
            versions,
            mlflow,
        )
        write_run(models, run)
    paths.metrics.write_text(json.dumps(all_metrics, indent=2) + "\n", "utf-8")
    return root


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root with a small, really trained artifact set, in the documented format.

    Layout (paths as in docs/ARCHITECTURE.md, relative to the returned root)::

        data/processed/train.csv, test.csv      1,600 / 400 random valid customers + Churn
        data/processed/preprocessor.pkl         fitted ColumnTransformer (median+scale, one-hot)
        data/processed/label_encoder.pkl        LabelEncoder on Churn (["No", "Yes"])
        models/model_v1.pkl, model_v1.json      LogisticRegression (C=1.0), its model record
        models/model_v1.compiled.json           its data-only form, the file the API loads
        models/model_v1.run.json                its run record (a fake MLflow run)
        models/model_v2.pkl, model_v2.json      HistGradientBoostingClassifier (100 trees)
        models/model_v2.run.json
        models/metrics.json                     {"v1": {...}, "v2": {...}} held-out metrics

    Each ``model_vN.json`` (`churn.model_record.ModelRecord`) carries the correct sha256 of
    its artifacts and realistic other fields; each ``model_vN.run.json`` a fake MLflow run.
    Built once per session (about 1-2 s on 2 busy cores, after imports). Shared: do not
    modify it; tamper with ``artifact_copy`` instead.
    Use it as ``ServingModels.load(artifact_root)`` or as the API's model root setting.
    """
    return build_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def artifact_copy(artifact_root: Path, tmp_path: Path) -> Path:
    """A writable copy of ``artifact_root`` for one test (to delete or corrupt files)."""
    return Path(shutil.copytree(artifact_root, tmp_path / "root"))


@pytest.fixture(scope="session")
def make_records() -> RecordFactory:
    """A function ``make_records(n, seed=0, null_total_rate=0.02, unseen_rate=0.0)``.

    It returns ``n`` random valid customer records (dicts with the 19 feature columns, the
    types the API passes on: str categories, int SeniorCitizen/tenure, float MonthlyCharges,
    float-or-None TotalCharges). The same seed gives the same records.
    """

    def factory(
        n: int, seed: int = 0, *, null_total_rate: float = 0.02, unseen_rate: float = 0.0
    ) -> list[dict[str, object]]:
        return random_records(
            n,
            np.random.default_rng(seed),
            null_total_rate=null_total_rate,
            unseen_rate=unseen_rate,
        )

    return factory
