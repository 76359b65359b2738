"""One development environment for every nox session that needs the dev lock.

Each session used to make its own virtualenv and install the whole lock into it (about a
minute each on a first run). Now they share `.nox/dev`, made with uv (pip where uv is missing)
and installed again only when requirements/dev.lock or pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from churn_ops.shell import OpsError, Session
from churn_ops.stack import REPO_ROOT

DEV_LOCK = "requirements/dev.lock"
#: The bench's BentoML comparison: a venv of its own (its pins conflict with the dev lock's).
BENTOML_IN = "requirements/bentoml.in"
BENTOML_LOCK = "requirements/bentoml.lock"
#: The dev lock's pins of the libraries that unpickle the model files, which the BentoML lock
#: must share (written by `compile_locks`, so that the lock's command line reproduces it).
BENTOML_CONSTRAINTS = "requirements/bentoml.constraints"
MODEL_LIBRARIES = ("joblib", "numpy", "pandas", "scikit-learn", "scipy", "threadpoolctl")
#: The file in an environment that names what it was installed from (`fingerprint`).
STAMP = ".installed-from"


def uv_binary() -> str | None:
    """Return the uv binary: on PATH, or the one installed beside nox."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(find_uv_bin())


def fingerprint(
    root: Path = REPO_ROOT, files: tuple[str, ...] = (DEV_LOCK, "pyproject.toml")
) -> str:
    """Return a digest of what an environment is installed from (the dev one by default)."""
    digest = hashlib.sha256()
    for rel in files:
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()


def installed_from(env_dir: Path) -> str | None:
    """Return the fingerprint an environment was last installed from (None: never, or gone)."""
    try:
        return (env_dir / STAMP).read_text(encoding="utf-8")
    except OSError:
        return None


def mark_installed(env_dir: Path, wanted: str) -> None:
    """Record that ``env_dir`` now holds what ``wanted`` (a `fingerprint`) names."""
    (env_dir / STAMP).parent.mkdir(parents=True, exist_ok=True)
    (env_dir / STAMP).write_text(wanted, encoding="utf-8")


def pins(lock_text: str, names: tuple[str, ...]) -> list[str]:
    """Return the ``name==version[ ; marker]`` lines of ``names`` in a uv lock, hashes dropped."""
    wanted = {name.lower() for name in names}
    found = []
    for line in lock_text.splitlines():
        requirement = line.rstrip(" \\").strip()
        name = requirement.split("==", 1)[0].strip().lower()
        if "==" in requirement and not line.startswith((" ", "#")) and name in wanted:
            found.append(requirement)
    return found


def activate(session: Session, root: Path = REPO_ROOT) -> Path:
    """Make (or update) the shared environment, then put it first on this process's PATH."""
    env_dir = root / ".nox" / "dev"
    python = env_dir / "bin" / "python"
    uv = uv_binary()
    env = {"UV_COMPILE_BYTECODE": "1", "VIRTUAL_ENV": str(env_dir)}
    if not python.exists():
        if uv:
            session.run_install(
                uv, "venv", "--quiet", "--python", sys.executable, str(env_dir), external=True
            )
        else:
            session.run_install(sys.executable, "-m", "venv", str(env_dir), external=True)
    wanted = fingerprint(root)
    if installed_from(env_dir) != wanted:
        # Compiled at install time: every pipeline stage is a new process, and with
        # PYTHONDONTWRITEBYTECODE set each would otherwise compile its libraries again.
        pip = [uv, "pip"] if uv else [str(python), "-m", "pip", "--quiet"]
        quiet = ["--quiet"] if uv else []
        session.run_install(
            *pip, "install", *quiet, "-r", str(root / DEV_LOCK), external=True, env=env
        )
        session.run_install(
            *pip, "install", *quiet, "--no-deps", "-e", str(root), external=True, env=env
        )  # fmt: skip
        mark_installed(env_dir, wanted)
    else:
        session.log(f"Using {env_dir.relative_to(root)} (up to date with {DEV_LOCK})")
    os.environ["VIRTUAL_ENV"] = str(env_dir)
    bin_dir = str(env_dir / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return env_dir


def compile_locks(session: Session, extra: list[str], root: Path = REPO_ROOT) -> None:
    """Regenerate the hashed lock files (API and MLflow images, dev, BentoML bench) with uv.

    Raises:
        OpsError: uv is not installed.

    """
    uv = uv_binary()
    if uv is None:
        raise OpsError("'uv' is not installed: `pip install uv` (requirements/tools.txt pins it)")
    common = [uv, "pip", "compile", "--universal", "--python-version", "3.11"]
    common += ["--generate-hashes", "--quiet"]
    api_lock = "docker/requirements/api.lock"
    session.run(*common, "pyproject.toml", "-o", api_lock, *extra, external=True)
    mlflow_in, mlflow_lock = "docker/requirements/mlflow.in", "docker/requirements/mlflow.lock"
    # Without what `mlflow` pulls for client-side features the server never imports.
    excludes = ["--excludes", "docker/requirements/mlflow.exclude"]
    session.run(*common, mlflow_in, *excludes, "-o", mlflow_lock, *extra, external=True)
    # The dev lock is constrained by the API lock: training and serving share numpy's version.
    extras = ["--extra", "pipeline", "--extra", "dev", "-c", api_lock]
    session.run(*common, "pyproject.toml", *extras, "-o", DEV_LOCK, *extra, external=True)
    # BentoML's own pins conflict with the dev lock's (OpenTelemetry): a lock of its own, whose
    # model libraries are the dev lock's, so that it unpickles the same files the same way.
    shared = pins((root / DEV_LOCK).read_text(encoding="utf-8"), MODEL_LIBRARIES)
    (root / BENTOML_CONSTRAINTS).write_text(
        f"# Written by `nox -s lock` from {DEV_LOCK}: the libraries that unpickle the models.\n"
        + "\n".join(shared)
        + "\n",
        encoding="utf-8",
    )
    bentoml = [BENTOML_IN, "-c", BENTOML_CONSTRAINTS, "-o", BENTOML_LOCK]
    session.run(*common, *bentoml, *extra, external=True)
