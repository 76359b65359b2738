"""The bench's ceiling: a trivial Flask ``GET /health`` on stock Waitress, 4 worker threads.

The API's own ``/health`` is judged against it in the same run (issue 18: at least 0.8x its
requests/s). It is the same Flask and Waitress as the API's: when the API runs in a container,
the trivial app runs in a container of the same image, published on 127.0.0.1 the same way
(through docker-proxy); otherwise it runs as a local process of the bench's Python.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks.local_server import answers

__all__ = ["APP_SOURCE", "THREADS", "Ceiling", "serving"]

#: Waitress worker threads of the trivial app (Waitress's default, and the issue's reference).
THREADS = 4
#: The whole trivial app, run with ``python -c`` (argv: host, port, threads).
APP_SOURCE = """
import sys
from flask import Flask, jsonify
from waitress import serve

app = Flask("ceiling")


@app.get("/health")
def health():
    return jsonify({"status": "ok"})


serve(app, host=sys.argv[1], port=int(sys.argv[2]), threads=int(sys.argv[3]), _quiet=True)
"""
CONTAINER_PORT = 8080


@dataclass(frozen=True)
class Ceiling:
    """A running trivial app: its base URL, the process to read CPU time from, where it runs."""

    url: str
    pid: int
    where: str


def _wait(url: str, alive: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers(url + "/health"):
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the trivial app at {url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def serving(port: int, image: str | None = None, timeout_s: float = 60.0) -> Iterator[Ceiling]:
    """Run the trivial app on 127.0.0.1:``port`` (in a container of ``image`` if given).

    Raises:
        RuntimeError: it did not answer ``/health`` within ``timeout_s``.

    """
    url = f"http://127.0.0.1:{port}"
    if image is None:
        cmd = [sys.executable, "-c", APP_SOURCE, "127.0.0.1", str(port), str(THREADS)]
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        try:
            _wait(url, lambda: process.poll() is None, timeout_s)
            yield Ceiling(url, process.pid, f"local process, Waitress {THREADS} threads")
        finally:
            process.terminate()
            process.wait(timeout=10)
        return
    name = f"churn-bench-ceiling-{port}"
    run = [
        "docker", "run", "-d", "--rm", "--name", name,
        "-p", f"127.0.0.1:{port}:{CONTAINER_PORT}", "--entrypoint", "python3", image,
        "-c", APP_SOURCE, "0.0.0.0", str(CONTAINER_PORT), str(THREADS),
    ]  # fmt: skip
    started = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    if started.returncode != 0:
        raise RuntimeError(f"cannot start the trivial app in {image}: {started.stderr.strip()}")
    try:
        inspect = ["docker", "inspect", "--format", "{{.State.Pid}}", name]
        pid = subprocess.run(inspect, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
        _wait(url, lambda: True, timeout_s)
        yield Ceiling(
            url, int(pid.stdout.strip() or 0), f"container of {image}, Waitress {THREADS} threads"
        )
    finally:
        remove = ["docker", "rm", "-f", "-v", name]
        subprocess.run(remove, capture_output=True, timeout=60, check=False)  # noqa: S603, S607
