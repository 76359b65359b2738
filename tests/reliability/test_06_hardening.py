"""Hardening of the images and the running containers.

* both containers run as a non-root user (the image's ``USER`` and the process's uid);
* the API: read-only root filesystem, ``no-new-privileges``, every capability dropped, as
  configured (HostConfig) and as the kernel applies it (``/proc/1/status``);
* Flask's debug mode is off in the image, and no debugger or console is reachable;
* each image's filesystem holds no secret or development file (``.env``, ``.git``, keys, tests,
  DVC or MLflow stores, raw data), and the API image holds exactly what .dockerignore lets in;
* nothing the app runs is writable by the app's own user.

The request body limit (413) is in the bad-input catalogue.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest
import requests
from reliability_support import Stack, docker, figure, image_ref, inspect

IMAGES = ("churn-prediction-api", "churn-mlflow")
#: A PEM private key with its body (libraries hold the bare marker as a constant).
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: .*\r?\n)*\r?\n?"
    rb"[A-Za-z0-9+/=]{40,}"
)
#: Names that never belong in an image, wherever they are.
FORBIDDEN_NAMES = {
    ".env", ".git", ".gitignore", ".dvc", ".dvcignore", "dvc.lock", "dvc.yaml", ".nox",
    ".pytest_cache", ".ruff_cache", ".devcontainer", ".ci", "noxfile.py", "mlruns",
    ".git-credentials", ".netrc", ".pypirc", "id_rsa", "id_ed25519", "id_ecdsa",
    "docker-compose.yml", "Dockerfile.mlapp", "Dockerfile.mlflow", "api.lock", "mlflow.lock",
    "dev.lock", "standin-base.sh",
}  # fmt: skip
FORBIDDEN_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".ipynb", ".egg-info")
#: Where the project's own files (and a user's secrets) would land; the OS's CA certificates
#: (.pem) elsewhere are fine.
PROJECT_AREAS = ("app", "mlflow", "root", "home", "tmp", "workspace", "src")
#: The API image's /app: exactly what .dockerignore re-includes, plus the empty log folder.
APP_ALLOWED = (
    re.compile(r"app(/logs)?"),
    re.compile(r"app/src(/churn(/.*)?)?"),
    re.compile(r"app/configs(/[^/]+\.ya?ml)?"),
    re.compile(r"app/models(/(model_v\d+(\.compiled|\.run)?|reference_v\d+|metrics)\.json)?"),
)


@dataclass
class ImageScan:
    """What a walk through an image's exported filesystem found."""

    files: int = 0
    scanned_bytes: int = 0
    findings: list[str] = field(default_factory=list)
    app_paths: list[str] = field(default_factory=list)
    writable_by_app: list[str] = field(default_factory=list)
    pyc_tags: set[str] = field(default_factory=set)


