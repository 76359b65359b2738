"""Run `bentoml serve` on the v2 pickles, from a venv of its own, for the same load as our API.

BentoML 1.4's pins conflict with the dev lock's (OpenTelemetry), so it has a lock of its own,
``requirements/bentoml.lock`` (`churn_ops.devenv.compile_locks`), installed by the bench into
``.nox/bentoml`` and reused while the lock and the Python are unchanged (`ensure_env`). Where
that venv cannot be made (offline, no uv nor pip), the comparison is not measured, and says why.

The Service is ``benchmarks/bento/service.py`` (BentoML's class-based Service). It is served
on a free port of 127.0.0.1 in its own process group (`benchmarks.local_server`), with the
same number of worker processes as `mlflow models serve`, each on one compute thread
(`local_server.ONE_THREAD`, as MLflow's), BentoML's usage tracking off and its home (model
and bento stores, logs) in the bench's temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.local_server import (
    ONE_THREAD,
    RunningServer,
    ServerError,
    free_port,
    log_tail,
    running,
)
from benchmarks.pickles import Pickles
from churn_ops import devenv

__all__ = [
    "ENV_DIR",
    "NO_TRACKING",
    "BentoEnv",
    "BentoServeError",
    "ensure_env",
    "install_commands",
    "serve_command",
    "serving",
]

#: The venv of BentoML, relative to the project root (beside nox's `.nox/dev`).
ENV_DIR = Path(".nox") / "bentoml"
#: The folder of the Service's source, and its import path for `bentoml serve`.
SERVICE_DIR = Path(__file__).resolve().with_name("bento")
SERVICE = "service:ChurnClassifier"
#: BentoML's readiness path (200 once every worker has loaded the model).
READY_PATH = "/readyz"
#: The Service's prediction path (its `predict` method).
PREDICT_PATH = "/predict"
#: The project sends no telemetry: BentoML's usage tracking off (and the general switch).
NO_TRACKING = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "true"}
#: Seconds an install may take (a first one downloads about 300 MB of wheels).
INSTALL_TIMEOUT_S = 900.0

Runner = Callable[..., subprocess.CompletedProcess[str]]


class BentoServeError(ServerError):
    """The BentoML venv cannot be made, or BentoML is missing from it."""


@dataclass(frozen=True)
class BentoEnv:
    """BentoML's venv, and whether it was reused as it was."""

    env_dir: Path
    reused: bool

    @property
    def bentoml_bin(self) -> Path:
        """The `bentoml` command of the venv."""
        return self.env_dir / "bin" / "bentoml"


def wanted(root: Path, python_version: str | None = None) -> str:
    """Return what the venv must have been installed from: the lock's digest and the Python."""
    version = python_version or platform.python_version()
    return f"{devenv.fingerprint(root, (devenv.BENTOML_LOCK,))} python {version}"


def install_commands(env_dir: Path, lock: Path, python: str, uv: str | None) -> list[list[str]]:
    """Return the commands that make ``env_dir`` hold exactly ``lock`` (hashes checked).

    With uv: a fresh venv, then ``uv pip sync``; without: ``venv`` and pip.
    """
    env_python = str(env_dir / "bin" / "python")
    if uv:
        return [
            [uv, "venv", "--quiet", "--clear", "--python", python, str(env_dir)],
            [uv, "pip", "sync", "--quiet", "--require-hashes", "--python", env_python, str(lock)],
        ]
    return [
        [python, "-m", "venv", "--clear", str(env_dir)],
        [env_python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)],
    ]


def ensure_env(
    root: Path,
    log_file: Path,
    *,
    python: str = sys.executable,
    uv: str | None = None,
    run: Runner = subprocess.run,
) -> BentoEnv:
    """Return BentoML's venv, installing the lock first unless it holds it already.

    ``uv`` defaults to the one nox uses (`churn_ops.devenv.uv_binary`). The install's output
    goes to ``log_file``.

    Raises:
        BentoServeError: an install command failed (offline?) or gave no `bentoml`.

    """
    env = BentoEnv(root / ENV_DIR, reused=True)
    digest = wanted(root)
    if devenv.installed_from(env.env_dir) == digest and env.bentoml_bin.exists():
        return env
    lock = root / devenv.BENTOML_LOCK
    log_file.parent.mkdir(parents=True, exist_ok=True)
    (env.env_dir / devenv.STAMP).unlink(missing_ok=True)
    with log_file.open("w", encoding="utf-8") as log:
        for command in install_commands(env.env_dir, lock, python, uv or devenv.uv_binary()):
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            try:
                done = run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                    env={"UV_COMPILE_BYTECODE": "1", **os.environ},
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise BentoServeError(f"cannot make {ENV_DIR} ({exc})") from None
            if done.returncode != 0:
                log.flush()
                last = (log_tail(log_file, 1) or f"exit {done.returncode}").strip()
                raise BentoServeError(
                    f"cannot install {devenv.BENTOML_LOCK} into {ENV_DIR} (offline?): {last}"
                )
    if not env.bentoml_bin.exists():
        raise BentoServeError(f"{env.bentoml_bin} is missing after installing the lock")
    devenv.mark_installed(env.env_dir, digest)
    return BentoEnv(env.env_dir, reused=False)


def serve_command(bentoml_bin: str, port: int, files: Pickles, workers: int = 1) -> list[str]:
    """Return the `bentoml serve` command line of the Service (127.0.0.1, absolute paths)."""
    return [
        bentoml_bin,
        "serve",
        SERVICE,
        "--working-dir",
        str(SERVICE_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--arg",
        f"model={files.model.resolve()}",
        "--arg",
        f"preprocessor={files.preprocessor.resolve()}",
        "--arg",
        f"workers={workers}",
    ]


@contextlib.contextmanager
def serving(
    env: BentoEnv,
    files: Pickles,
    log_file: Path,
    home: Path,
    *,
    workers: int = 1,
    timeout_s: float = 240.0,
) -> Iterator[RunningServer]:
    """Start `bentoml serve` on ``files``, wait until it is ready, stop it on exit.

    ``home`` is BENTOML_HOME (its stores and logs): a temporary folder of the bench.

    Raises:
        ServerError: it exited or was not ready within ``timeout_s``.

    """
    port = free_port()
    with running(
        "`bentoml serve`",
        serve_command(str(env.bentoml_bin), port, files, workers),
        port=port,
        ready_path=READY_PATH,
        log_file=log_file,
        env={**ONE_THREAD, **NO_TRACKING, "BENTOML_HOME": str(home)},
        cwd=SERVICE_DIR,
        timeout_s=timeout_s,
    ) as server:
        yield server
