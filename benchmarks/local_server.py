"""Servers the bench starts on this machine beside the API: `mlflow models serve`, `bentoml serve`.

Each runs on a free port of 127.0.0.1 in a session of its own. Its processes are that session's
process group and every process descended from it (uvicorn's workers stay in the group;
BentoML starts its Service workers in sessions of their own): their CPU time and memory are
the server's (`benchmarks.procstat.server_pids`), and stopping it stops them all, also when
the bench fails. Its output goes to a log file whose last lines explain a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procstat
from churn_ops.shell import free_port

__all__ = [
    "ONE_THREAD",
    "RunningServer",
    "ServerError",
    "answers",
    "free_port",
    "log_tail",
    "running",
    "stop",
]

#: Every worker process of a comparison server computes on one thread (OpenMP, BLAS), so that
#: the worker count is its parallelism, the same for each. With OpenMP's default of a thread
#: per core, scikit-learn's gradient boosting under 16 connections on a busy 2-core machine
#: spent 64 ms of CPU per request in BentoML (8.8 req/s) against 8.6 ms (99 req/s) with one.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ServerError(RuntimeError):
    """A server cannot be made ready: not installed, no model, exited or never answered."""


@dataclass(frozen=True)
class RunningServer:
    """A started server: its base URL, process, the seconds it took to answer, its command."""

    url: str
    process: subprocess.Popen[bytes]
    ready_s: float
    command: list[str]

    def pids(self) -> list[int]:
        """Return the server's running processes: its group and its descendants."""
        return procstat.server_pids(self.process.pid)


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Tell whether ``url`` answers 200 to a GET now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    """Return the last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running(
    what: str,
    command: list[str],
    *,
    port: int,
    ready_path: str,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 240.0,
    ready: Callable[[str], bool] = answers,
) -> Iterator[RunningServer]:
    """Start ``command`` (which listens on 127.0.0.1:``port``), yield it once ready, stop it.

    ``env`` is added to this process's environment. Ready means ``ready_path`` answers 200.

    Raises:
        ServerError: it exited, or did not answer within ``timeout_s`` (the message names
            ``what`` and holds the last lines of ``log_file``).

    """
    url = f"http://127.0.0.1:{port}"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    try:
        while not ready(url + ready_path):
            if process.poll() is not None or time.monotonic() - started > timeout_s:
                state = (
                    f"exited with {process.returncode}"
                    if process.poll() is not None
                    else f"did not answer within {timeout_s:.0f} s"
                )
                raise ServerError(
                    f"{what} {state}; last lines of {log_file}:\n{log_tail(log_file)}"
                )
            time.sleep(0.5)
        yield RunningServer(url, process, time.monotonic() - started, command)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """Stop the server ``process`` leads: SIGTERM to its group, SIGKILL after ``grace_s``.

    Its descendants in other sessions are asked to stop by their parent (BentoML's arbiter
    stops its workers); any still running once the leader is gone are killed.
    """
    others = [pid for pid in procstat.server_pids(process.pid) if pid != process.pid]
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    # Workers may outlive their parent for a moment: make sure the group and they are gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in others:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
