"""Predictions through the API equal the serving core's and the offline models' own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.state import ApiState
from churn.config import ArtifactPaths
from churn.schema import FEATURE_COLUMNS
from churn.serving.prediction import ServingModels

RecordFactory = Callable[..., list[dict[str, object]]]


def offline_proba(root: Path, version: str, records: list[dict[str, object]]) -> np.ndarray:
    """The fitted preprocessor and model, called the way training called them (pandas)."""
    pd = pytest.importorskip("pandas")
    preprocessor = joblib.load(ArtifactPaths(root).preprocessor)
    model = joblib.load(ArtifactPaths(root).model(version))
    frame = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")
    return model.predict_proba(preprocessor.transform(frame))[:, 1]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_predictions_equal_offline_predict_proba(
    client: FlaskClient, artifact_root: Path, make_records: RecordFactory, version: str
) -> None:
    records = make_records(300, seed=11, null_total_rate=0.1)
    response = client.post(f"/predict/batch?model={version}", json={"instances": records})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == version and len(body["predictions"]) == 300
    got = np.array([p["churn_probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, offline_proba(artifact_root, version, records), atol=1e-9)
    core = ServingModels.load(artifact_root, (version,)).predict_proba(version, records)
    np.testing.assert_allclose(got, core, atol=1e-9)
    assert [p["churn"] for p in body["predictions"]] == [bool(p >= 0.5) for p in got]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_single_predictions_equal_offline_predict_proba(
    client: FlaskClient, artifact_root: Path, make_records: RecordFactory, version: str
) -> None:
    records = make_records(20, seed=5)
    expected = offline_proba(artifact_root, version, records)
    for record, want in zip(records, expected, strict=True):
        body = client.post(f"/predict?model={version}", json=record).get_json()
        assert body["model"] == version
        assert abs(body["churn_probability"] - want) <= 1e-9
        assert body["churn"] is bool(want >= 0.5)


def test_default_model_is_used_without_the_query(
    make_app: Callable[..., Flask], customer: dict[str, object], artifact_root: Path
) -> None:
    for default in ("v1", "v2"):
        client = make_app(default_model=default).test_client()
        body = client.post("/predict", json=customer).get_json()
        assert body["model"] == default
        want = offline_proba(artifact_root, default, [customer])[0]
        assert abs(body["churn_probability"] - want) <= 1e-9


def test_answer_shape_and_customer_id_echo(client: FlaskClient, customer: dict) -> None:
    response = client.post("/predict", json={**customer, "customerID": "7590-VHVEG"})
    body = response.get_json()
    assert set(body) == {
        "model",
        "alias",
        "churn",
        "churn_probability",
        "request_id",
        "customerID",
    }
    assert body["customerID"] == "7590-VHVEG"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "customerID" not in client.post("/predict", json=customer).get_json()


def test_batch_keeps_input_order_and_ids(
    client: FlaskClient, make_records: RecordFactory, artifact_root: Path
) -> None:
    records = make_records(50, seed=3)
    instances = [{**r, "customerID": f"id-{i}"} if i % 2 else r for i, r in enumerate(records)]
    body = client.post("/predict/batch?model=v1", json={"instances": instances}).get_json()
    for i, prediction in enumerate(body["predictions"]):
        assert prediction.get("customerID") == (f"id-{i}" if i % 2 else None)
    expected = offline_proba(artifact_root, "v1", records)
    got = [p["churn_probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_csv_style_strings_predict_like_numbers(client: FlaskClient, customer: dict) -> None:
    as_numbers = {**customer, "tenure": 0, "TotalCharges": None, "MonthlyCharges": 53.85}
    as_strings = {
        **customer,
        "tenure": "0",
        "TotalCharges": " ",
        "MonthlyCharges": "53.85",
        "SeniorCitizen": str(customer["SeniorCitizen"]),
    }
    one = client.post("/predict/batch", json={"instances": [as_numbers, as_strings]}).get_json()
    first, second = (p["churn_probability"] for p in one["predictions"])
    assert first == second


def test_threshold_setting_decides_the_verdict(
    make_app: Callable[..., Flask], customer: dict[str, object]
) -> None:
    probability = make_app().test_client().post("/predict", json=customer).get_json()
    p = probability["churn_probability"]
    above = make_app(threshold=min(1.0, p + 1e-6)).test_client()
    below = make_app(threshold=max(1e-9, p - 1e-6)).test_client()
    assert above.post("/predict", json=customer).get_json()["churn"] is False
    assert below.post("/predict", json=customer).get_json()["churn"] is True


def test_batch_of_exactly_the_limit_is_accepted(
    make_app: Callable[..., Flask], make_records: RecordFactory
) -> None:
    client = make_app(max_batch=1000).test_client()
    records = make_records(1000, seed=9)
    response = client.post("/predict/batch", json={"instances": records})
    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 1000
    assert len(json.dumps({"instances": records})) < 2 * 1024 * 1024 // 2  # fits with room


def test_the_request_path_does_no_loading(
    client: FlaskClient, state: ApiState, customer: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("artifacts loaded on the request path")

    monkeypatch.setattr(ServingModels, "load", forbidden)
    monkeypatch.setattr(joblib, "load", forbidden)
    for _ in range(3):
        assert client.post("/predict", json=customer).status_code == 200
    assert state.internal_errors == 0
