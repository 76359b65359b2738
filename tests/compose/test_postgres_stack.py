"""MLflow on PostgreSQL (docker/docker-compose.postgres.yml) on a stack of its own.

Training-style runs with artifacts, the model registry, the UI and the API's serving statistics
through the PostgreSQL-backed server; the rows really in PostgreSQL and the artifacts in the named
volume; the password never in the store URI; and an older schema upgraded when MLflow starts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from compose_support import ROOT, compose_clis, free_port, require_images, run, wait_healthy

CLIS = compose_clis()
FILES = ["-f", "docker/docker-compose.yml", "-f", "docker/docker-compose.postgres.yml"]


@dataclass
class Stack:
    """A running PostgreSQL-backed stack: its Compose command, environment and URLs."""

    compose: list[str]
    env: dict[str, str]
    mlflow: str
    api: str

    def container(self, service: str) -> str:
        """The id of a service's container."""
        return run([*self.compose, "ps", "-q", service], ROOT, self.env).stdout.split()[0]

    def exec(self, service: str, *cmd: str, env: dict[str, str] | None = None) -> str:
        """Run a command in a service's container; return its stdout."""
        extra = [f"-e{k}={v}" for k, v in (env or {}).items()]
        return run(["docker", "exec", *extra, self.container(service), *cmd], ROOT, self.env).stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with the PostgreSQL override, on free ports; torn down with its volumes."""
    if not CLIS:
        pytest.skip("no Compose CLI on this machine")
    require_images("churn-mlflow", "churn-prediction-api")
    data = tmp_path_factory.mktemp("pgstack")
    name = f"churn-pg-test-{os.getpid()}"
    api_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": name,
        "STACK_NETWORK": name,
        "API_PORT": str(api_port),
        "MLFLOW_PORT": str(mlflow_port),
        "API_BIND": "127.0.0.1",
        "MLFLOW_BIND": "127.0.0.1",
        "MLRUNS_DIR": str(data / "mlruns"),
        "LOGS_DIR": str(data / "logs"),
        # Characters that would break a password written into a URL.
        "POSTGRES_PASSWORD": f"p@ss:w/rd#{secrets.token_hex(8)}",
        "CHURN_STATS_INTERVAL": "2",
    }
    compose = [*CLIS[0], *FILES]
    tag = os.environ.get("IMAGE_TAG", "latest")
    missing = subprocess.run(
        ["docker", "image", "inspect", f"churn-postgres:{tag}"], capture_output=True
    )
    if missing.returncode:
        # Built on the same base as the others: the stand-in where no registry answers.
        standin = "churn-standin-python:3.11-bookworm"
        if (
            "BASE_IMAGE" not in env
            and not subprocess.run(
                ["docker", "image", "inspect", standin], capture_output=True
            ).returncode
        ):
            env["BASE_IMAGE"] = standin
        run([*compose, "build", "postgres"], ROOT, env, timeout=900)
    try:
        run([*compose, "up", "-d"], ROOT, env)
        wait_healthy(compose, ["postgres", "mlflow", "api"], ROOT, env)
        yield Stack(compose, env, f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}")
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], cwd=ROOT, env=env, timeout=300)


def _psql(stack: Stack, sql: str) -> str:
    return stack.exec(
        "postgres", "psql", "-h", "127.0.0.1", "-U", "mlflow", "-d", "mlflow", "-tAc", sql,
        env={"PGPASSWORD": stack.env["POSTGRES_PASSWORD"]},
    ).strip()  # fmt: skip


def test_runs_artifacts_and_registry_live_in_postgresql_and_the_volume(
    stack: Stack, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow)
    experiment_id = client.create_experiment("churn-prediction")
    run_ = client.create_run(experiment_id, run_name="train-v2")
    run_id = run_.info.run_id
    client.log_param(run_id, "algorithm", "logistic_regression")
    client.log_metric(run_id, "roc_auc", 0.84)
    client.log_text(run_id, '{"C": 1.0}', "model/params.json")
    client.set_terminated(run_id)
    client.create_registered_model("churn-model-v2")
    version = client.create_model_version("churn-model-v2", f"runs:/{run_id}/model", run_id=run_id)

    got = client.download_artifacts(run_id, "model/params.json", str(tmp_path))
    assert json.loads(Path(got).read_text()) == {"C": 1.0}
    assert _psql(stack, f"SELECT count(*) FROM runs WHERE run_uuid = '{run_id}'") == "1"
    assert _psql(stack, "SELECT name FROM registered_models") == "churn-model-v2"
    assert client.get_model_version("churn-model-v2", version.version).run_id == run_id
    listing = stack.exec("mlflow", "find", "/mlflow/artifacts", "-name", "params.json")
    assert f"/{run_id}/artifacts/model/params.json" in listing

    ui = requests.get(f"{stack.mlflow}/", timeout=30)
    assert ui.status_code == 200 and "<html" in ui.text.lower()


def test_the_password_is_never_in_the_store_uri(stack: Stack) -> None:
    env = stack.exec("mlflow", "cat", "/proc/1/environ").split("\0")
    uri = next(e for e in env if e.startswith("MLFLOW_BACKEND_STORE_URI="))
    assert uri.startswith("MLFLOW_BACKEND_STORE_URI=postgresql")
    assert stack.env["POSTGRES_PASSWORD"] not in uri
    logs = run([*stack.compose, "logs", "mlflow", "postgres"], ROOT, stack.env)
    assert stack.env["POSTGRES_PASSWORD"] not in logs.stdout + logs.stderr


def test_the_apis_serving_statistics_reach_the_postgresql_backed_server(stack: Stack) -> None:
    customer = {
        "gender": "Female", "SeniorCitizen": 0, "Partner": "Yes", "Dependents": "No",
        "tenure": 1, "PhoneService": "No", "MultipleLines": "No phone service",
        "InternetService": "DSL", "OnlineSecurity": "No", "OnlineBackup": "Yes",
        "DeviceProtection": "No", "TechSupport": "No", "StreamingTV": "No",
        "StreamingMovies": "No", "Contract": "Month-to-month", "PaperlessBilling": "Yes",
        "PaymentMethod": "Electronic check", "MonthlyCharges": 29.85, "TotalCharges": 29.85,
    }  # fmt: skip
    for _ in range(5):
        r = requests.post(f"{stack.api}/predict", json=customer, timeout=30)
        assert r.status_code == 200, r.text[:300]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = _psql(
            stack,
            "SELECT count(*) FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = 'churn-serving' AND m.key LIKE 'requests%'",
        )
        if int(count or 0) > 0:
            return
        time.sleep(3)
    pytest.fail("no serving statistics of the API reached PostgreSQL within 120 s")


_OLD_SCHEMA = """
import os, sys
sys.path.insert(0, "/opt/churn-mlflow")
from alembic import command
from mlflow.store.db.utils import (
    _get_alembic_config, _get_latest_schema_revision, _get_schema_version,
    create_sqlalchemy_engine,
)
from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
import start

uri = os.environ["MLFLOW_BACKEND_STORE_URI"].rsplit("/", 1)[0] + "/legacy"
engine = create_sqlalchemy_engine(uri)
InitialBase.metadata.create_all(engine)
config = _get_alembic_config(uri)
with engine.begin() as connection:
    config.attributes["connection"] = connection
    command.upgrade(config, "451aebb31d03")
before = _get_schema_version(engine)
upgraded = start.upgrade_schema_if_behind(uri)
print(before, upgraded, _get_schema_version(engine) == _get_latest_schema_revision(),
      start.upgrade_schema_if_behind(uri))
"""


def test_an_older_schema_is_upgraded_when_mlflow_starts(stack: Stack) -> None:
    _psql(stack, "CREATE DATABASE legacy")
    out = stack.exec("mlflow", "python3", "-c", _OLD_SCHEMA).split()
    assert out == ["451aebb31d03", "True", "True", "False"]
