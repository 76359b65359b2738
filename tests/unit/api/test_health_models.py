"""/health, /ready and /models, including artifacts that fail verification at start."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.config import ArtifactPaths, ModelFiles


def test_health_is_ok(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_ready_lists_its_checks(client: FlaskClient) -> None:
    response = client.get("/ready")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ready"
    assert body["checks"]["models"] == {"status": "ok", "versions": ["v1", "v2"], "default": "v2"}
    assert body["checks"]["mlflow"]["status"] == "disabled"


def test_models_describes_each_version_from_its_record_and_run(
    client: FlaskClient, artifact_root: Path
) -> None:
    body = client.get("/models").get_json()
    assert body["default"] == "v2" and body["versions"] == ["v1", "v2"] and body["ready"]
    assert [m["version"] for m in body["models"]] == ["v1", "v2"]
    for version, described in zip(("v1", "v2"), body["models"], strict=True):
        models = artifact_root / "models"
        metadata = json.loads(ModelFiles(models).record(version).read_text())
        run = json.loads(ModelFiles(models).run_record(version).read_text())
        assert described["algorithm"] == metadata["algorithm"]
        assert described["metrics"] == metadata["metrics"]
        assert described["training_data_sha256"] == metadata["training_data_sha256"]
        assert described["mlflow_run_id"] == run["mlflow"]["run_id"]
        assert described["trained_at"] == run["trained_at"]
        for kind, entry in metadata["artifacts"].items():
            assert described["artifacts"][kind]["sha256"] == entry["sha256"]
        assert "tracking_uri" not in described["mlflow"]


def test_only_configured_versions_are_served(make_app: Callable[..., Flask]) -> None:
    client = make_app(model_versions="v1", default_model="v1").test_client()
    assert client.get("/models").get_json()["versions"] == ["v1"]
    assert client.post("/predict?model=v2", json=EXAMPLE_CUSTOMER).status_code == 404
    assert client.post("/predict", json=EXAMPLE_CUSTOMER).get_json()["model"] == "v1"


def _tamper(root: Path) -> None:
    path = ArtifactPaths(root).compiled("v2")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _delete(root: Path) -> None:
    ArtifactPaths(root).compiled("v1").unlink()


def _wrong_sha(root: Path) -> None:
    path = ArtifactPaths(root).metadata("v1")
    metadata = json.loads(path.read_text())
    metadata["artifacts"]["compiled"]["sha256"] = "0" * 64
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_tamper, "model_v2.compiled.json: sha256 mismatch"),
        (_delete, "model_v1.compiled.json: missing"),
        (_wrong_sha, "model_v1.compiled.json: sha256 mismatch"),
    ],
    ids=["tampered", "missing", "metadata-mismatch"],
)
def test_bad_artifacts_start_an_app_that_is_never_ready(
    artifact_copy: Path,
    make_app: Callable[..., Flask],
    tmp_path: Path,
    spoil: Callable[[Path], None],
    reason: str,
) -> None:
    spoil(artifact_copy)
    app = make_app(root=str(artifact_copy), log_dir=str(tmp_path / "logs"))
    client = app.test_client()

    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "not_ready" and body["checks"]["models"]["status"] == "error"
    assert reason in body["checks"]["models"]["reason"]

    predict = client.post("/predict", json=EXAMPLE_CUSTOMER)
    assert predict.status_code == 503
    assert predict.get_json()["error"]["code"] == "models_unavailable"
    assert client.post("/predict/batch", json={"instances": [EXAMPLE_CUSTOMER]}).status_code == 503
    # bad input is still answered as bad input
    assert client.post("/predict", json={"tenure": -1}).status_code == 422
    models = client.get("/models").get_json()
    assert models["ready"] is False and reason in models["reason"] and models["models"] == []
    assert client.get("/").status_code == 200
    loaded = rb'\nchurn_api_models_loaded\{replica="[^"]+"\} 0\.0\n'
    assert re.search(loaded, client.get("/metrics").data)

    lines = next((tmp_path / "logs").glob("api-*.log")).read_text().splitlines()
    failures = [json.loads(line) for line in lines if "models not loaded" in line]
    assert len(failures) == 1 and reason in failures[0]["message"]
    assert failures[0]["level"] == "ERROR"
