"""Run `mlflow models serve` on the MLflow-logged v2 model, for the same load as our API.

The model is the one the v2 training run logged (a scikit-learn Pipeline: the preprocessor
and the HistGradientBoosting classifier, ``pyfunc_predict_fn="predict_proba"``). It is found
through the run record ``models/model_v2.run.json`` (`churn.model_record`): its registered
model and version, else its run id, in the local store ``sqlite:///<root>/mlruns/mlflow.db``.
When that store cannot give it (no run record, no store, or ``nox -s down -- --volumes``
deleted ``mlruns/``), the same Pipeline is built from the DVC-tracked pickles and saved as an
MLflow model folder (`build_from_artifacts`), which is served instead.

It is served with ``--env-manager local`` from the running Python environment (uvicorn must
be on PATH: the environment's ``bin`` folder is put first), on a free port of 127.0.0.1, in
its own process group (`benchmarks.local_server`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import pickles
from benchmarks.local_server import ONE_THREAD, RunningServer, ServerError, free_port, running
from churn.config import ArtifactPaths
from churn.model_record import RecordError, read_record, read_run, run_path
from churn.schema import FEATURE_COLUMNS, NUMERIC

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MlflowModel",
    "MlflowServeError",
    "build_from_artifacts",
    "comparison_model",
    "check_model",
    "example_frame",
    "find_model",
    "serve_command",
    "serving",
]

#: MLflow's liveness path (200 once the model is loaded).
PING_PATH = "/ping"
#: Rows of the input example saved with a model built from the artifacts (as training logs).
EXAMPLE_ROWS = 5


class MlflowServeError(ServerError):
    """The model cannot be found or built, or the server did not come up."""


@dataclass(frozen=True)
class MlflowModel:
    """Where the MLflow model of one version is, and how to name it to MLflow."""

    version: str
    uri: str
    tracking_uri: str | None
    run_id: str | None
    #: Where it came from: "registry", "run", or "built from the DVC artifacts (<why>)".
    source: str = "registry"


def find_model(root: Path, version: str = "v2") -> MlflowModel:
    """Return the MLflow model of ``version`` from its metadata record and the local store.

    Raises:
        MlflowServeError: no model record, no run record with MLflow facts, or no local store.

    """
    models = ArtifactPaths(root).models
    try:
        run = read_run(models, read_record(models, version))
    except RecordError as exc:
        raise MlflowServeError(f"cannot read the model record ({exc})") from None
    meta_path = run_path(models, version)
    if run is None or not run.mlflow:
        raise MlflowServeError(f"{meta_path}: no run record with MLflow facts (trained elsewhere?)")
    record = run.mlflow
    name, number = record.get("registered_model"), record.get("registered_version")
    run_id = record.get("run_id") or None
    if name and number:
        uri, source = f"models:/{name}/{number}", "registry"
    elif run_id:
        uri, source = f"runs:/{run_id}/model", "run"
    else:
        raise MlflowServeError(f"{meta_path}: the 'mlflow' record names no model nor run")
    store = (root / "mlruns" / "mlflow.db").resolve()
    if not store.is_file():
        raise MlflowServeError(f"{store}: no local MLflow store (run `nox -s train`)")
    return MlflowModel(version, uri, f"sqlite:///{store}", run_id, source)


def check_model(model: MlflowModel, scratch: Path) -> None:
    """Make sure the store can give ``model``'s files: fetch its ``MLmodel`` into ``scratch``.

    A registered version is looked up with a client of the model's own store: MLflow's
    ``models:/`` resolution would ask the default registry (creating ``mlflow.db`` in the
    working folder). The environment names the store too, for what MLflow resolves itself.

    Raises:
        MlflowServeError: the registry or the run does not know it, or its files are gone.

    """
    from unittest import mock

    import mlflow.artifacts
    from mlflow import MlflowClient

    store = model.tracking_uri
    where = {"MLFLOW_TRACKING_URI": store or "", "MLFLOW_REGISTRY_URI": store or ""}
    try:
        with mock.patch.dict(os.environ, where):
            uri = model.uri
            if uri.startswith("models:/"):
                name, number = uri.removeprefix("models:/").split("/", 1)
                client = MlflowClient(tracking_uri=store, registry_uri=store)
                uri = client.get_model_version_download_uri(name, number).rstrip("/")
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri}/MLmodel",
                dst_path=str(scratch),
                tracking_uri=store,
                registry_uri=store,
            )
    except Exception as exc:  # noqa: BLE001 - MlflowException, OSError, ...: all mean "not here"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MlflowServeError(f"{model.uri} cannot be read from {store}: {first}") from None
    if not Path(local).is_file():
        raise MlflowServeError(f"{model.uri}: no MLmodel file in {store}")


def example_frame(records: Sequence[dict[str, object]]) -> pd.DataFrame:
    """Return records as the model's input frame: the 19 feature columns, typed as in training."""
    import pandas as pd

    frame = pd.DataFrame([{name: r[name] for name in FEATURE_COLUMNS} for r in records])
    for name, spec in NUMERIC.items():
        frame[name] = frame[name].astype("int64" if spec.integer else "float64")
    return frame


