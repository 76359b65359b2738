"""The project's images: names, base image (or the registry-less stand-in), labels, builds."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
import tomllib
from pathlib import Path

from churn.config import ArtifactPaths
from churn_ops.shell import OpsError, Session, apt_install, last_line, run_quiet
from churn_ops.stack import REPO_ROOT

API_IMAGE = "churn-prediction-api"
MLFLOW_IMAGE = "churn-mlflow"
#: Each image's Dockerfile, relative to the repo root (the build context); MLflow first.
DOCKERFILES = {MLFLOW_IMAGE: "docker/Dockerfile.mlflow", API_IMAGE: "docker/Dockerfile.mlapp"}
#: Built on demand by the sessions that run them (`ensure_images`), not by `nox -s build`, so
#: that the main job builds only what its stack runs; not published by default: the load
#: balancer (`up -- --replicas`, `deploy`), MLflow's PostgreSQL (the Compose and Swarm
#: suites, `deploy`) and Prometheus (`up -- --monitoring`).
EXTRA_DOCKERFILES = {
    "churn-lb": "docker/Dockerfile.lb",
    "churn-postgres": "docker/Dockerfile.postgres",
    "churn-prometheus": "docker/Dockerfile.prometheus",
}
DEFAULT_BASE_IMAGE = "python:3.12-slim"
STANDIN_BASE_IMAGE = "churn-standin-python:3.11-bookworm"
#: Base images the stack may be built on, in the order `nox -s build` prefers them.
BASE_CANDIDATES = (DEFAULT_BASE_IMAGE, STANDIN_BASE_IMAGE)
OCI_LABEL = "org.opencontainers.image."


def project_version(root: Path = REPO_ROOT) -> str:
    """Return `[project] version` of pyproject.toml."""
    with (root / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def git_revision(root: Path = REPO_ROOT) -> str:
    """Return the short sha of HEAD ('unknown' outside git)."""
    rev = run_quiet("git", "-C", str(root), "rev-parse", "--short", "HEAD")
    return rev.stdout.strip() if rev.returncode == 0 else "unknown"


def build_args(version: str, revision: str, root: Path | None = None) -> dict[str, str]:
    """Return the label arguments of a build: version, revision and creation time.

    The creation time is the commit's (as reproducible builds take SOURCE_DATE_EPOCH) when
    ``root`` is a git checkout, else now: a build argument that changes on every build would
    make Docker redo the image's last steps even when nothing else changed.
    """
    created = dt.datetime.now(dt.UTC)
    if root is not None:
        when = run_quiet("git", "-C", str(root), "log", "-1", "--format=%ct", "HEAD")
        if when.returncode == 0 and when.stdout.strip().isdigit():
            created = dt.datetime.fromtimestamp(int(when.stdout.strip()), dt.UTC)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"VERSION": version, "REVISION": revision, "CREATED": stamp}


#: The API image's label naming the model bytes it holds (`model_manifest`, as JSON).
MODELS_LABEL = "org.churn.models"


def model_manifest(root: Path = REPO_ROOT) -> dict[str, dict[str, str]]:
    """Return, per model version, the sha256 of each artifact and of the record itself.

    ``{"v2": {"model": ..., "compiled": ..., "preprocessor": ..., "record": ...}}``: the
    artifacts' as the record lists them (``compiled`` is the file the API loads), ``record``
    the record file's own (`churn.model_record`).
    """
    manifest = {}
    files = ArtifactPaths(root).model_files
    for version in files.versions():
        path = files.record(version)
        artifacts = json.loads(path.read_text(encoding="utf-8"))["artifacts"]
        entry = {kind: ref["sha256"] for kind, ref in artifacts.items()}
        entry["record"] = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest[version] = entry
    return manifest


def model_artifact_labels(root: Path = REPO_ROOT) -> dict[str, str]:
    """Return the API image's labels naming its model bytes: `MODELS_LABEL` -> the manifest.

    One label, not one per artifact: with the classic builder every label is a build step of
    its own, redone after each code change.
    """
    manifest = json.dumps(model_manifest(root), sort_keys=True, separators=(",", ":"))
    return {MODELS_LABEL: manifest}


def image_ref(name: str) -> str:
    """Return the reference Compose uses for one of the project's images (IMAGE_PREFIX/TAG)."""
    return f"{os.environ.get('IMAGE_PREFIX', '')}{name}:{os.environ.get('IMAGE_TAG') or 'latest'}"


def image_exists(ref: str) -> bool:
    """Tell whether the engine has the image ``ref``."""
    return run_quiet("docker", "image", "inspect", ref).returncode == 0


