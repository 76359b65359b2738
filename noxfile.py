"""Automation for the churn-prediction service: pipeline, images, stack and tests.

`nox -l` lists the sessions; `nox -s build up smoke` is the main job. Arguments after `--`
reach the tool underneath (dvc, docker compose, pytest, ...).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
DEV_LOCK = "requirements/dev.lock"
API_IMAGE = "churn-prediction-api"
MLFLOW_IMAGE = "churn-mlflow"
DEFAULT_BASE_IMAGE = "python:3.12-slim"
STANDIN_BASE_IMAGE = "churn-standin-python:3.11-bookworm"
CONTAINER_UID = 1000  # the images' non-root user; owns the bind-mounted data folders
SERVICES = ("mlflow", "api")

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True


# --------------------------------------------------------------------------- helpers


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def _install_dev(session: nox.Session) -> None:
    """Install the pinned development environment and the project itself."""
    session.install("-r", DEV_LOCK)
    session.install("--no-deps", "-e", ".")


def _run_quiet(*cmd: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _require_tool(session: nox.Session, tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        session.error(f"'{tool}' is not installed: {hint}")


def _require_docker(session: nox.Session) -> None:
    """Fail with what to do when no Docker engine answers."""
    _require_tool(session, "docker", "install Docker (in Codespaces, rebuild the devcontainer)")
    probe = _run_quiet("docker", "info", "--format", "{{.ServerVersion}}", timeout=30)
    if probe.returncode != 0:
        session.error(
            "No Docker engine is reachable ("
            + (probe.stderr.strip().splitlines() or ["no answer"])[-1]
            + "). Start it (e.g. `sudo service docker start`); in GitHub Codespaces, "
            "rebuild the devcontainer (Command Palette: 'Codespaces: Rebuild Container')."
        )


def _compose_cmd(session: nox.Session) -> list[str]:
    """`docker compose` (v2) where it exists, else `docker-compose` (v1.29)."""
    if _run_quiet("docker", "compose", "version").returncode == 0:
        return ["docker", "compose", "-f", str(COMPOSE_FILE)]
    if shutil.which("docker-compose"):
        return ["docker-compose", "-f", str(COMPOSE_FILE)]
    session.error(
        "Neither `docker compose` nor `docker-compose` is installed: install the Compose "
        "plugin (or Debian's docker-compose package)."
    )
    raise AssertionError  # unreachable: session.error raises


def _stack_env() -> dict[str, str]:
    """Environment for Compose: the host path of mlruns/ for its second mount, ports."""
    env = {"MLRUNS_HOST_DIR": str(ROOT / "mlruns")}
    for name in ("API_PORT", "MLFLOW_PORT", "BASE_IMAGE", "IMAGE_PREFIX", "IMAGE_TAG"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _ports() -> dict[str, int]:
    return {
        "API_PORT": int(os.environ.get("API_PORT", "5000")),
        "MLFLOW_PORT": int(os.environ.get("MLFLOW_PORT", "5001")),
    }


def _buildkit_env(session: nox.Session) -> dict[str, str]:
    """Use BuildKit where buildx exists; otherwise the classic builder, and say so."""
    if _run_quiet("docker", "buildx", "version").returncode == 0:
        return {}
    if os.environ.get("DOCKER_BUILDKIT") == "1":
        session.log(
            "buildx is not installed: building with the classic builder (DOCKER_BUILDKIT=0)"
        )
    return {"DOCKER_BUILDKIT": "0"}


def _image_exists(ref: str) -> bool:
    return _run_quiet("docker", "image", "inspect", ref).returncode == 0


def _base_image(session: nox.Session) -> str:
    """Choose the base image: BASE_IMAGE, python:3.12-slim, or a stand-in built here."""
    wanted = os.environ.get("BASE_IMAGE")
    if wanted:
        return wanted
    if _image_exists(DEFAULT_BASE_IMAGE):
        return DEFAULT_BASE_IMAGE
    session.log(f"Pulling {DEFAULT_BASE_IMAGE} ...")
    try:
        pulled = _run_quiet("docker", "pull", DEFAULT_BASE_IMAGE, timeout=300)
        if pulled.returncode == 0:
            return DEFAULT_BASE_IMAGE
        reason = (pulled.stderr.strip().splitlines() or ["unknown error"])[-1]
    except subprocess.TimeoutExpired:
        reason = "timed out"
    if _image_exists(STANDIN_BASE_IMAGE):
        session.log(
            f"{DEFAULT_BASE_IMAGE} cannot be pulled ({reason}); reusing the stand-in base "
            f"{STANDIN_BASE_IMAGE} (Debian bookworm, Python 3.11) built earlier on this host."
        )
        return STANDIN_BASE_IMAGE
    session.log(
        f"{DEFAULT_BASE_IMAGE} cannot be pulled ({reason}); building a stand-in base image "
        f"{STANDIN_BASE_IMAGE} from Debian packages instead (debootstrap + docker import, "
        "about a minute, once per host)."
    )
    if shutil.which("debootstrap") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            session.log("Installing debootstrap with apt-get ...")
            session.run("apt-get", "update", "-qq", external=True)
            session.run("apt-get", "install", "-y", "-qq", "debootstrap", external=True)
        else:
            session.error(
                "debootstrap is needed to build the stand-in base: `sudo apt-get install "
                "debootstrap`, or set BASE_IMAGE to an image with Python 3.11+ you have."
            )
    if os.geteuid() != 0:
        session.error(
            "Building the stand-in base needs root (debootstrap): run as root or set BASE_IMAGE."
        )
    session.run("bash", str(ROOT / "docker" / "standin-base.sh"), STANDIN_BASE_IMAGE, external=True)
    return STANDIN_BASE_IMAGE


def _ensure_artifacts(session: nox.Session) -> None:
    """`dvc pull` the artifacts; where the remote cannot serve them, reproduce them."""
    # A pull from an empty or unreachable remote fails; `dvc status` then tells what is missing.
    session.run("dvc", "pull", "--quiet", success_codes=[0, 1])
    if _dvc_up_to_date(session):
        session.log("DVC artifacts are present and match dvc.lock.")
        return
    session.log(
        "The DVC remote could not serve the artifacts (empty or unreachable): "
        "reproducing them with `dvc repro` instead."
    )
    session.run("dvc", "repro")


def _dvc_up_to_date(session: nox.Session) -> bool:
    out = session.run("dvc", "status", "--json", silent=True, success_codes=[0, 1])
    try:
        return not json.loads(out or "{}")
    except (TypeError, json.JSONDecodeError):
        return False


def _git_revision() -> str:
    rev = _run_quiet("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    return rev.stdout.strip() if rev.returncode == 0 else "unknown"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _container_ids(session: nox.Session, compose: list[str]) -> dict[str, str]:
    ids = {}
    for service in SERVICES:
        out = session.run(
            *compose, "ps", "-q", service, silent=True, external=True, env=_stack_env()
        )
        ids[service] = (out or "").strip()
    return ids


def _health(container_id: str) -> str:
    if not container_id:
        return "missing"
    out = _run_quiet(
        "docker",
        "inspect",
        "--format",
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        container_id,
    )
    state, _, health = out.stdout.strip().partition(" ")
    return health or state or "missing"


def _prepare_data_dirs(session: nox.Session) -> None:
    """Create mlruns/ and logs/ so the containers' user (uid 1000) can write them."""
    for name in ("mlruns", "logs"):
        path = ROOT / name
        path.mkdir(exist_ok=True)
        if path.stat().st_uid == CONTAINER_UID:
            continue
        if os.geteuid() == 0:
            session.log(f"{name}/: giving it to uid {CONTAINER_UID}, the containers' user")
            for sub in [path, *path.rglob("*")]:
                os.chown(sub, CONTAINER_UID, CONTAINER_UID, follow_symlinks=False)
        else:
            owner = path.stat().st_uid
            session.log(f"{name}/: owned by uid {owner}; making it writable for the containers")
            for sub in [path, *path.rglob("*")]:
                sub.chmod(
                    sub.stat().st_mode | 0o777 if sub.is_dir() else sub.stat().st_mode | 0o666
                )


