"""MLflow tracking against a real temporary store: runs, metrics, registry, served model."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from churn import dataset, mlflow_store
from churn.features import features
from churn.params import ArtifactPaths, PipelineParams
from churn.train import train


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
def test_training_logs_runs_and_registers_both_versions(
    small_project: ArtifactPaths,
    params: PipelineParams,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'store' / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "churn-test")
    records = {v: train(small_project, params, v) for v in ("v1", "v2")}

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("churn-test")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "store" / "artifacts").as_uri()
    for version, record in records.items():
        tracking = record["mlflow"]
        assert tracking["tracking_uri"] == uri
        assert tracking["experiment"] == "churn-test"
        run = client.get_run(tracking["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.metrics == pytest.approx(record["metrics"])
        assert run.data.params["algorithm"] == record["algorithm"]
        assert run.data.tags["model_version"] == version
        assert run.data.tags["data_sha256"] == record["training_data_sha256"]
        files = {a.path for a in client.list_artifacts(run.info.run_id, "files")}
        assert files == {
            f"files/model_{version}.pkl",
            "files/preprocessor.pkl",
            "files/label_encoder.pkl",
        }
        registered = client.get_model_version(
            tracking["registered_model"], tracking["registered_version"]
        )
        assert registered.name == f"churn-model-{version}"
        assert registered.run_id == run.info.run_id
        on_disk = json.loads(small_project.metadata(version).read_text(encoding="utf-8"))
        assert on_disk == record

    # The registered v2 serves raw customer records (blank TotalCharges included) and agrees
    # with the joblib artifacts the API loads.
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/churn-model-v2/1")
    rows = features(dataset.load_csv(small_project.test_csv)).head(4).copy()
    rows.loc[rows.index[0], "TotalCharges"] = np.nan
    expected = joblib.load(small_project.model("v2")).predict_proba(
        joblib.load(small_project.preprocessor).transform(rows)
    )
    np.testing.assert_allclose(np.asarray(served.predict(rows)), expected, rtol=1e-12)
