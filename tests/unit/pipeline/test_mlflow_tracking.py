"""Where training runs go (what a run logs is tested on a real run in test_dvc_pipeline)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from churn import mlflow_store


def test_default_store_is_sqlite_under_mlruns_with_artifacts_beside_it(tmp_path: Path) -> None:
    target = mlflow_store.resolve_target(tmp_path, env={})
    assert target.tracking_uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlruns/mlflow.db"
    assert target.experiment == "churn-prediction"
    assert target.artifact_location == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()


def test_environment_chooses_the_server_and_experiment(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://localhost:5001", "MLFLOW_EXPERIMENT_NAME": "exp"}
    target = mlflow_store.resolve_target(tmp_path, env=env)
    assert (target.tracking_uri, target.experiment) == ("http://localhost:5001", "exp")
    assert target.artifact_location is None  # the server decides where artifacts go


def test_an_unreachable_server_fails_fast_with_advice() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="not reachable.*unset MLFLOW_TRACKING_URI"):
        mlflow_store._check_server(f"http://127.0.0.1:{port}")
    assert time.perf_counter() - started < mlflow_store.SERVER_PROBE_TIMEOUT + 1


@pytest.mark.slow
def test_local_training_refuses_an_experiment_whose_artifacts_a_server_proxies(
    tmp_path: Path,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    target = mlflow_store.resolve_target(tmp_path, env={})
    (tmp_path / "mlruns").mkdir()
    MlflowClient(target.tracking_uri).create_experiment(
        target.experiment, artifact_location="mlflow-artifacts:/1"
    )
    mlflow.set_tracking_uri(target.tracking_uri)
    with pytest.raises(RuntimeError, match="created through an MLflow server"):
        mlflow_store._experiment_id(target)