def _urls() -> dict[str, str]:
    ports = _ports()
    name = os.environ.get("CODESPACE_NAME")
    domain = os.environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    if name and domain:
        return {
            "API": f"https://{name}-{ports['API_PORT']}.{domain}",
            "MLflow UI": f"https://{name}-{ports['MLFLOW_PORT']}.{domain}",
        }
    return {
        "API": f"http://localhost:{ports['API_PORT']}",
        "MLflow UI": f"http://localhost:{ports['MLFLOW_PORT']}",
    }


# --------------------------------------------------------------------------- sessions


@nox.session
def lint(session: nox.Session) -> None:
    """Lint Python (ruff), Dockerfiles (hadolint) and YAML (yamllint)."""
    _install_dev(session)
    session.run("ruff", "check", "src", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py")
    session.run("yamllint", "-c", ".yamllint.yml", ".")
    dockerfiles = [str(p) for p in sorted((ROOT / "docker").glob("Dockerfile.*"))]
    session.run("hadolint", "--config", ".hadolint.yaml", *dockerfiles)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (no Docker engine needed)."""
    _install_dev(session)
    args = session.posargs or ["tests/unit"]
    session.run("pytest", *args)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate the hashed lock files (images and dev) from pyproject.toml with uv."""
    _require_tool(session, "uv", "pip install uv")
    common = [
        "uv",
        "pip",
        "compile",
        "--universal",
        "--python-version",
        "3.11",
        "--generate-hashes",
        "--quiet",
    ]
    api_lock = "docker/requirements/api.lock"
    session.run(*common, "pyproject.toml", "-o", api_lock, *session.posargs, external=True)
    session.run(
        *common,
        "docker/requirements/mlflow.in",
        "-o",
        "docker/requirements/mlflow.lock",
        *session.posargs,
        external=True,
    )
    # The dev lock is constrained by the API lock: training and serving unpickle with the
    # same scikit-learn and numpy.
    session.run(
        *common, "pyproject.toml", "--extra", "pipeline", "--extra", "dev", "-c", api_lock,
        "-o", DEV_LOCK, *session.posargs, external=True,
    )  # fmt: skip


@nox.session
def pull(session: nox.Session) -> None:
    """Pull the DVC-tracked data and models from the configured remote."""
    _install_dev(session)
    session.run("dvc", "pull", *session.posargs)


@nox.session
def train(session: nox.Session) -> None:
    """Reproduce the DVC pipeline (data, features, both models, metrics), logging to MLflow."""
    _install_dev(session)
    session.run("dvc", "repro", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Serve the API locally with Waitress, without Docker (needs the artifacts)."""
    _install_dev(session)
    session.run("python", "-m", "churn.api.serve", *session.posargs, env={"CHURN_ROOT": str(ROOT)})


@nox.session
def build(session: nox.Session) -> None:
    """Make sure the artifacts are there (pull, else reproduce), then build both images."""
    _require_docker(session)
    _install_dev(session)
    _ensure_artifacts(session)
    base = _base_image(session)
    version = _project_version()
    labels = {
        "VERSION": version,
        "REVISION": _git_revision(),
        "CREATED": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    build_args = [f"--build-arg=BASE_IMAGE={base}"] + [
        f"--build-arg={k}={v}" for k, v in labels.items()
    ]
    env = _buildkit_env(session)
    for image, dockerfile in ((MLFLOW_IMAGE, "Dockerfile.mlflow"), (API_IMAGE, "Dockerfile.mlapp")):
        started = time.monotonic()
        session.run(
            "docker", "build", "-f", f"docker/{dockerfile}",
            "-t", f"{image}:latest", "-t", f"{image}:{version}",
            *build_args, *session.posargs, ".",
            external=True, env=env,
        )  # fmt: skip
        session.log(
            f"built {image}:{version} (and :latest) on {base} in {time.monotonic() - started:.0f} s"
        )


@nox.session(venv_backend="none")
def up(session: nox.Session) -> None:
    """Start the Compose stack and wait until both services are healthy."""
    _require_docker(session)
    compose = _compose_cmd(session)
    env = _stack_env()
    running = {s: _health(cid) for s, cid in _container_ids(session, compose).items()}
    if not any(state in ("healthy", "starting", "running") for state in running.values()):
        for name, port in _ports().items():
            if _port_in_use(port):
                session.error(
                    f"Port {port} is already in use on this host: stop what holds it "
                    f"(`ss -ltnp 'sport = :{port}'`), or choose another with {name}=<port> "
                    f"(e.g. `{name}={port + 10} nox -s up`)."
                )
    _prepare_data_dirs(session)
    started = time.monotonic()
    session.run(*compose, "up", "-d", *session.posargs, external=True, env=env)
    timeout = float(os.environ.get("UP_TIMEOUT", "240"))
    while True:
        states = {s: _health(cid) for s, cid in _container_ids(session, compose).items()}
        if all(state == "healthy" for state in states.values()):
            break
        if time.monotonic() - started > timeout or any(
            s in ("exited", "dead") for s in states.values()
        ):
            for service, state in states.items():
                if state != "healthy":
                    session.log(f"--- {service} is {state}; last lines of its log:")
                    session.run(*compose, "logs", "--tail", "60", service, external=True, env=env)
            session.error(f"The stack did not become healthy within {timeout:.0f} s: {states}")
        time.sleep(2)
    session.log(f"Stack healthy in {time.monotonic() - started:.1f} s.")
    for label, url in _urls().items():
        session.log(f"  {label:10} {url}")
    session.log(f"  {'API docs':10} {_urls()['API']}/docs")


@nox.session
def smoke(session: nox.Session) -> None:
    """Run the smoke tests against the running stack (API_URL, MLFLOW_URL)."""
    _install_dev(session)
    ports = _ports()
    env = {
        "API_URL": os.environ.get("API_URL", f"http://127.0.0.1:{ports['API_PORT']}"),
        "MLFLOW_URL": os.environ.get("MLFLOW_URL", f"http://127.0.0.1:{ports['MLFLOW_PORT']}"),
    }
    session.run("pytest", "-p", "no:cacheprovider", "tests/smoke", *session.posargs, env=env)


@nox.session(venv_backend="none")
def down(session: nox.Session) -> None:
    """Stop the stack; data is kept (`-- --volumes` also deletes mlruns/ and logs/)."""
    _require_docker(session)
    compose = _compose_cmd(session)
    args = list(session.posargs)
    wipe = "--volumes" in args or "-v" in args
    session.run(*compose, "down", "--remove-orphans", *args, external=True, env=_stack_env())
    if wipe:
        for name in ("mlruns", "logs"):
            if (ROOT / name).exists():
                session.log(f"--volumes: deleting {name}/ (MLflow runs and API logs)")
                shutil.rmtree(ROOT / name)


@nox.session(venv_backend="none")
def logs(session: nox.Session) -> None:
    """Print the stack's logs (`-- -f` follows them)."""
    _require_docker(session)
    compose = _compose_cmd(session)
    args = session.posargs or ["--tail", "200"]
    session.run(*compose, "logs", *args, external=True, env=_stack_env())


if __name__ == "__main__":  # pragma: no cover - `python noxfile.py` is not how to run it
    sys.exit("Run `nox -l` to list the sessions.")