def oci_labels(ref: str) -> dict[str, str] | None:
    """Return the image's OCI labels without their prefix (None when there is no such image)."""
    out = run_quiet("docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ref)
    if out.returncode != 0:
        return None
    labels = json.loads(out.stdout or "null") or {}
    return {k.removeprefix(OCI_LABEL): v for k, v in labels.items() if k.startswith(OCI_LABEL)}


def buildkit_env() -> dict[str, str]:
    """Use BuildKit where buildx exists; otherwise the classic builder (DOCKER_BUILDKIT=0)."""
    if run_quiet("docker", "buildx", "version").returncode == 0:
        return {}
    return {"DOCKER_BUILDKIT": "0"}


def base_image(session: Session, root: Path = REPO_ROOT) -> str:
    """Choose the base image: BASE_IMAGE, python:3.12-slim, or a stand-in built here.

    Where the registry cannot be reached, the stand-in is a Debian bookworm with Python 3.11
    made by `docker/standin-base.sh` (debootstrap and `docker import`, once per host).
    """
    wanted = os.environ.get("BASE_IMAGE")
    if wanted:
        return wanted
    if image_exists(DEFAULT_BASE_IMAGE):
        return DEFAULT_BASE_IMAGE
    session.log(f"Pulling {DEFAULT_BASE_IMAGE} ...")
    pulled = run_quiet("docker", "pull", DEFAULT_BASE_IMAGE, timeout=300)
    if pulled.returncode == 0:
        return DEFAULT_BASE_IMAGE
    reason = last_line(pulled, "unknown error")
    if image_exists(STANDIN_BASE_IMAGE):
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
    if shutil.which("debootstrap") is None and not apt_install(session, "debootstrap"):
        raise OpsError(
            "debootstrap is needed to build the stand-in base: `sudo apt-get install "
            "debootstrap`, or set BASE_IMAGE to an image with Python 3.11+ you have."
        )
    if os.geteuid() != 0:
        raise OpsError(
            "Building the stand-in base needs root (debootstrap): run as root or set BASE_IMAGE."
        )
    session.run("bash", str(root / "docker" / "standin-base.sh"), STANDIN_BASE_IMAGE, external=True)
    return STANDIN_BASE_IMAGE


def build_command(
    image: str,
    tags: list[str],
    args: dict[str, str],
    extra: list[str],
    root: Path = REPO_ROOT,
    dockerfile: str | None = None,
) -> list[str]:
    """Return the `docker build` command line of one image (context: the repo root)."""
    known = {**DOCKERFILES, **EXTRA_DOCKERFILES}
    cmd = ["docker", "build", "-f", str(root / (dockerfile or known[image]))]
    for tag in tags:
        cmd += ["-t", tag]
    return [*cmd, *[f"--build-arg={k}={v}" for k, v in args.items()], *extra, str(root)]


def build_all(session: Session, extra: list[str], root: Path = REPO_ROOT) -> None:
    """Build both images as `latest` and the project's version, labelled, on the chosen base.

    ``--all`` in ``extra`` builds the extra images (`EXTRA_DOCKERFILES`) too; the rest of
    ``extra`` goes to every `docker build`.
    """
    names = list(DOCKERFILES) + list(EXTRA_DOCKERFILES) * ("--all" in extra)
    _build(session, names, [a for a in extra if a != "--all"], root)


def ensure_images(session: Session, names: list[str], root: Path = REPO_ROOT) -> None:
    """Build the extra images ``names`` (`EXTRA_DOCKERFILES`) for a session that runs them.

    Built each time, not only when missing, so that a changed Dockerfile or file is what runs;
    the layer cache makes an unchanged build take seconds. Nothing is built when IMAGE_PREFIX
    says published images run.
    """
    if not names or os.environ.get("IMAGE_PREFIX"):
        return
    unknown = sorted(set(names) - set(EXTRA_DOCKERFILES))
    if unknown:
        raise OpsError(f"not an extra image: {', '.join(unknown)}")
    _build(session, names, [], root)


def _build(session: Session, names: list[str], extra: list[str], root: Path) -> None:
    """Build ``names`` as `latest` (or IMAGE_TAG) and the project's version, on the base."""
    base = base_image(session, root)
    version = project_version(root)
    args = {"BASE_IMAGE": base, **build_args(version, git_revision(root), root)}
    env = buildkit_env()
    if env and os.environ.get("DOCKER_BUILDKIT") == "1":
        session.log("buildx is not installed: building with the classic builder")
    tag = os.environ.get("IMAGE_TAG") or "latest"
    for image in names:
        started = time.monotonic()
        tags = [f"{image}:{tag}"] + ([f"{image}:{version}"] if tag == "latest" else [])
        # The API's model manifest goes in as a build argument of its one LABEL instruction.
        image_args = (
            {**args, "MODELS": model_artifact_labels(root)[MODELS_LABEL]}
            if image == API_IMAGE
            else args
        )
        command = build_command(image, tags, image_args, extra, root)
        session.run(*command, external=True, env=env)
        took = time.monotonic() - started
        session.log(f"built {', '.join(tags)} on {base} in {took:.0f} s")
