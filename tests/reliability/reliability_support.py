"""Helpers of the reliability suite: its own Compose stack, docker calls, polling, figures.

The suite never touches the main stack (Compose project ``docker``, ports 5000/5001): it starts
its own project (``churn-reliability`` by default) from the images already built, on free ports
of 127.0.0.1, with its own network (``STACK_NETWORK``) and data folders in a temporary folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn_ops import stack as ops_stack
from churn_ops.images import image_ref
from churn_ops.shell import free_port
from churn_ops.stack import SERVICES, StackNotHealthy, docker

__all__ = ["SERVICES", "docker", "free_port", "image_ref"]

ROOT = Path(__file__).resolve().parents[2]
AUTH_OVERRIDE = ROOT / "docker" / "docker-compose.auth.yml"
#: Longest wait for anything to come back at all; figures are reported, not asserted.
RECOVERY_LIMIT = 120.0

#: Figures measured by the tests, printed at the end of the run and written as JSON.
FIGURES: dict[str, str] = {}


def figure(name: str, value: str) -> None:
    """Record one measured figure for the end-of-run summary."""
    FIGURES[name] = value


def inspect(container: str, template: str) -> str:
    """Return ``docker inspect --format template`` of a container ('' when it is gone)."""
    return docker("inspect", "--format", template, container).stdout.strip()


def health_of(container: str) -> str:
    """Return the container's health status, or its state when it has no healthcheck."""
    return ops_stack.health_of(container)[0]


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


class Stack(ops_stack.Stack):
    """The suite's own Compose project (churn_ops' isolated stack), and ways to observe it."""

    def __init__(
        self,
        project: str,
        workdir: Path,
        api_port: int,
        mlflow_port: int,
        extra_files: Sequence[Path] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """Set the stack beside the main one; statistics every 2 s so recovery shows sooner."""
        super().__init__(
            mlruns_dir=workdir / "mlruns", logs_dir=workdir / "logs", api_port=api_port,
            mlflow_port=mlflow_port, project=project, bind="127.0.0.1", network=project,
            extra_files=list(extra_files),
            extra_env={"CHURN_STATS_INTERVAL": "2", **(extra_env or {})},
        )  # fmt: skip
        self.workdir = workdir

    def wait_healthy(
        self,
        timeout: float = 300,
        on_change: Callable[[dict[str, str]], None] | None = None,
        give_up_on: Sequence[str] = ("unhealthy", "exited", "dead"),
        every: float = 1.0,
    ) -> float:
        """Wait until both services are healthy; fail with their logs otherwise."""
        try:
            return super().wait_healthy(timeout, on_change, give_up_on, every)
        except StackNotHealthy as exc:
            logs = self.run("logs", "--tail", "40", timeout=60).stdout[-5000:]
            raise AssertionError(
                f"stack {self.project} not healthy: {exc.states}\n{logs}"
            ) from None

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
