"""Smoke tests of the MLflow server as deployed: UI, training runs, serving statistics."""

from __future__ import annotations

import time

import pytest
import requests


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
