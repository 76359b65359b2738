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
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import closing, suppress
from pathlib import Path

import nox
from nox.command import CommandFailed

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
    # Compiled at install time: every pipeline stage is a new process, and with
    # PYTHONDONTWRITEBYTECODE set each would otherwise compile its libraries again.
    env = {"UV_COMPILE_BYTECODE": "1"}
    session.install("-r", DEV_LOCK, env=env)
    session.install("--no-deps", "-e", ".", env=env)


def _run_quiet(*cmd: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _require_tool(session: nox.Session, tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        session.error(f"'{tool}' is not installed: {hint}")


def _apt_install(session: nox.Session, *packages: str) -> bool:
    """Install Debian packages with apt-get when running as root; False where it cannot."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    session.log(f"Installing {' '.join(packages)} (Debian packages) with apt-get ...")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages,
        external=True, env=env,
    )  # fmt: skip
    return True


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


def _data_dirs() -> dict[str, Path]:
    """Return the bind-mounted data folders (MLRUNS_DIR and LOGS_DIR move them)."""
    return {
        "MLRUNS_DIR": Path(os.environ.get("MLRUNS_DIR") or ROOT / "mlruns").resolve(),
        "LOGS_DIR": Path(os.environ.get("LOGS_DIR") or ROOT / "logs").resolve(),
    }


def _stack_env() -> dict[str, str]:
    """Environment for Compose: data folders (absolute), and the host path of mlruns/ again.

    Runs logged on the host before the stack started recorded their artifacts under the host's
    absolute mlruns path; the MLflow container mounts the folder there too (MLRUNS_HOST_DIR).
    """
    dirs = _data_dirs()
    env = {name: str(path) for name, path in dirs.items()}
    env["MLRUNS_HOST_DIR"] = str(dirs["MLRUNS_DIR"])
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
    if shutil.which("debootstrap") is None and not _apt_install(session, "debootstrap"):
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
    """`dvc pull` the artifacts; where the remote cannot serve them, reproduce them.

    Pulled models whose training runs are not in the local MLflow store (they were trained on
    another machine or clone) are retrained, so that the provenance the API reports (`/models`)
    points at runs the stack's MLflow server really has.
    """
    # A pull from an empty or unreachable remote fails; `dvc status` then tells what is missing.
    session.run("dvc", "pull", "--quiet", success_codes=[0, 1])
    if not _dvc_up_to_date(session):
        session.log(
            "The DVC remote could not serve the artifacts (empty or unreachable): "
            "reproducing them with `dvc repro` instead."
        )
        session.run("dvc", "repro")
        return
    missing = _runs_missing_from_local_store()
    if missing:
        session.log(
            f"The artifacts are present, but their training runs ({', '.join(missing)}) are not "
            "in the local MLflow store mlruns/: retraining with `dvc repro --force` so that the "
            "stack's MLflow shows the runs its models come from."
        )
        session.run("dvc", "repro", "--force")
        return
    session.log("DVC artifacts are present, match dvc.lock, and their runs are in mlruns/.")


def _runs_missing_from_local_store() -> list[str]:
    """Return the models' MLflow run ids that the local store (mlruns/mlflow.db) lacks."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return []  # a shared tracking server: its runs are not ours to check here
    run_ids = []
    for meta in sorted((ROOT / "models").glob("model_v*.json")):
        run_id = json.loads(meta.read_text()).get("mlflow", {}).get("run_id")
        if run_id:
            run_ids.append(run_id)
    db = ROOT / "mlruns" / "mlflow.db"
    if not db.exists():
        return run_ids
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        marks = ",".join("?" * len(run_ids))
        rows = conn.execute(f"SELECT run_uuid FROM runs WHERE run_uuid IN ({marks})", run_ids)
        found = {row[0] for row in rows}
    return [r for r in run_ids if r not in found]


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
    """Create the data folders so that the containers' user (uid 1000) can write them."""
    for path in _data_dirs().values():
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_uid == CONTAINER_UID:
            continue
        if os.geteuid() == 0:
            session.log(f"{path}: giving it to uid {CONTAINER_UID}, the containers' user")
            for sub in [path, *path.rglob("*")]:
                os.chown(sub, CONTAINER_UID, CONTAINER_UID, follow_symlinks=False)
        else:
            session.log(f"{path}: owned by uid {path.stat().st_uid}; opening it to the containers")
            for sub in [path, *path.rglob("*")]:
                sub.chmod(sub.stat().st_mode | (0o777 if sub.is_dir() else 0o666))


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
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("yamllint", "-c", ".yamllint.yml", ".")
    dockerfiles = [str(p) for p in sorted((ROOT / "docker").glob("Dockerfile.*"))]
    session.run("hadolint", "--config", ".hadolint.yaml", *dockerfiles)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (no Docker engine needed)."""
    _install_dev(session)
    args = session.posargs or ["tests/unit", "tests/devcontainer"]
    # One OpenMP thread: on a small machine, scikit-learn's threaded gradient boosting is
    # several times slower than single-threaded for the test suite's small fits.
    session.run("pytest", *args, env={"OMP_NUM_THREADS": "1"})


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
    args = session.posargs
    if any(a == "-S" or a.startswith(("-S", "--set-param")) for a in args):
        # Changed parameters (e.g. your own CSV) go through `dvc exp run`, which applies them.
        session.run("dvc", "exp", "run", *args)
    else:
        session.run("dvc", "repro", *args)


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
    if os.environ.get("IMAGE_PREFIX"):
        # Published images: pull them first, or Compose would build the missing ones locally.
        session.run(*compose, "pull", external=True, env=env)
    else:
        tag = os.environ.get("IMAGE_TAG", "latest")
        missing = [i for i in (API_IMAGE, MLFLOW_IMAGE) if not _image_exists(f"{i}:{tag}")]
        if missing:
            session.error(
                f"No local image {', '.join(f'{i}:{tag}' for i in missing)}: run `nox -s build "
                "up`, or set IMAGE_PREFIX to run published images (README: another machine)."
            )
    started = time.monotonic()
    session.run(*compose, "up", "-d", "--no-build", *session.posargs, external=True, env=env)
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
        for path in _data_dirs().values():
            if path.exists():
                session.log(f"--volumes: deleting {path} (MLflow runs and API logs)")
                shutil.rmtree(path)


@nox.session(venv_backend="none")
def logs(session: nox.Session) -> None:
    """Print the stack's logs (`-- -f` follows them)."""
    _require_docker(session)
    compose = _compose_cmd(session)
    args = session.posargs or ["--tail", "200"]
    session.run(*compose, "logs", *args, external=True, env=_stack_env())


# =========================================================================== publish (issue 6)
# `nox -s publish` tags and pushes both images; `nox -s publish-test` proves it against a real
# registry on 127.0.0.1 (tests/publish). Everything of publishing lives in this block.

PUBLISH_DOCKERFILES = {API_IMAGE: "Dockerfile.mlapp", MLFLOW_IMAGE: "Dockerfile.mlflow"}
PUBLISH_PLATFORMS = ("linux/amd64", "linux/arm64")
PUBLISH_LABELS = ("version", "revision", "created", "source", "licenses")
OCI_LABEL = "org.opencontainers.image."
PUBLISH_SECRET = "DOCKERHUB_TOKEN"


def _publish_options(session: nox.Session) -> tuple[bool, bool]:
    """Return (dry_run, force) from `-- --dry-run --force`; anything else is an error."""
    unknown = set(session.posargs) - {"--dry-run", "--force"}
    if unknown:
        session.error(f"Unknown publish option(s) {sorted(unknown)}: use --dry-run, --force")
    return "--dry-run" in session.posargs, "--force" in session.posargs


def _publish_target(session: nox.Session) -> tuple[str, str]:
    """Return (registry, namespace) from REGISTRY and IMAGE_NAMESPACE or DOCKERHUB_USERNAME."""
    import re

    registry = os.environ.get("REGISTRY", "").strip() or "docker.io"
    registry = registry.removeprefix("https://").removeprefix("http://").strip("/")
    namespace = os.environ.get("IMAGE_NAMESPACE") or os.environ.get("DOCKERHUB_USERNAME") or ""
    namespace = namespace.strip().strip("/")
    if not namespace:
        session.error(
            "No namespace to publish under: set IMAGE_NAMESPACE (or DOCKERHUB_USERNAME); "
            "`IMAGE_NAMESPACE=alice nox -s publish` pushes docker.io/alice/churn-prediction-api"
        )
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    if not re.fullmatch(rf"{component}(?:/{component})*", namespace):
        session.error(f"Namespace {namespace!r} is not an image path (lowercase, digits, . _ - /)")
    return registry, namespace


def _publish_quiet(
    *cmd: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command with captured output and the publish environment; never raise."""
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:.0f} s")


def _publish_step(session: nox.Session, dry_run: bool, env: dict[str, str], *cmd: str) -> None:
    """Run one docker command, or only print it in a dry run."""
    import shlex

    if dry_run:
        session.log(f"[dry-run] would run: {shlex.join(cmd)}")
    else:
        session.run(*cmd, external=True, env=env)


def _publish_git_state() -> tuple[str, str, list[str]]:
    """Return (HEAD sha, short sha, `git status --porcelain` lines); ('', '', []) outside git."""
    head = _run_quiet("git", "-C", str(ROOT), "rev-parse", "HEAD")
    short = _run_quiet("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    status = _run_quiet("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=normal")
    if head.returncode or short.returncode or status.returncode:
        return "", "", []
    return head.stdout.strip(), short.stdout.strip(), status.stdout.splitlines()


def _publish_labels(ref: str) -> dict[str, str] | None:
    """Return the image's OCI labels without their prefix (None when there is no such image)."""
    out = _run_quiet("docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref)
    if out.returncode != 0:
        return None
    labels = json.loads(out.stdout or "null") or {}
    return {k.removeprefix(OCI_LABEL): v for k, v in labels.items() if k.startswith(OCI_LABEL)}


def _publish_local_refusals(version: str, head: str, short_sha: str) -> list[str]:
    """Check the local images: fully labelled, of this version, built from HEAD."""
    refusals = []
    for image in PUBLISH_DOCKERFILES:
        source = f"{image}:latest"
        labels = _publish_labels(source) or {}
        unset = [k for k in PUBLISH_LABELS if labels.get(k, "unknown") in ("", "unknown")]
        if unset:
            refusals.append(f"{source} lacks the OCI labels {unset}: build it with `nox -s build`.")
        if labels.get("version") != version:
            refusals.append(
                f"{source} is version {labels.get('version')!r} but pyproject.toml says "
                f"{version!r}: rebuild with `nox -s build`."
            )
        revision = labels.get("revision", "")
        if head and not (len(revision) >= 7 and head.startswith(revision)):
            refusals.append(
                f"{source} was built from revision {revision!r}, HEAD is {short_sha}: rebuild "
                "with `nox -s build`, so that the sha tag names the commit inside the image."
            )
    return refusals


def _publish_insecure(registry: str) -> bool:
    """Tell whether the engine speaks plain HTTP to this registry (e.g. 127.0.0.0/8)."""
    import ipaddress

    info = _run_quiet("docker", "info", "--format", "{{json .RegistryConfig}}")
    try:
        config = json.loads(info.stdout)
    except json.JSONDecodeError:
        return False
    index = (config.get("IndexConfigs") or {}).get(registry)
    if index is not None:
        return not index.get("Secure", True)
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    try:
        found = socket.getaddrinfo(host.strip("[]"), None)
        addresses = {ipaddress.ip_address(str(entry[4][0]).split("%")[0]) for entry in found}
    except (OSError, ValueError):
        return False
    cidrs = [ipaddress.ip_network(c) for c in config.get("InsecureRegistryCIDRs") or []]
    return any(a.version == net.version and a in net for a in addresses for net in cidrs)


def _publish_tag_state(ref: str, insecure: bool, env: dict[str, str]) -> tuple[str, str]:
    """Return ('present' | 'absent' | 'unreadable' | 'unknown', the registry's answer)."""
    # Without --insecure, `docker manifest inspect` answers "no such manifest" for a tag that
    # does exist on a plain-HTTP registry: the flag is required there, not optional.
    cmd = ["docker", "manifest", "inspect", *(["--insecure"] if insecure else []), ref]
    out = _publish_quiet(*cmd, env=env, timeout=60)
    if out.returncode == 0:
        return "present", ""
    answer = " ".join(out.stderr.split()) or f"exit status {out.returncode}"
    low = answer.lower()
    if any(s in low for s in ("no such manifest", "manifest unknown", "name unknown", "not found")):
        return "absent", answer
    if any(
        s in low for s in ("denied", "unauthorized", "no basic auth", "authentication required")
    ):
        return "unreadable", answer
    return "unknown", answer


def _publish_docker_config() -> Path:
    """Make a private DOCKER_CONFIG for one publish, so that the login never lands in ~/.docker.

    It keeps the user's settings (proxies, CLI plugins, buildx builders, contexts) but none of
    their credentials; the caller deletes it when the publish ends.
    """
    import tempfile

    home = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    private = Path(tempfile.mkdtemp(prefix="churn-publish-docker-"))  # mode 0700
    try:
        config = json.loads((home / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    for key in ("auths", "credsStore", "credHelpers"):
        config.pop(key, None)
    (private / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("cli-plugins", "buildx", "contexts"):
        if (home / name).exists():
            (private / name).symlink_to(home / name)
    return private


def _publish_login(
    session: nox.Session, registry: str, username: str, token: str, env: dict[str, str]
) -> None:
    """`docker login --password-stdin`: the token goes through stdin only, never printed."""
    session.log(f"docker login {registry} --username {username} --password-stdin  (token: stdin)")
    cmd = ("docker", "login", registry, "--username", username, "--password-stdin")
    try:
        out = subprocess.run(
            cmd, input=token, capture_output=True, text=True, timeout=120,
            env={**os.environ, **env}, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        session.error(f"docker login {registry} timed out after 120 s")
    if out.returncode != 0:
        answer = (out.stderr + out.stdout).replace(token, "***").strip()
        session.error(f"docker login {registry} as {username} failed: {answer}")
    session.log(f"Logged in to {registry} as {username}, for this publish only.")


def _publish_multiarch(dry_run: bool) -> tuple[bool, str]:
    """Return (True, '') when buildx can build amd64 and arm64 here, else (False, why not)."""
    server = _run_quiet("docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")
    native = server.stdout.strip() or "the native architecture"
    if _run_quiet("docker", "buildx", "version").returncode != 0:
        return False, f"docker buildx is not installed: publishing {native} only, not multi-arch."
    inspect = ["docker", "buildx", "inspect", *([] if dry_run else ["--bootstrap"])]
    out = _publish_quiet(*inspect, env={}, timeout=300)
    platforms = {
        p.strip().rstrip("*")
        for line in out.stdout.splitlines()
        if line.strip().startswith("Platforms:")
        for p in line.split(":", 1)[1].split(",")
    }
    if not set(PUBLISH_PLATFORMS) <= platforms:
        return False, (
            f"the buildx builder offers {sorted(platforms)}, not {', '.join(PUBLISH_PLATFORMS)}: "
            f"publishing {native} only (`docker buildx create --use --driver docker-container` "
            "and QEMU binfmt support add arm64)."
        )
    return True, ""


def _publish_push(
    session: nox.Session,
    dry_run: bool,
    env: dict[str, str],
    multiarch: bool,
    image: str,
    repo: str,
    tags: tuple[str, str, str],
) -> None:
    """Push one image under its (version, sha, latest) tags: retag it, or build both platforms."""
    refs = [f"{repo}:{tag}" for tag in tags]
    if not multiarch:
        for ref in refs:
            _publish_step(session, dry_run, env, "docker", "tag", f"{image}:latest", ref)
        for ref in refs:
            _publish_step(session, dry_run, env, "docker", "push", ref)
        return
    # A multi-arch image cannot be made from the local single-arch one: buildx rebuilds it
    # from this (clean) checkout, with the same labels as `nox -s build`.
    build_args = {
        "BASE_IMAGE": os.environ.get("BASE_IMAGE", DEFAULT_BASE_IMAGE),
        "VERSION": tags[0],
        "REVISION": tags[1],
        "CREATED": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _publish_step(
        session, dry_run, env,
        "docker", "buildx", "build", "--platform", ",".join(PUBLISH_PLATFORMS),
        "-f", str(ROOT / "docker" / PUBLISH_DOCKERFILES[image]),
        *[f"--build-arg={k}={v}" for k, v in build_args.items()],
        *[arg for ref in refs for arg in ("-t", ref)], "--push", str(ROOT),
    )  # fmt: skip


def _publish_pull_back(
    session: nox.Session, env: dict[str, str], multiarch: bool, image: str, ref: str
) -> str:
    """Pull the pushed image back by digest, check it is the one pushed; return the digest."""
    repo = ref.rsplit(":", 1)[0]
    if multiarch:
        fmt = "{{json .Manifest}}"
        out = _publish_quiet(
            "docker", "buildx", "imagetools", "inspect", ref, "--format", fmt, env=env
        )
        digest = json.loads(out.stdout or "{}").get("digest", "")
    else:
        fmt = "{{json .RepoDigests}}"
        out = _publish_quiet(
            "docker", "image", "inspect", "--format", fmt, f"{image}:latest", env=env
        )
        found = [d for d in json.loads(out.stdout or "[]") if d.startswith(f"{repo}@")]
        digest = found[0].split("@", 1)[1] if found else ""
    if not digest:
        session.error(f"The registry gave no digest for {ref} after the push")
    session.run("docker", "pull", f"{repo}@{digest}", external=True, env=env)
    if not multiarch:
        ids = [
            _publish_quiet("docker", "image", "inspect", "--format", "{{.Id}}", r, env=env).stdout
            for r in (f"{repo}@{digest}", f"{image}:latest")
        ]
        if ids[0].strip() != ids[1].strip():
            session.error(f"{repo}@{digest} is not the image pushed ({ids[1].strip()})")
    return digest


@nox.session(venv_backend="none")
def publish(session: nox.Session) -> None:
    """Tag and push both images to a registry (REGISTRY, IMAGE_NAMESPACE); --dry-run, --force."""
    dry_run, force = _publish_options(session)
    # Out of the environment at once: no child process (docker, git) ever inherits the token.
    token = os.environ.pop(PUBLISH_SECRET, "")
    registry, namespace = _publish_target(session)
    _require_docker(session)
    version = _project_version()
    head, short_sha, dirty = _publish_git_state()
    multiarch, why_native = _publish_multiarch(dry_run)
    if why_native:
        session.log(why_native)
    tags = (version, short_sha or "unknown", "latest")
    repos = {image: f"{registry}/{namespace}/{image}" for image in PUBLISH_DOCKERFILES}

    refusals: list[str] = []
    if not head:
        refusals.append(f"{ROOT} is not a git checkout: the images' revision cannot be named.")
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:8]) + (", ..." if len(dirty) > 8 else "")
        refusals.append(
            f"the git working tree is dirty, {len(dirty)} uncommitted change(s): {shown}. "
            "Commit them (then `nox -s build`) and publish again."
        )
    if not multiarch:
        for image in PUBLISH_DOCKERFILES:
            if not _image_exists(f"{image}:latest"):
                session.error(
                    f"The local image {image}:latest is missing: run `nox -s build` first"
                )
        refusals += _publish_local_refusals(version, head, short_sha)

    env: dict[str, str] = {}  # DOCKER_CONFIG once logged in
    private_config: Path | None = None
    digests: dict[str, str] = {}
    try:
        if not token:
            session.log(f"{PUBLISH_SECRET} is not set: no login (existing docker logins apply).")
        elif dry_run:
            session.log(f"[dry-run] would log in to {registry} with {PUBLISH_SECRET} on stdin")
        else:
            username = (
                os.environ.get("REGISTRY_USERNAME")
                or os.environ.get("DOCKERHUB_USERNAME")
                or namespace.split("/")[0]
            )
            private_config = _publish_docker_config()
            env["DOCKER_CONFIG"] = str(private_config)
            _publish_login(session, registry, username, token, env)

        insecure = _publish_insecure(registry)
        for repo in repos.values():
            state, answer = _publish_tag_state(f"{repo}:{version}", insecure, env)
            if state == "present":
                refusals.append(
                    f"{repo}:{version} already exists in the registry: a release is never "
                    "overwritten; bump [project] version in pyproject.toml."
                )
            elif state == "unreadable":
                session.log(f"{repo} cannot be read ({answer}): taking {version} as new.")
            elif state == "unknown":
                refusals.append(f"cannot tell whether {repo}:{version} exists: {answer}")
        if refusals:
            listed = "\n  - ".join(refusals)
            if not force:
                session.error(
                    f"Refusing to publish:\n  - {listed}\n"
                    "(`nox -s publish -- --force` publishes anyway)"
                )
            session.warn(f"Publishing anyway (--force):\n  - {listed}")

        for image, repo in repos.items():
            started = time.monotonic()
            _publish_push(session, dry_run, env, multiarch, image, repo, tags)
            if dry_run:
                continue
            pushed = time.monotonic() - started
            digests[image] = _publish_pull_back(session, env, multiarch, image, f"{repo}:{version}")
            pulled = time.monotonic() - started - pushed
            session.log(f"{image}: pushed in {pushed:.1f} s, pulled back in {pulled:.1f} s")
    finally:
        if private_config is not None:
            _publish_quiet("docker", "logout", registry, env=env)
            shutil.rmtree(private_config, ignore_errors=True)

    if dry_run:
        session.log("[dry-run] then pull each image back by digest. Nothing was pushed.")
        return
    arch = ", ".join(PUBLISH_PLATFORMS) if multiarch else "native architecture only"
    session.log(f"Published to {registry}/{namespace} ({arch}), tags {', '.join(tags)}:")
    for image, repo in repos.items():
        session.log(f"  digest {repo}@{digests[image]}")
    session.log(
        f"Run it elsewhere (docs/publish.md): IMAGE_PREFIX={registry}/{namespace}/ "
        f"IMAGE_TAG={version}, then `docker compose -f docker/docker-compose.yml pull` and `up -d`."
    )


@nox.session(name="publish-test")
def publish_test(session: nox.Session) -> None:
    """Publish to a throwaway registry on 127.0.0.1, run the stack from it, smoke-test it."""
    _require_docker(session)
    has_registry = shutil.which("docker-registry") or shutil.which("registry")
    if not has_registry and not _apt_install(session, "docker-registry"):
        session.error("The test needs a registry binary: `sudo apt-get install docker-registry`")
    _install_dev(session)
    args = session.posargs or ["tests/publish"]
    # The test runs `nox -s publish` with the Python that runs this nox.
    env = {"PUBLISH_TEST_PYTHON": sys.executable}
    session.run("pytest", "-p", "no:cacheprovider", *args, env=env)


# ------------------------------------------------------------------ devcontainer and browser
# (issue 5: .devcontainer/, tests/devcontainer/, tests/browser/)

CHROMIUM_PACKAGES = ("chromium", "chromium-driver")
#: Until the dev lock carries selenium, the browser session installs this pin on top of it.
SELENIUM_FALLBACK = "selenium==4.51.0"


def _ensure_chromium(session: nox.Session) -> None:
    """Chromium and chromedriver from Debian packages; installed with apt-get when root."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if _apt_install(session, *CHROMIUM_PACKAGES):
        return
    session.error(
        "Chromium and chromedriver are needed: `sudo apt-get install -y chromium "
        "chromium-driver` (the devcontainer's post-create script installs them), or set "
        "CHROMIUM and CHROMEDRIVER to their paths."
    )


@nox.session
def browser(session: nox.Session) -> None:
    """Drive the running stack's pages in headless Chromium; screenshots in results/screenshots/."""
    if not (os.environ.get("CHROMIUM") and os.environ.get("CHROMEDRIVER")):
        _ensure_chromium(session)
    _install_dev(session)
    if "selenium==" not in (ROOT / DEV_LOCK).read_text(encoding="utf-8"):
        session.install(SELENIUM_FALLBACK)
    ports = _ports()
    env = {
        "API_URL": os.environ.get("API_URL", f"http://127.0.0.1:{ports['API_PORT']}"),
        "MLFLOW_URL": os.environ.get("MLFLOW_URL", f"http://127.0.0.1:{ports['MLFLOW_PORT']}"),
        "SCREENSHOTS_DIR": os.environ.get("SCREENSHOTS_DIR", str(ROOT / "results" / "screenshots")),
        "SE_OFFLINE": "true",  # Selenium Manager never downloads a driver or a browser
    }
    session.run("pytest", "-p", "no:cacheprovider", "tests/browser", *session.posargs, env=env)
    session.log(f"Screenshots: {env['SCREENSHOTS_DIR']}")


@nox.session
def devcontainer(session: nox.Session) -> None:
    """Check .devcontainer/: the JSON schema, then the post-create script in a fresh container."""
    _require_docker(session)
    _install_dev(session)
    args = session.posargs or ["tests/devcontainer"]
    session.run("pytest", "-p", "no:cacheprovider", "-s", *args, env={"CHURN_CONTAINER_TESTS": "1"})


# ------------------------------------------------------------------ end of the issue 5 block

# =========================================================================== bench (issue 7)
# `nox -s bench`: wrk loads on 127.0.0.1 against the running stack's API and against
# `mlflow models serve` on the same v2 model, plus the Docker figures; prints a table and
# writes results/bench/bench.json and bench.png. The work is done by benchmarks/ (see
# benchmarks/run.py); this block only makes sure wrk and a ready API are there.


def _bench_ensure_wrk(session: nox.Session) -> None:
    """Install wrk from Debian packages when root and missing; else say how to."""
    if shutil.which("wrk"):
        return
    if _apt_install(session, "wrk"):
        return
    session.error("The load generator wrk is needed: `sudo apt-get install wrk`, then run again.")


def _bench_api_ready(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=5) as answer:  # noqa: S310
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _bench_start_stack(session: nox.Session) -> float | None:
    """Run `nox -s up` (its output shown as it comes); return the seconds it reported."""
    import re

    cmd = [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", "up"]
    session.log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait() != 0:
        session.error("`nox -s up` failed: the benchmark needs the stack (see above).")
    found = re.search(r"Stack healthy in ([0-9.]+) s", "".join(lines))
    return float(found.group(1)) if found else None


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark the API against `mlflow models serve` with wrk; results in results/bench/."""
    _bench_ensure_wrk(session)
    _install_dev(session)
    url = f"http://127.0.0.1:{_ports()['API_PORT']}"
    args = ["--root", str(ROOT), "--api-url", url]
    if _bench_api_ready(url):
        note = f"used the stack already running at {url}"
    else:
        _require_docker(session)
        session.log(
            f"No ready API at {url}: starting the stack with `nox -s up`. It stays up "
            "afterwards (others may use it); `nox -s down` stops it."
        )
        up_seconds = _bench_start_stack(session)
        note = "started the stack with `nox -s up` for the benchmark; it is left running"
        args.append("--started-stack")
        if up_seconds is not None:
            args += ["--up-seconds", str(up_seconds)]
    if _run_quiet("docker", "info", "--format", "{{.ServerVersion}}", timeout=30).returncode:
        session.log("No Docker engine answers: image, build, `up` and memory figures skipped.")
        args.append("--skip-docker")
    session.log(note)
    session.run("python", "-m", "benchmarks", *args, "--stack-note", note, *session.posargs)


# ------------------------------------------------------------------ end of the issue 7 block

# ===================================================================== reliability (issue 8)
# `nox -s reliability`: tests/reliability against a stack of its own (Compose project
# churn-reliability on free ports of 127.0.0.1, its own network and data folders), started from
# the images `nox -s build` made and torn down with its volumes at the end. Bad input,
# schemathesis, a soak, faults with recovery times, data across `down`/`up`, hardening.
# Everything of it lives in this block.


def _reliability_wrk(session: nox.Session) -> None:
    """Install wrk from Debian packages when root and missing; else the soak uses Python."""
    if shutil.which("wrk"):
        return
    with suppress(CommandFailed):  # the soak falls back to its Python client
        _apt_install(session, "wrk")
    if not shutil.which("wrk"):
        session.log("wrk is not installed: the soak uses its Python client (`apt-get install wrk`)")


@nox.session
def reliability(session: nox.Session) -> None:
    """Bad input, fuzzing, faults, soak, data and hardening tests on a stack of its own."""
    _require_docker(session)
    _compose_cmd(session)  # fails early, with what to install, when there is no Compose
    _install_dev(session)  # the dev lock carries schemathesis
    _reliability_wrk(session)
    args = session.posargs or ["tests/reliability"]
    # The data test runs `nox -s down` and `nox -s up` on the suite's stack with this Python.
    env = {"RELIABILITY_NOX": sys.executable}
    session.run("pytest", "-p", "no:cacheprovider", "-rs", *args, env=env)


# ------------------------------------------------------------------ end of the issue 8 block

if __name__ == "__main__":  # pragma: no cover - `python noxfile.py` is not how to run it
    sys.exit("Run `nox -l` to list the sessions.")
