"""Helpers of the Compose container tests: Compose CLIs, free ports, waiting for health."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = os.environ.get("IMAGE_TAG", "latest")


def compose_clis() -> list[list[str]]:
    """Every Compose CLI on this machine: `docker compose` (v2) and `docker-compose` (v1)."""
    found = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_images(*names: str) -> None:
    """Skip unless every image is present locally (built by `nox -s build`)."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI")
    for name in names:
        ref = f"{name}:{IMAGE_TAG}"
        if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode:
            pytest.skip(f"image {ref} is not built (nox -s build)")


def run(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it fails."""
    done = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def health(container: str) -> str:
    """A container's health status, or its state when it has no healthcheck."""
    out = subprocess.run(
        [
            "docker", "inspect", "--format",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", container,
        ],
        capture_output=True, text=True, timeout=30,
    ).stdout.split()  # fmt: skip
    return out[-1] if out else "missing"


def wait_healthy(
    compose: Sequence[str], services: Sequence[str], cwd: Path, env: Mapping[str, str],
    timeout: float = 240,
) -> None:  # fmt: skip
    """Wait until every service's container is healthy; fail with the logs when it is not."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for service in services:
            ids = run([*compose, "ps", "-q", service], cwd, env).stdout.split()
            states[service] = health(ids[0]) if ids else "missing"
        if all(state == "healthy" for state in states.values()):
            return
        if any(state in ("exited", "dead", "unhealthy") for state in states.values()):
            break
        time.sleep(2)
    logs = subprocess.run(
        [*compose, "logs", "--tail", "40"], cwd=cwd, env=dict(env), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    pytest.fail(f"not healthy: {states}\n{logs.stdout[-4000:]}{logs.stderr[-2000:]}")
