"""`ServingModels.predict`: the probabilities and the verdicts at the threshold, in one result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from churn.serving.prediction import Prediction, ServingModels


def test_predict_judges_each_record_at_the_threshold_once(
    artifact_root: Path, make_records
) -> None:
    models = ServingModels.load(artifact_root)
    records = make_records(200, seed=5)
    probabilities = models.predict_proba("v2", records)
    threshold = float(np.median(probabilities))
    result = models.predict("v2", records, threshold, "champion")
    assert isinstance(result, Prediction)
    assert (result.version, result.alias, result.label) == ("v2", "champion", "v2.champion")
    assert result.records is records
    np.testing.assert_array_equal(result.probabilities, probabilities)
    assert result.churn.dtype == np.bool_
    np.testing.assert_array_equal(result.churn, probabilities >= threshold)
    assert 0 < int(result.churn.sum()) < len(records)  # the median splits them


def test_a_prediction_without_alias_is_labelled_by_its_version(
    artifact_root: Path, make_records
) -> None:
    result = ServingModels.load(artifact_root).predict("v1", make_records(1, seed=1), 0.5)
    assert result.alias is None and result.label == "v1"
    assert result.churn.shape == (1,)
