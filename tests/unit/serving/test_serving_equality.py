"""The serving path equals the plain scikit-learn pipeline it replaces (the reference)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from churn.config import ArtifactPaths
from churn.schema import FEATURE_COLUMNS, TARGET_CLASSES
from churn.serving.prediction import ServingModels

N_ROWS = 10_000
TOLERANCE = 1e-9


def sklearn_reference(root: Path, version: str, records: list[dict[str, object]]) -> np.ndarray:
    """The plain scikit-learn path: DataFrame -> ColumnTransformer -> model.predict_proba."""
    preprocessor = joblib.load(ArtifactPaths(root).preprocessor)
    encoder = joblib.load(ArtifactPaths(root).label_encoder)
    model = joblib.load(ArtifactPaths(root).model(version))
    frame = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")
    yes_code = encoder.transform([TARGET_CLASSES[1]])[0]
    yes_index = list(model.classes_).index(yes_code)
    return model.predict_proba(preprocessor.transform(frame))[:, yes_index]


@pytest.fixture(scope="module")
def models(artifact_root: Path) -> ServingModels:
    return ServingModels.load(artifact_root)


@pytest.fixture(scope="module")
def rows(make_records) -> list[dict[str, object]]:
    # 10% of TotalCharges None on top of tenure 0, 3% of categorical values never seen.
    return make_records(N_ROWS, seed=7, null_total_rate=0.1, unseen_rate=0.03)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_equals_sklearn_on_10000_rows(
    models: ServingModels, artifact_root: Path, rows, version: str
) -> None:
    assert sum(r["TotalCharges"] is None for r in rows) > 500
    assert sum(str(v).startswith("unseen-") for r in rows for v in r.values()) > 1000
    expected = sklearn_reference(artifact_root, version, rows)
    got = models.predict_proba(version, rows)
    assert got.dtype == np.float64
    assert got.shape == (N_ROWS,)
    assert np.abs(got - expected).max() <= TOLERANCE
    # The probabilities vary: equality is not two constant arrays agreeing.
    assert expected.std() > 0.05


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_single_records_equal_sklearn(
    models: ServingModels, artifact_root: Path, rows, version: str
) -> None:
    sample = rows[:300]
    expected = sklearn_reference(artifact_root, version, sample)
    got = np.array([models.predict_proba(version, [r])[0] for r in sample])
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_none_total_charges_is_imputed_like_nan(
    models: ServingModels, artifact_root: Path, make_records, version: str
) -> None:
    records = make_records(50, seed=3)
    for r in records:
        r["TotalCharges"] = None
    expected = sklearn_reference(artifact_root, version, records)
    assert np.abs(models.predict_proba(version, records) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_all_unseen_record_scores_like_sklearn(
    models: ServingModels, artifact_root: Path, make_records, version: str
) -> None:
    records = make_records(5, seed=4, unseen_rate=1.0)
    expected = sklearn_reference(artifact_root, version, records)
    assert np.abs(models.predict_proba(version, records) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_order_is_kept_and_empty_input_gives_empty_output(
    models: ServingModels, rows, version: str
) -> None:
    forward = models.predict_proba(version, rows[:200])
    backward = models.predict_proba(version, rows[:200][::-1])
    np.testing.assert_array_equal(forward, backward[::-1])
    empty = models.predict_proba(version, [])
    assert empty.shape == (0,) and empty.dtype == np.float64


def test_the_two_versions_are_different_models(models: ServingModels, rows) -> None:
    assert (
        np.abs(
            models.predict_proba("v1", rows[:500]) - models.predict_proba("v2", rows[:500])
        ).max()
        > 0.05
    )
