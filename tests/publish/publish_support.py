"""Helpers of the publish test: registries on 127.0.0.1, docker, and `nox -s publish` runs.

Each registry is Debian's `docker-registry` binary (upstream: `registry`), started on a free
port of 127.0.0.1 with a temporary config and storage folder, and stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from churn_ops.shell import free_port
from churn_ops.stack import docker

__all__ = ["docker", "free_port"]

MAIN_ROOT = Path(__file__).resolve().parents[2]
#: The MLflow store the images' models were trained into: the checkout's mlruns/ unless
#: PUBLISH_TEST_MLRUNS names another (for images built from another copy of the repo).
TRAINING_STORE = Path(os.environ.get("PUBLISH_TEST_MLRUNS") or MAIN_ROOT / "mlruns")
IMAGES = ("churn-prediction-api", "churn-mlflow")
NAMESPACE = "churn"
OCI = "org.opencontainers.image."
#: Variables of the caller that would change what `nox -s publish` does: never inherited.
PUBLISH_SETTINGS = (
    "REGISTRY",
    "IMAGE_NAMESPACE",
    "DOCKERHUB_USERNAME",
    "DOCKERHUB_TOKEN",
    "REGISTRY_USERNAME",
)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def untag_registry_images(address: str) -> list[str]:
    """Remove every local tag and digest reference of images from this registry."""
    listing = docker("image", "ls", "--digests", "--format", "{{json .}}").stdout.splitlines()
    refs = []
    for row in map(json.loads, listing):
        repo = row["Repository"]
        if not repo.startswith(f"{address}/"):
            continue
        if row["Tag"] != "<none>":
            refs.append(f"{repo}:{row['Tag']}")
        if row["Digest"] != "<none>":
            refs.append(f"{repo}@{row['Digest']}")
    refs = list(dict.fromkeys(refs))  # one digest row per tag: remove each reference once
    for ref in refs:
        docker("image", "rm", ref)
    return refs


@dataclass
class Registry:
    """A running registry: its address (host:port) and, with auth on, its one user."""

    address: str
    process: subprocess.Popen[bytes]
    user: str = ""
    token: str = ""

    @property
    def url(self) -> str:
        """Base URL of the registry's HTTP API."""
        return f"http://{self.address}"

    def get(self, path: str, **kwargs: object) -> requests.Response:
        """GET on the registry API (with basic auth when the registry wants it)."""
        auth = (self.user, self.token) if self.user else None
        return requests.get(f"{self.url}{path}", auth=auth, timeout=30, **kwargs)  # type: ignore[arg-type]

    def catalog(self) -> list[str]:
        """The repositories the registry holds."""
        return sorted(self.get("/v2/_catalog").json().get("repositories") or [])

    def tags(self, repo: str) -> set[str]:
        """The tags of one repository (empty when it does not exist)."""
        r = self.get(f"/v2/{repo}/tags/list")
        return set(r.json().get("tags") or []) if r.status_code == 200 else set()

    def manifest(self, repo: str, ref: str) -> tuple[str, dict]:
        """(digest, manifest) of a tag or digest, as a client pulling it would get them."""
        r = self.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES})
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"], r.json()


def registry_binary() -> str:
    """Path of the registry program (Debian: docker-registry; upstream: registry)."""
    found = shutil.which("docker-registry") or shutil.which("registry")
    if not found:
        pytest.fail("No registry binary: `sudo apt-get install docker-registry`.")
    return found


def start_registry(folder: Path, htpasswd: str = "") -> tuple[str, subprocess.Popen[bytes]]:
    """Start a registry on 127.0.0.1:<free port> storing into `folder`; wait until it answers."""
    address = f"127.0.0.1:{free_port()}"
    (folder / "storage").mkdir(parents=True)
    auth = ""
    if htpasswd:
        (folder / "htpasswd").write_text(htpasswd + "\n", encoding="utf-8")
        auth = f"auth:\n  htpasswd:\n    realm: publish-test\n    path: {folder / 'htpasswd'}\n"
    (folder / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n" + auth,
        encoding="utf-8",
    )
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen(
        [registry_binary(), "serve", str(folder / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://{address}/v2/", timeout=2).status_code in (200, 401):
                return address, process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"the registry did not start: {(folder / 'registry.log').read_text()[-2000:]}")


def stop_registry(registry: Registry) -> None:
    """Stop the registry process and untag the local images that came from it."""
    registry.process.terminate()
    try:
        registry.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait(timeout=15)
    untag_registry_images(registry.address)


def nox_command() -> list[str]:
    """How to run nox: with the Python that runs the outer nox, else whatever is on PATH."""
    python = os.environ.get("PUBLISH_TEST_PYTHON")
    if python:
        return [python, "-m", "nox"]
    return [shutil.which("nox")] if shutil.which("nox") else [sys.executable, "-m", "nox"]  # type: ignore[list-item]


@dataclass
class Run:
    """One `nox -s publish` run: exit status, everything it printed, wall time."""

    returncode: int
    output: str
    seconds: float


def publish(workdir: Path, registry: str, *args: str, **env: str) -> Run:
    """Run `nox -s publish -- <args>` in `workdir` against `registry` (namespace `churn`)."""
    clean = {k: v for k, v in os.environ.items() if k not in PUBLISH_SETTINGS}
    clean.update({"REGISTRY": registry, "IMAGE_NAMESPACE": NAMESPACE, **env})
    started = time.monotonic()
    out = subprocess.run(
        [*nox_command(), "-f", str(workdir / "noxfile.py"), "-s", "publish", "--", *args],
        cwd=workdir,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
        check=False,
    )
    return Run(out.returncode, out.stdout, time.monotonic() - started)
