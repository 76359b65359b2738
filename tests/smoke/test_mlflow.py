"""Smoke tests of the MLflow server as deployed: UI, training runs, serving statistics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

# MLflow's own switch (mlflow.telemetry.utils.is_telemetry_disabled), evaluated in the server's
# container under the environment of its process 1: the server itself (docker/mlflow/start.py
# serves from that process).
_TELEMETRY_PROBE = """
import json, os
with open("/proc/1/environ", "rb") as fh:
    pairs = [item.decode().split("=", 1) for item in fh.read().split(b"\\0") if b"=" in item]
os.environ.clear()
os.environ.update(dict(pairs))
from mlflow.telemetry.utils import is_telemetry_disabled
with open("/proc/1/cmdline", "rb") as fh:
    cmdline = fh.read().replace(b"\\0", b" ").decode()
print(json.dumps({"disabled": is_telemetry_disabled(), "cmdline": cmdline}))
"""


def test_mlflow_ui_answers(http: requests.Session, mlflow_url: str) -> None:
    r = http.get(f"{mlflow_url}/", timeout=10)
    assert r.status_code == 200
    assert "<html" in r.text.lower()


def test_mlflow_ui_answers_a_forwarded_codespaces_host(
    http: requests.Session, mlflow_url: str
) -> None:
    headers = {"Host": "fluffy-space-robot-5001.app.github.dev", "X-Forwarded-Proto": "https"}
    r = http.get(f"{mlflow_url}/", headers=headers, timeout=10)
    assert r.status_code == 200, r.text[:200]
    api = http.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 5},
        headers=headers,
        timeout=10,
    )
    assert api.status_code == 200, api.text[:200]


def test_training_runs_reported_by_the_api_are_in_the_tracking_server(
    http: requests.Session, api_url: str, mlflow_url: str
) -> None:
    models = http.get(f"{api_url}/models", timeout=10).json()["models"]
    for model in models:
        run_id = model["mlflow_run_id"]
        r = http.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10)
        assert r.status_code == 200, (
            f"run {run_id} of {model['version']} is not in the tracking server: the artifacts "
            "were trained against another MLflow store (re-run `nox -s train`)"
        )
        run = r.json()["run"]
        logged = {m["key"] for m in run["data"].get("metrics", [])}
        assert "roc_auc" in logged


def test_registered_model_versions_exist(
    http: requests.Session, api_url: str, mlflow_url: str
) -> None:
    models = http.get(f"{api_url}/models", timeout=10).json()["models"]
    for model in models:
        name = model["mlflow"]["registered_model"]
        r = http.get(
            f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=10
        )
        assert r.status_code == 200, r.text[:200]


def test_serving_statistics_arrive_in_mlflow(
    http: requests.Session, api_url: str, mlflow_url: str, customer: dict
) -> None:
    for version in ("v1", "v2"):
        for _ in range(5):
            http.post(f"{api_url}/predict?model={version}", json=customer, timeout=10)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        exp = http.get(
            f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "churn-serving"},
            timeout=10,
        )
        if exp.status_code == 200:
            exp_id = exp.json()["experiment"]["experiment_id"]
            runs = (
                http.post(
                    f"{mlflow_url}/api/2.0/mlflow/runs/search",
                    json={"experiment_ids": [exp_id], "max_results": 50},
                    timeout=10,
                )
                .json()
                .get("runs", [])
            )
            keys = {m["key"] for run in runs for m in run["data"].get("metrics", [])}
            if any(k.startswith("requests") for k in keys):
                return
        time.sleep(3)
    pytest.fail("no serving statistics reached MLflow's 'churn-serving' experiment within 90 s")


def test_mlflow_server_sends_no_usage_telemetry(
    http: requests.Session, mlflow_url: str, mlflow_python: Callable[[str], str]
) -> None:
    ui = http.get(f"{mlflow_url}/ajax-api/3.0/mlflow/ui-telemetry", timeout=10)
    assert ui.status_code == 200, ui.text[:200]
    assert ui.json()["disable_ui_telemetry"] is True
    probe = json.loads(mlflow_python(_TELEMETRY_PROBE))
    assert "mlflow server" in probe["cmdline"], probe
    assert probe["disabled"] is True, (
        "MLflow's telemetry is on in the server: MLFLOW_DISABLE_TELEMETRY must default to true"
    )


def test_a_run_its_artifact_and_a_model_version_go_through_the_server(
    mlflow_url: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.get_experiment_by_name("smoke-artifacts")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("smoke-artifacts")
    )
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_metric(run_id, "answer", 42.0)
    client.log_text(run_id, f"hello from {run_id}", "notes/hello.txt")
    client.set_terminated(run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    local = client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
    assert Path(local).read_text() == f"hello from {run_id}"

    name = f"smoke-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/notes", run_id=run_id)
    assert client.get_model_version(name, version.version).run_id == run_id
    client.delete_registered_model(name)