def _members(image: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    name = f"churn-reliability-scan-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, image, check=True)
    try:
        with subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    yield member, tar
    finally:
        docker("rm", "-f", "-v", name)


def _system_path(path: str) -> bool:
    """Paths of the OS and the Python runtime, not of the project."""
    return path.startswith(("proc/", "sys/", "dev/", "usr/share/doc/", "usr/share/man/"))


def scan_image(image: str) -> ImageScan:
    """Walk the image's filesystem once: forbidden names, private keys, /app contents."""
    scan = ImageScan()
    for member, tar in _members(image):
        path = member.name.lstrip("./")
        if not path or _system_path(path):
            continue
        parts = PurePosixPath(path).parts
        name = parts[-1]
        if name in FORBIDDEN_NAMES or (
            parts[0] in PROJECT_AREAS and name.endswith(FORBIDDEN_SUFFIXES)
        ):
            scan.findings.append(f"{path}: development or secret file")
        if "tests" in parts and parts[0] in ("app", "mlflow"):
            scan.findings.append(f"{path}: tests in the image")
        if path.startswith(("app/data/raw", "mlflow/")) and member.isfile():
            scan.findings.append(f"{path}: data that belongs to a volume or DVC")
        if parts[0] == "app":
            scan.app_paths.append(path)
            if name.endswith(".pyc"):
                scan.pyc_tags.add(name.split(".")[-2])
        owned = member.uid == 1000 or member.mode & 0o002
        if owned and parts[0] in ("app", "opt") and path != "app/logs" and not member.issym():
            scan.writable_by_app.append(path)
        if member.isfile():
            scan.files += 1
            if member.size <= 4 * 1024 * 1024:
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                scan.scanned_bytes += len(data)
                # The OS's compiled libraries are skipped: GnuTLS embeds its self-test keys.
                system_binary = parts[0] in ("usr", "lib") and data.startswith(b"\x7fELF")
                if not system_binary and PRIVATE_KEY.search(data):
                    scan.findings.append(f"{path}: holds a private key")
    return scan


@pytest.fixture(scope="module")
def scans() -> dict[str, ImageScan]:
    """One scan per image (each export is read once)."""
    return {image: scan_image(image_ref(image)) for image in IMAGES}


@pytest.mark.parametrize("image", IMAGES)
def test_image_holds_no_secret_or_development_file(scans: dict[str, ImageScan], image: str) -> None:
    scan = scans[image]
    assert scan.files > 1000, "the export was read"
    figure(
        f"image scan {image}",
        f"{scan.files} files, {scan.scanned_bytes / 1024**2:.0f} MiB read, "
        f"{len(scan.findings)} findings",
    )
    assert not scan.findings, "\n".join(scan.findings[:50])


def test_api_image_app_folder_is_what_dockerignore_lets_in(scans: dict[str, ImageScan]) -> None:
    scan = scans["churn-prediction-api"]
    unexpected = [p for p in scan.app_paths if not any(r.fullmatch(p) for r in APP_ALLOWED)]
    assert not unexpected, unexpected[:50]
    assert not [p for p in scan.app_paths if p.endswith(".pkl")], "no pickle in the API image"
    for required in (
        "app/models/model_v1.json",
        "app/models/model_v1.compiled.json",
        "app/models/model_v2.compiled.json",
        "app/src/churn/api/serve.py",
    ):
        assert required in scan.app_paths, required
    # Bytecode is compiled in the image (read-only at run time), never copied from a host.
    python = docker(
        "run", "--rm", "--entrypoint", "python3", image_ref("churn-prediction-api"),
        "-c", "import sys; print(sys.implementation.cache_tag)",
    ).stdout.strip()  # fmt: skip
    assert scan.pyc_tags <= {python}, (python, scan.pyc_tags)


@pytest.mark.parametrize("image", IMAGES)
def test_nothing_the_app_runs_is_writable_by_its_user(
    scans: dict[str, ImageScan], image: str
) -> None:
    assert not scans[image].writable_by_app, scans[image].writable_by_app[:50]


@pytest.mark.parametrize("service", ["api", "mlflow"])
def test_containers_run_as_non_root(stack: Stack, service: str) -> None:
    container = stack.container(service)
    user = inspect(container, "{{.Config.User}}")
    assert user and user.split(":")[0] not in ("0", "root"), user
    uid = docker("exec", container, "id", "-u").stdout.strip()
    assert uid.isdigit() and uid != "0", uid
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    assert re.search(r"^Uid:\s+[1-9]\d*\s", status, re.M), status
    figure(f"{service} user", f"Config.User {user}, uid {uid}")


def test_api_container_is_locked_down(stack: Stack) -> None:
    api = stack.container("api")
    host = json.loads(inspect(api, "{{json .HostConfig}}"))
    assert host["ReadonlyRootfs"] is True
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"] or [])
    assert [c.upper() for c in host["CapDrop"] or []] == ["ALL"]
    assert not host["CapAdd"]
    assert host["Privileged"] is False
    # ... and as the kernel applies it to the serving process.
    status = docker("exec", api, "cat", "/proc/1/status").stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    write = docker("exec", api, "sh", "-c", "echo x > /app/src/churn/x.py")
    assert write.returncode != 0 and "Read-only" in write.stderr, write.stderr
    logs_writable = docker("exec", api, "sh", "-c", "test -w /app/logs && test -w /tmp")
    assert logs_writable.returncode == 0
    figure("API container", "read-only rootfs, no-new-privileges, CapEff 0 (cap_drop ALL)")


def test_flask_debug_is_off_in_the_image(stack: Stack) -> None:
    api = stack.container("api")
    env = inspect(api, "{{json .Config.Env}}")
    assert "FLASK_DEBUG" not in env and "FLASK_ENV" not in env, env
    cmd = json.loads(inspect(api, "{{json .Config.Cmd}}"))
    assert cmd == ["python3", "-m", "churn.api.serve"], cmd
    probe = docker(
        "exec", api, "python3", "-c",
        "from churn.api import create_app; from churn.config import load_api_settings; "
        "app = create_app(load_api_settings(log_dir='', mlflow_tracking_uri='')); "
        "print(app.debug, app.config['DEBUG'], app.config['PROPAGATE_EXCEPTIONS'])",
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    # the printed line, wherever the app's log lines (written in batches, at exit) fall
    assert "False False None" in probe.stdout.splitlines(), probe.stdout
    for path in ("/console", "/__debugger__?cmd=resource&f=style.css"):
        r = requests.get(f"{stack.api_url}{path}", timeout=10)
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
