"""The opt-in basic-auth mode of MLflow (docker/docker-compose.auth.yml), on a stack of its own.

Without credentials MLflow's API answers 401, with wrong ones 401, with the admin's 200; the
healthcheck path stays open; the API's serving statistics log in (its ``/ready`` shows MLflow
ok and its run exists), and the password shows in no log and no answer of the API.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from reliability_support import (
    AUTH_OVERRIDE,
    Stack,
    customer,
    docker,
    figure,
    free_port,
    image_ref,
    wait_for,
)

USER = "admin"


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[tuple[Stack, str]]:
    """A second stack of the suite, with the basic-auth override and a random password."""
    probe = docker(
        "run", "--rm", "--entrypoint", "python3", image_ref("churn-mlflow"),
        "-c", "import flask_wtf",
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(
            f"{image_ref('churn-mlflow')} lacks Flask-WTF, which MLflow's basic-auth app needs: "
            "docker/requirements/mlflow.in must say mlflow[auth] (then `nox -s lock build`)"
        )
    project = os.environ.get("RELIABILITY_PROJECT", "churn-reliability") + "-auth"
    password = secrets.token_urlsafe(24)
    workdir = Path(tempfile.mkdtemp(prefix=f"{project}-"))
    os.chmod(workdir, 0o755)
    stack = Stack(
        project=project,
        workdir=workdir,
        api_port=free_port(),
        mlflow_port=free_port(),
        extra_files=[AUTH_OVERRIDE],
        extra_env={
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
        },
    )
    stack.down("--volumes")
    stack.prepare_dirs()
    try:
        seconds = stack.up()
        figure("basic-auth stack start (both healthy)", f"{seconds:.1f} s")
        yield stack, password
    finally:
        stack.down("--volumes")
        shutil.rmtree(workdir, ignore_errors=True)


def test_mlflow_api_needs_the_credentials(auth_stack: tuple[Stack, str]) -> None:
    stack, password = auth_stack
    url = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search"
    body = {"max_results": 10}
    assert requests.post(url, json=body, timeout=10).status_code == 401
    wrong = requests.post(url, json=body, auth=(USER, password + "x"), timeout=10)
    assert wrong.status_code == 401
    assert requests.get(f"{stack.mlflow_url}/", timeout=10).status_code == 401
    right = requests.post(url, json=body, auth=(USER, password), timeout=10)
    assert right.status_code == 200, right.text
    assert requests.get(f"{stack.mlflow_url}/health", timeout=10).status_code == 200


def test_the_api_reports_statistics_with_the_credentials(auth_stack: tuple[Stack, str]) -> None:
    stack, password = auth_stack
    assert requests.post(f"{stack.api_url}/predict", json=customer(), timeout=10).ok

    def mlflow_ok() -> bool:
        return stack.ready().json()["checks"]["mlflow"]["status"] == "ok"

    wait_for("the API's statistics reach MLflow with auth on", mlflow_ok)
    ready = stack.ready().json()
    run_id = ready["checks"]["mlflow"]["run_id"]
    run = requests.get(
        f"{stack.mlflow_url}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id}, auth=(USER, password), timeout=10,
    )  # fmt: skip
    assert run.status_code == 200, run.text
    for text in (
        stack.ready().text,
        requests.get(f"{stack.api_url}/models", timeout=10).text,
        requests.get(f"{stack.api_url}/", timeout=10).text,
        stack.run("logs", "api", timeout=60).stdout,
    ):
        assert password not in text
