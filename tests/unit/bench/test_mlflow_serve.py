from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from benchmarks import mlflow_serve

from churn.model_record import (
    ARTIFACT_KINDS,
    ArtifactRef,
    ModelRecord,
    RunRecord,
    write_record,
    write_run,
)


def _project(tmp_path: Path, record: dict[str, Any] | None, store: bool = True) -> Path:
    models = tmp_path / "models"
    model = ArtifactRef("models/model_v2.pkl", "ab" * 32)
    refs = {kind: model for kind in ARTIFACT_KINDS}
    write_record(models, ModelRecord("v2", "HGB", {}, refs, "cd" * 32, {}))
    if record is not None:
        write_run(models, RunRecord("v2", model.sha256, "2026-12-01T00:00:00Z", 1.0, mlflow=record))
    if store:
        (tmp_path / "mlruns").mkdir()
        (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"")
    return tmp_path


def test_the_registered_model_is_preferred(tmp_path: Path) -> None:
    root = _project(
        tmp_path, {"run_id": "abc", "registered_model": "churn-model-v2", "registered_version": "3"}
    )
    model = mlflow_serve.find_model(root)
    assert model.uri == "models:/churn-model-v2/3"
    assert model.run_id == "abc"
    assert model.tracking_uri == f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"


def test_without_registration_the_run_s_model_is_used(tmp_path: Path) -> None:
    root = _project(tmp_path, {"run_id": "abc"})
    assert mlflow_serve.find_model(root).uri == "runs:/abc/model"


@pytest.mark.parametrize(
    ("record", "store", "message"),
    [
        (None, True, "no run record"),
        ({"experiment": "x"}, True, "names no model nor run"),
        ({"run_id": "abc"}, False, "no local MLflow store"),
    ],
)
def test_a_model_that_cannot_be_found_is_an_error(
    tmp_path: Path, record: dict[str, Any] | None, store: bool, message: str
) -> None:
    root = _project(tmp_path, record, store)
    with pytest.raises(mlflow_serve.MlflowServeError, match=message):
        mlflow_serve.find_model(root)


def test_a_missing_metadata_record_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(mlflow_serve.MlflowServeError, match="cannot read"):
        mlflow_serve.find_model(tmp_path)


def test_the_server_binds_to_loopback_in_the_local_environment() -> None:
    cmd = mlflow_serve.serve_command("/venv/bin/mlflow", "models:/m/1", 5123)
    assert cmd[:3] == ["/venv/bin/mlflow", "models", "serve"]
    pairs = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert pairs == {
        "--model-uri": "models:/m/1",
        "--env-manager": "local",
        "--host": "127.0.0.1",
        "--port": "5123",
        "--workers": "1",
    }


def test_a_free_port_can_be_bound() -> None:
    port = mlflow_serve.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_memory_of_a_process_group_is_summed() -> None:
    rss = mlflow_serve.group_rss_mib(os.getpgid(0))
    assert rss is not None and rss > 1
    assert mlflow_serve.group_rss_mib(2**22 + 7) is None  # beyond pid_max: no such group
