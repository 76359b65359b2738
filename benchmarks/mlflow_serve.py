"""Run `mlflow models serve` on the MLflow-logged v2 model, for the same load as our API.

The model is the one the v2 training run logged (a scikit-learn Pipeline: the preprocessor
and the HistGradientBoosting classifier, ``pyfunc_predict_fn="predict_proba"``). It is found
through the run record ``models/model_v2.run.json`` (`churn.model_record`): its registered
model and version, else its run id, in the local store ``sqlite:///<root>/mlruns/mlflow.db``.
It is served with ``--env-manager local`` from the running Python environment (uvicorn must
be on PATH: the environment's ``bin`` folder is put first), on a free port of 127.0.0.1, in
its own process group so that stopping it stops its uvicorn child too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from churn.model_record import RecordError, read_record, read_run, run_path

__all__ = [
    "MlflowModel",
    "MlflowServeError",
    "find_model",
    "free_port",
    "group_rss_mib",
    "serve_command",
    "serving",
]

#: MLflow's liveness path (200 once the model is loaded).
PING_PATH = "/ping"


class MlflowServeError(RuntimeError):
    """The model cannot be found, or the server did not come up."""


@dataclass(frozen=True)
class MlflowModel:
    """Where the MLflow-logged model of one version is, and how to name it to MLflow."""

    version: str
    uri: str
    tracking_uri: str
    run_id: str | None


def find_model(root: Path, version: str = "v2") -> MlflowModel:
    """Return the MLflow model of ``version`` from its metadata record and the local store.

    Raises:
        MlflowServeError: no model record, no run record with MLflow facts, or no local store.

    """
    models = root / "models"
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
        uri = f"models:/{name}/{number}"
    elif run_id:
        uri = f"runs:/{run_id}/model"
    else:
        raise MlflowServeError(f"{meta_path}: the 'mlflow' record names no model nor run")
    store = (root / "mlruns" / "mlflow.db").resolve()
    if not store.is_file():
        raise MlflowServeError(f"{store}: no local MLflow store (run `nox -s train`)")
    return MlflowModel(version, uri, f"sqlite:///{store}", run_id)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def group_rss_mib(pgid: int) -> float | None:
    """Return the resident memory of every process in group ``pgid``, in MiB (Linux /proc)."""
    total_kib = 0
    found = False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # fields: state, ppid, pgrp, ...
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
                found = True
    return round(total_kib / 1024, 1) if found else None


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - 127.0.0.1 only
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class RunningServer:
    """A started `mlflow models serve`: its URL, process and the seconds it took to answer."""

    url: str
    process: subprocess.Popen[bytes]
    ready_s: float
    command: list[str]


@contextlib.contextmanager
def serving(
    model: MlflowModel, log_file: Path, *, workers: int = 1, timeout_s: float = 240.0
) -> Iterator[RunningServer]:
    """Start `mlflow models serve` for ``model``, wait until it answers, stop it on exit.

    Raises:
        MlflowServeError: it exited or did not answer ``/ping`` within ``timeout_s``
            (the last lines of its log are in the message).

    """
    bin_dir = Path(sys.executable).parent
    mlflow_bin = bin_dir / "mlflow"
    if not mlflow_bin.exists():
        raise MlflowServeError(f"{mlflow_bin} is missing: MLflow is not installed here")
    port = free_port()
    cmd = serve_command(str(mlflow_bin), model.uri, port, workers)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": model.tracking_uri,
    }
    log_file.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        while not _ping(url + PING_PATH):
            if process.poll() is not None or time.monotonic() - started > timeout_s:
                tail = log_file.read_text(errors="replace").splitlines()[-15:]
                state = (
                    f"exited with {process.returncode}"
                    if process.poll() is not None
                    else f"did not answer within {timeout_s:.0f} s"
                )
                raise MlflowServeError(
                    f"`mlflow models serve` {state}; last lines of {log_file}:\n" + "\n".join(tail)
                )
            time.sleep(0.5)
        yield RunningServer(url, process, time.monotonic() - started, cmd)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group (the group we created for it), politely first."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    # uvicorn may outlive the `mlflow` parent for a moment: make sure the group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
