"""The protocols against the clients and servers that define them, on real servers on 127.0.0.1.

* ``tritonclient[http]`` (NVIDIA's Open Inference Protocol client) against the API on Waitress:
  health, metadata, inference with binary and JSON tensors, explanations, errors.
* ``mlflow models serve`` on the same fitted preprocessor and model, saved as MLflow saves the
  project's models (a scikit-learn pipeline, ``pyfunc_predict_fn="predict_proba"``), against
  the API's ``/invocations``: the same payloads in every format get the same answers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests

from churn.config import ApiSettings, ArtifactPaths
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, NUMERIC

from .test_protocols import mlflow_payloads
from .test_serve import Running, free_port

NUMPY_TYPES = {
    c: object if c in CATEGORICAL else (np.int64 if NUMERIC[c].integer else np.float64)
    for c in FEATURE_COLUMNS
}
TRITON_TYPES = {c: "BYTES" if c in CATEGORICAL else ("INT64" if NUMERIC[c].integer else "FP64")
                for c in FEATURE_COLUMNS}  # fmt: skip


@pytest.fixture
def server(make_settings: Callable[..., ApiSettings]) -> Iterator[Running]:
    from churn.api import create_app

    settings = make_settings(host="127.0.0.1", port=free_port(), threads=4)
    running = Running(create_app(settings), settings)
    yield running
    running.close()


def _triton_inputs(http, rows: list[dict[str, object]], binary: bool) -> list[object]:
    inputs = []
    for c in FEATURE_COLUMNS:
        values = [np.nan if r[c] is None else r[c] for r in rows]
        tensor = http.InferInput(c, [len(rows)], TRITON_TYPES[c])
        tensor.set_data_from_numpy(np.array(values, dtype=NUMPY_TYPES[c]), binary_data=binary)
        inputs.append(tensor)
    return inputs


def _reference(url: str, rows: list[dict[str, object]], version: str) -> np.ndarray:
    answer = requests.post(
        f"{url}/predict/batch?model={version}", json={"instances": rows}, timeout=30
    )
    assert answer.status_code == 200
    return np.array([p["churn_probability"] for p in answer.json()["predictions"]])


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_speaks_to_the_api(server: Running, make_records, binary: bool) -> None:
    http = pytest.importorskip("tritonclient.http")
    rows = make_records(20, seed=5)
    rows[3]["TotalCharges"] = None
    client = http.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("churn")
        assert client.is_model_ready("churn", "v1")
        assert not client.is_model_ready("nothing")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata("churn", "v1")
        assert [i["name"] for i in meta["inputs"]] == list(FEATURE_COLUMNS)

        result = client.infer(
            "churn", _triton_inputs(http, rows, binary), model_version="v1", request_id="r-7"
        )
        assert result.get_response()["id"] == "r-7"
        probabilities = result.as_numpy("churn_probability")
        assert probabilities.shape == (20,)
        assert np.array_equal(probabilities, _reference(server.url, rows, "v1"))
        assert np.array_equal(result.as_numpy("churn"), probabilities >= 0.5)

        outputs = [
            http.InferRequestedOutput("churn_probability", binary_data=binary),
            http.InferRequestedOutput("contributions", binary_data=binary),
            http.InferRequestedOutput("base_value", binary_data=not binary),
        ]
        explained = client.infer("churn", _triton_inputs(http, rows, binary), outputs=outputs)
        p = explained.as_numpy("churn_probability")
        contributions = explained.as_numpy("contributions")
        assert contributions.shape == (20, 19)
        totals = contributions.sum(axis=1) + explained.as_numpy("base_value")
        assert np.abs(totals - (np.log(p) - np.log1p(-p))).max() <= 1e-6

        bad = rows[:2]
        bad[1] = {**bad[1], "tenure": -4}
        with pytest.raises(http.InferenceServerException) as caught:
            client.infer("churn", _triton_inputs(http, bad, binary))
        assert caught.value.status() == "400"
        assert "row 1: tenure" in caught.value.message()
        with pytest.raises(http.InferenceServerException) as caught:
            client.infer("other", _triton_inputs(http, rows, binary))
        assert caught.value.status() == "404"
    finally:
        client.close()


@pytest.fixture(scope="module")
def mlflow_server(artifact_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` on the fixture's v1 pipeline, saved as training logs it."""
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from benchmarks.mlflow_serve import MlflowModel, serving
    from mlflow.models import infer_signature
    from sklearn.pipeline import Pipeline

    from churn.mlflow_store import SKOPS_TRUSTED_TYPES

    preprocessor = joblib.load(ArtifactPaths(artifact_root).preprocessor)
    model = joblib.load(ArtifactPaths(artifact_root).model("v1"))
    pipeline = Pipeline([("preprocessor", preprocessor), ("model", model)])
    example = pd.read_csv(ArtifactPaths(artifact_root).train_csv).head(5)
    example = example[list(FEATURE_COLUMNS)]
    example["TotalCharges"] = pd.to_numeric(example["TotalCharges"], errors="coerce")
    folder = tmp_path_factory.mktemp("mlflow-model") / "model"
    with warnings.catch_warnings():  # the integer columns' hint, as in training
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, pipeline.predict_proba(example))
    mlflow_sklearn.save_model(
        pipeline,
        str(folder),
        signature=signature,
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
    )
    store = f"sqlite:///{folder.parent / 'mlflow.db'}"
    with serving(MlflowModel("v1", str(folder), store, None), folder.parent / "serve.log") as run:
        yield run.url


@pytest.mark.slow
def test_invocations_answers_as_mlflow_models_serve(
    server: Running, mlflow_server: str, make_records
) -> None:
    rows = make_records(25, seed=9)
    rows[4]["TotalCharges"] = None
    for kind, (content_type, body) in mlflow_payloads(rows).items():
        headers = {"Content-Type": content_type}
        theirs = requests.post(
            f"{mlflow_server}/invocations", data=body, headers=headers, timeout=60
        )
        ours = requests.post(
            f"{server.url}/invocations?model=v1", data=body, headers=headers, timeout=30
        )
        assert theirs.status_code == 200, (kind, theirs.text[:500])
        assert ours.status_code == 200, (kind, ours.text[:500])
        expected = np.array(theirs.json()["predictions"])
        got = np.array(ours.json()["predictions"])
        assert got.shape == expected.shape == (25, 2), kind
        assert np.abs(got - expected).max() <= 1e-9, kind
    # Both refuse a body with no known format, and a content type they do not read.
    for body, content_type, status in [
        ('{"rows": []}', "application/json", 400),
        ("x", "text/plain", 415),
    ]:
        headers = {"Content-Type": content_type}
        theirs = requests.post(
            f"{mlflow_server}/invocations", data=body, headers=headers, timeout=60
        )
        ours = requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=30)
        assert theirs.status_code == ours.status_code == status
    assert requests.get(f"{mlflow_server}/ping", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200