def build_from_artifacts(
    root: Path, version: str, dest: Path, records: Sequence[dict[str, object]], why: str
) -> MlflowModel:
    """Save the version's Pipeline, built from its pickles, as an MLflow model folder ``dest``.

    Saved as training logs it (`churn.mlflow_store.sklearn_model_options`: signature, input
    example from ``records``, ``predict_proba``), so `mlflow models serve` answers the same.

    Raises:
        ArtifactError: no model record, or its pickles are missing or changed.

    """
    import mlflow.sklearn

    from churn.mlflow_store import sklearn_model_options

    pipeline = pickles.load_pipeline(root, version)
    example = example_frame(records[:EXAMPLE_ROWS])
    mlflow.sklearn.save_model(pipeline, str(dest), **sklearn_model_options(pipeline, example))
    return MlflowModel(version, str(dest), None, None, f"built from the DVC artifacts ({why})")


def comparison_model(
    root: Path, version: str, work: Path, records: Sequence[dict[str, object]]
) -> MlflowModel:
    """Return the model to serve: the logged one if the store has it, else one built in ``work``.

    Raises:
        ArtifactError: neither the store nor the DVC artifacts can give the model.

    """
    try:
        model = find_model(root, version)
        check_model(model, work / f"mlflow-check-{version}")
        return model
    except MlflowServeError as exc:
        why = str(exc)
    return build_from_artifacts(root, version, work / f"mlflow-model-{version}", records, why)


def serve_command(mlflow_bin: str, model_uri: str, port: int, workers: int = 1) -> list[str]:
    """Return the `mlflow models serve` command line (127.0.0.1, local environment)."""
    return [
        mlflow_bin,
        "models",
        "serve",
        "--model-uri",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def server_env(model: MlflowModel, bin_dir: Path, path: str) -> dict[str, str]:
    """Return what the server's environment adds: PATH, the store, one thread, no telemetry."""
    env = {
        **ONE_THREAD,
        "PATH": f"{bin_dir}{os.pathsep}{path}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    if model.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = model.tracking_uri
    return env


@contextlib.contextmanager
def serving(
    model: MlflowModel, log_file: Path, *, workers: int = 1, timeout_s: float = 240.0
) -> Iterator[RunningServer]:
    """Start `mlflow models serve` for ``model``, wait until it answers, stop it on exit.

    Raises:
        MlflowServeError: MLflow is not installed here.
        ServerError: it exited or did not answer ``/ping`` within ``timeout_s``.

    """
    bin_dir = Path(sys.executable).parent
    mlflow_bin = bin_dir / "mlflow"
    if not mlflow_bin.exists():
        raise MlflowServeError(f"{mlflow_bin} is missing: MLflow is not installed here")
    port = free_port()
    with running(
        "`mlflow models serve`",
        serve_command(str(mlflow_bin), model.uri, port, workers),
        port=port,
        ready_path=PING_PATH,
        log_file=log_file,
        env=server_env(model, bin_dir, os.environ.get("PATH", "")),
        cwd=log_file.parent,
        timeout_s=timeout_s,
    ) as server:
        yield server
