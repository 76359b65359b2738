"""Helpers of the reliability suite: its own Compose stack, docker calls, polling, figures.

The suite never touches the main stack (Compose project ``docker``, ports 5000/5001): it starts
its own project (``churn-reliability`` by default) from the images already built, on free ports
of 127.0.0.1, with its own network (``STACK_NETWORK``) and data folders in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from churn.api.openapi import EXAMPLE_CUSTOMER

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
AUTH_OVERRIDE = ROOT / "docker" / "docker-compose.auth.yml"
SERVICES = ("mlflow", "api")
CONTAINER_UID = 1000
#: Longest wait for anything to come back at all; figures are reported, not asserted.
RECOVERY_LIMIT = 120.0

#: Figures measured by the tests, printed at the end of the run and written as JSON.
FIGURES: dict[str, str] = {}


def figure(name: str, value: str) -> None:
    """Record one measured figure for the end-of-run summary."""
    FIGURES[name] = value


def image_ref(name: str) -> str:
    """Return the reference Compose uses for one of the project's images."""
    return f"{os.environ.get('IMAGE_PREFIX', '')}{name}:{os.environ.get('IMAGE_TAG') or 'latest'}"


def free_port() -> int:
    """Return a TCP port nothing listens on at the moment (on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(
    *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a docker command; return its result (raise on failure only with ``check``)."""
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return out


def compose_base() -> list[str]:
    """`docker compose` (v2) where it exists, else `docker-compose` (v1.29)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def inspect(container: str, template: str) -> str:
    """Return ``docker inspect --format template`` of a container ('' when it is gone)."""
    return docker("inspect", "--format", template, container).stdout.strip()


def health_of(container: str) -> str:
    """Return the container's health status, or its state when it has no healthcheck."""
    out = inspect(
        container, "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
    )
    state, _, health = out.partition(" ")
    return health or state or "missing"


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float = RECOVERY_LIMIT, every: float = 0.25
) -> float:
    """Poll ``probe`` until it returns True; return the seconds it took, or raise on timeout."""
    started = time.monotonic()
    while True:
        try:
            if probe():
                return time.monotonic() - started
        except (requests.RequestException, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def memory_bytes(container: str) -> int:
    """Return the container's memory use as `docker stats` reports it, in bytes."""
    out = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container, timeout=60)
    used = out.stdout.strip().split("/")[0].strip()
    units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2}
    for unit in sorted(units, key=len, reverse=True):
        if used.endswith(unit):
            return int(float(used[: -len(unit)]) * units[unit])
    raise AssertionError(f"cannot read the memory use of {container}: {out.stdout!r}")


def mib(n: float) -> str:
    """Format a byte count in MiB."""
    return f"{n / 1024**2:.1f} MiB"


@dataclass
class Stack:
    """The suite's own Compose project: its settings, and ways to drive and observe it."""

    project: str
    workdir: Path
    api_port: int
    mlflow_port: int
    compose: list[str] = field(default_factory=compose_base)
    extra_files: list[Path] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def mlruns_dir(self) -> Path:
        """The MLflow store of this stack (bind-mounted)."""
        return self.workdir / "mlruns"

    @property
    def logs_dir(self) -> Path:
        """The API's log folder of this stack (bind-mounted)."""
        return self.workdir / "logs"

    @property
    def api_url(self) -> str:
        """Base URL of this stack's API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        """Base URL of this stack's MLflow server."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def env(self) -> dict[str, str]:
        """The environment Compose (and `nox -s up`/`down`) run with for this stack."""
        return {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "STACK_NETWORK": self.project,
            "API_PORT": str(self.api_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "API_BIND": "127.0.0.1",
            "MLFLOW_BIND": "127.0.0.1",
            "MLRUNS_DIR": str(self.mlruns_dir),
            "MLRUNS_HOST_DIR": str(self.mlruns_dir),
            "LOGS_DIR": str(self.logs_dir),
            # Statistics every 2 s instead of 10 s: recovery shows sooner, tests stay short.
            "CHURN_STATS_INTERVAL": "2",
            **self.extra_env,
        }

    def prepare_dirs(self) -> None:
        """Create the data folders, writable by the containers' user (uid 1000)."""
        for path in (self.mlruns_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(path, CONTAINER_UID, CONTAINER_UID)
            else:
                path.chmod(0o777)

    def run(
        self, *args: str, timeout: float = 300, files: Sequence[Path] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Compose command on this project (never raises on a non-zero status)."""
        cmd = [*self.compose, "-p", self.project, "-f", str(COMPOSE_FILE)]
        for extra in self.extra_files if files is None else files:
            cmd += ["-f", str(extra)]
        return subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=timeout, env=self.env(),
            cwd=ROOT, check=False,
        )  # fmt: skip

    def container(self, service: str) -> str:
        """Return the id of the service's container ('' when there is none)."""
        return self.run("ps", "-q", service, timeout=60).stdout.strip()

    def up(self, timeout: float = 300) -> float:
        """Start the stack (`up -d --no-build`), wait until both are healthy; return seconds."""
        started = time.monotonic()
        out = self.run("up", "-d", "--no-build", timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"compose up failed:\n{out.stderr[-3000:]}")
        self.wait_healthy(timeout - (time.monotonic() - started))
        return time.monotonic() - started

    def wait_healthy(self, timeout: float = 300) -> None:
        """Wait until both services are healthy; fail with their logs otherwise."""
        started = time.monotonic()
        states: dict[str, str] = {}
        while time.monotonic() - started < timeout:
            states = {s: health_of(self.container(s)) for s in SERVICES}
            if all(state == "healthy" for state in states.values()):
                return
            if any(state in ("unhealthy", "exited", "dead") for state in states.values()):
                break
            time.sleep(1)
        logs = self.run("logs", "--tail", "40", timeout=60).stdout[-5000:]
        raise AssertionError(f"stack {self.project} not healthy: {states}\n{logs}")

    def down(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`down --remove-orphans` plus ``args`` (e.g. ``--volumes``)."""
        return self.run("down", "--remove-orphans", *args, timeout=300)

    def ready(self) -> requests.Response:
        """GET /ready of this stack's API."""
        return requests.get(f"{self.api_url}/ready", timeout=5)

    def is_ready(self) -> bool:
        """True when /ready answers 200."""
        return self.ready().status_code == 200

    def mlflow_api(self, endpoint: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the MLflow REST API of this stack (GET without payload, else POST)."""
        url = f"{self.mlflow_url}/api/2.0/mlflow/{endpoint}"
        if payload is None:
            response = requests.get(url, timeout=10)
        else:
            response = requests.post(url, json=payload, timeout=10)
        if response.status_code != 200:
            raise AssertionError(f"MLflow {endpoint}: {response.status_code} {response.text[:500]}")
        return response.json()  # type: ignore[no-any-return]


def customer(**changes: object) -> dict[str, object]:
    """A valid customer: the first row of the public Telco file, with ``changes`` applied."""
    record: dict[str, object] = {"customerID": "7590-VHVEG", **EXAMPLE_CUSTOMER}
    record.update(changes)
    return record


def write_figures(path: Path) -> None:
    """Write the recorded figures as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2) + "\n", encoding="utf-8")
