from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchmarks import mlflow_serve, pickles

from churn.model_record import (
    ARTIFACT_KINDS,
    ArtifactRef,
    ModelRecord,
    RunRecord,
    file_sha256,
    write_record,
    write_run,
)

from .conftest import write_pickles


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


def test_the_server_sends_no_telemetry_and_finds_uvicorn_first() -> None:
    logged = mlflow_serve.MlflowModel("v2", "models:/m/1", "sqlite:////x/mlflow.db", "abc")
    env = mlflow_serve.server_env(logged, Path("/venv/bin"), "/usr/bin")
    assert env["PATH"].split(":")[0] == "/venv/bin"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["DO_NOT_TRACK"] == "true"
    assert env["OMP_NUM_THREADS"] == "1"  # the worker count is the parallelism
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////x/mlflow.db"
    built = mlflow_serve.MlflowModel("v2", "/tmp/model", None, None, "built")
    assert "MLFLOW_TRACKING_URI" not in mlflow_serve.server_env(built, Path("/b"), "")


@pytest.mark.slow  # MLflow: import, save and load a model (seconds)
def test_without_a_store_the_model_is_built_from_the_dvc_pickles(tmp_path: Path) -> None:
    import mlflow.pyfunc

    # The record names a registered model, but `nox -s down -- --volumes` deleted mlruns/.
    root = tmp_path / "project"
    records = _registered_then_lost(root, store=False)
    work = tmp_path / "work"
    work.mkdir()
    model = mlflow_serve.comparison_model(root, "v2", work, records)
    assert model.source.startswith("built from the DVC artifacts")
    assert "no local MLflow store" in model.source
    assert model.tracking_uri is None
    assert (Path(model.uri) / "MLmodel").is_file() and Path(model.uri).parent == work
    frame = mlflow_serve.example_frame(records[:20])
    served = mlflow.pyfunc.load_model(model.uri).predict(frame)
    expected = pickles.load_pipeline(root, "v2").predict_proba(frame)
    assert abs(served - expected).max() == 0.0  # predict_proba, the same fitted pipeline


@pytest.mark.slow  # MLflow: a new SQLite store, then a model built and saved (seconds)
def test_a_registered_model_the_store_does_not_know_is_built_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root = tmp_path / "project"
    records = _registered_then_lost(root, store=True)  # a store made anew: the stack's first start
    model = mlflow_serve.comparison_model(root, "v2", tmp_path, records)
    assert "models:/churn-model-v2/1 cannot be read" in model.source
    assert "churn-model-v2 not found" in model.source  # asked of the project's own store
    assert (Path(model.uri) / "MLmodel").is_file()
    assert list(cwd.iterdir()) == []  # no default store made in the working folder


def test_pickles_that_are_not_their_record_s_files_are_refused(tmp_path: Path) -> None:
    write_pickles(tmp_path)
    assert pickles.find(tmp_path, "v2").model == tmp_path / "models" / "model_v2.pkl"
    (tmp_path / "models" / "model_v2.pkl").write_bytes(b"another model")
    with pytest.raises(pickles.ArtifactError, match="sha256"):
        pickles.find(tmp_path, "v2")
    (tmp_path / "models" / "model_v2.pkl").unlink()
    with pytest.raises(pickles.ArtifactError, match="missing"):
        pickles.find(tmp_path, "v2")
    with pytest.raises(pickles.ArtifactError, match="cannot read"):
        pickles.find(tmp_path, "v1")


def _registered_then_lost(root: Path, store: bool) -> list[dict[str, object]]:
    """Write a project whose v2 run record names churn-model-v2/1, which no store holds."""
    records = write_pickles(root)
    model = pickles.find(root, "v2").model
    record = {"registered_model": "churn-model-v2", "registered_version": "1"}
    run = RunRecord("v2", file_sha256(model), "2026-12-01T00:00:00Z", 1.0, mlflow=record)
    write_run(root / "models", run)
    if store:
        (root / "mlruns").mkdir()
        (root / "mlruns" / "mlflow.db").write_bytes(b"")
    return records
