"""The main job retrains when the models' runs cannot be shown by the local MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from churn.config import ArtifactPaths, ModelFiles
from churn_ops.artifacts import missing_runs, model_run_ids


def _model(root: Path, version: str, sha: str, run: dict[str, object] | None) -> None:
    models = ArtifactPaths(root).models
    models.mkdir(exist_ok=True)
    record = {"version": version, "artifacts": {"model": {"sha256": sha}}}
    ModelFiles(models).record(version).write_text(json.dumps(record))
    ModelFiles(models).compiled(version).write_text("{}")
    if run is not None:
        ModelFiles(models).run_record(version).write_text(json.dumps(run))


def test_run_ids_come_from_run_records_that_match_their_model(tmp_path: Path) -> None:
    _model(tmp_path, "v1", "aa", {"model_sha256": "aa", "mlflow": {"run_id": "r1"}})
    _model(tmp_path, "v2", "bb", {"model_sha256": "old", "mlflow": {"run_id": "r2"}})
    _model(tmp_path, "v3", "cc", None)
    assert model_run_ids(tmp_path) == ["r1", "no-run-record:model_v2", "no-run-record:model_v3"]


def test_pulled_models_without_run_records_count_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _model(tmp_path, "v1", "aa", None)
    assert missing_runs(tmp_path) == ["no-run-record:model_v1"]


def test_a_found_run_is_remembered_for_that_store_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check opens MLflow's store once; a store made again is checked again."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}")
    run = client.create_run(client.create_experiment("e")).info.run_id
    _model(tmp_path, "v1", "aa", {"model_sha256": "aa", "mlflow": {"run_id": run}})
    assert missing_runs(tmp_path) == []
    assert (tmp_path / ".nox" / "runs-checked.json").is_file()

    class Unopenable:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the store was opened again")

    with monkeypatch.context() as patched:
        patched.setattr("mlflow.MlflowClient", Unopenable)
        assert missing_runs(tmp_path) == []  # the same store file: remembered

    # `down -- --volumes`, then a new, empty store in its place: another file. Checked in a
    # process of its own, as `nox -s build` does (MLflow keeps one engine per store address).
    fresh = tmp_path / "fresh.db"
    MlflowClient(tracking_uri=f"sqlite:///{fresh.as_posix()}").create_experiment("e")
    fresh.replace(db)
    done = subprocess.run(
        [sys.executable, "-m", "churn_ops.artifacts", "missing-runs", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [run]
