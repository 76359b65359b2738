"""A real MLflow server on 127.0.0.1 for the lifecycle tests, and a registered model in it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

#: Seconds the server may take to start (database migrations on a busy 2-core machine).
START_TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a local http URL
            return True
    except OSError:
        return False


@dataclass
class MlflowServer:
    """A running `mlflow server` process and where it listens."""

    url: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again, on the same port and store) and wait until it answers."""
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
            ],  # fmt: skip
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"{self.url}/health"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"the MLflow server did not start:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server process (and its workers)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server with a SQLite store and proxied artifacts, on a free local port."""
    port = _free_port()
    server = MlflowServer(f"http://127.0.0.1:{port}", port, tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


@dataclass
class Registered:
    """A registered model of the test server holding the fixture's v1 and v2."""

    name: str
    client: object
    register: Callable[[str], str]


@pytest.fixture
def registered(mlflow_server: MlflowServer, artifact_root: Path, tmp_path: Path) -> Registered:
    """A new registered model (unique name) with v1 then v2 registered (registry 1 and 2).

    ``register(version)`` registers that version again from a fresh run and returns its
    registry number.
    """
    from mlflow import MlflowClient

    from churn.mlflow_store import register_serving_version
    from churn.model_record import read_record, record_path

    name = f"churn-test-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.create_experiment(name)
    root = Path(shutil.copytree(artifact_root, tmp_path / "root"))

    def register(version: str) -> str:
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        record = read_record(root / "models", version)
        path = record_path(root / "models", version)
        tracking = {"tracking_uri": mlflow_server.url, "run_id": run.info.run_id}
        return register_serving_version(root, record, path, tracking, name=name)

    register("v1")
    register("v2")
    return Registered(name, client, register)


@pytest.fixture
def customer() -> dict[str, object]:
    """A valid customer object (a fresh copy each time)."""
    from churn.api.openapi import EXAMPLE_CUSTOMER

    return dict(EXAMPLE_CUSTOMER)
