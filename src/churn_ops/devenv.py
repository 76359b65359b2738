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


def _uv() -> str | None:
    """Return the uv binary: on PATH, or the one installed beside nox."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(find_uv_bin())


def fingerprint(root: Path = REPO_ROOT) -> str:
    """Return a digest of what the environment is installed from."""
    digest = hashlib.sha256()
    for rel in (DEV_LOCK, "pyproject.toml"):
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()


def activate(session: Session, root: Path = REPO_ROOT) -> Path:
    """Make (or update) the shared environment, then put it first on this process's PATH."""
    env_dir = root / ".nox" / "dev"
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".installed-from"
    uv = _uv()
    env = {"UV_COMPILE_BYTECODE": "1", "VIRTUAL_ENV": str(env_dir)}
    if not python.exists():
        if uv:
            session.run_install(
                uv, "venv", "--quiet", "--python", sys.executable, str(env_dir), external=True
            )
        else:
            session.run_install(sys.executable, "-m", "venv", str(env_dir), external=True)
    wanted = fingerprint(root)
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != wanted:
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
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted, encoding="utf-8")
    else:
        session.log(f"Using {env_dir.relative_to(root)} (up to date with {DEV_LOCK})")
    os.environ["VIRTUAL_ENV"] = str(env_dir)
    bin_dir = str(env_dir / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return env_dir


def compile_locks(session: Session, extra: list[str]) -> None:
    """Regenerate the hashed lock files (API image, MLflow image, dev) from pyproject.toml with uv.

    Raises:
        OpsError: uv is not installed.

    """
    uv = _uv()
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
