"""Behaviour of the models trained with the committed params: quality, invariance, direction."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from churn import dataset
from churn.config import PipelineParams
from churn.evaluate import METRIC_NAMES, compute_metrics
from churn.features import features
from churn.train import build_classifier

from .conftest import Trained

VERSIONS = ("v1", "v2")


def _scores(trained: Trained, version: str, frame: pd.DataFrame) -> np.ndarray:
    pre = joblib.load(trained.paths.preprocessor)
    return trained.models[version].predict_proba(pre.transform(frame))[:, 1]


@pytest.fixture(scope="module")
def test_frame(trained: Trained) -> pd.DataFrame:
    return features(dataset.load_csv(trained.paths.test_csv)).reset_index(drop=True)


def test_versions_use_the_documented_algorithms(params: PipelineParams) -> None:
    v1, v2 = (build_classifier(params.model(v)) for v in VERSIONS)
    assert isinstance(v1, LogisticRegression)
    assert isinstance(v2, HistGradientBoostingClassifier)
    assert v2.early_stopping is False
    assert v2.random_state is not None


def test_both_versions_reach_the_minimum_quality(trained: Trained) -> None:
    metrics = {
        v: compute_metrics(trained.y_test, trained.models[v].predict_proba(trained.x_test)[:, 1])
        for v in VERSIONS
    }
    for version in VERSIONS:
        assert tuple(metrics[version]) == METRIC_NAMES
        assert metrics[version]["roc_auc"] >= 0.80, (version, metrics[version])
        assert metrics[version]["roc_auc"] < 0.95, "near perfect: the data is too easy"
    assert metrics["v2"]["roc_auc"] >= metrics["v1"]["roc_auc"], metrics


@pytest.mark.parametrize("version", VERSIONS)
def test_gender_alone_barely_moves_the_score(
    trained: Trained, test_frame: pd.DataFrame, version: str
) -> None:
    flipped = test_frame.assign(gender=np.where(test_frame["gender"] == "Male", "Female", "Male"))
    change = np.abs(_scores(trained, version, flipped) - _scores(trained, version, test_frame))
    assert change.mean() < 0.01
    assert np.quantile(change, 0.99) < 0.05
    assert change.max() < 0.1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_longer_contract_does_not_raise_churn(
    trained: Trained, test_frame: pd.DataFrame, version: str
) -> None:
    scores = {
        contract: _scores(trained, version, test_frame.assign(Contract=contract))
        for contract in ("Month-to-month", "One year", "Two year")
    }
    assert (scores["One year"] <= scores["Month-to-month"] + 1e-12).all()
    assert (scores["Two year"] <= scores["One year"] + 1e-12).all()
    # ...and it matters: two years cut the average risk of the same customers substantially.
    assert scores["Two year"].mean() < 0.5 * scores["Month-to-month"].mean()


@pytest.mark.parametrize("version", VERSIONS)
def test_scores_are_probabilities_and_deterministic(
    trained: Trained, params: PipelineParams, version: str
) -> None:
    from churn.train import fit, load_training_data

    refit, _ = fit(params.model(version), load_training_data(trained.paths))
    first = trained.models[version].predict_proba(trained.x_test)
    np.testing.assert_array_equal(refit.predict_proba(trained.x_test), first)
    assert ((first >= 0) & (first <= 1)).all()
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
