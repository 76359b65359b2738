"""The noxfile's building blocks: the session decorator, the shared environment, pytest.

Every session runs without a virtualenv of its own, with the repository's `.env` applied
first (a variable set in the shell wins) and an `OpsError` shown as the session's error;
sessions that need Python tools put the shared environment `.nox/dev` first on PATH.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from churn_ops import devenv, dotenv
from churn_ops.shell import OpsError

Session = Any  # nox.Session: nox is the Python that runs the noxfile, not a dependency here
SessionFunc = Callable[[Session], None]


def menu_for(root: Path) -> Callable[[str | None], Callable[[SessionFunc], object]]:
    """Return the `@menu()` decorator that registers a session of the noxfile at ``root``."""
    import nox

    def menu(name: str | None = None) -> Callable[[SessionFunc], object]:
        def register(func: SessionFunc) -> object:
            @functools.wraps(func)
            def wrapper(session: Session) -> None:
                dotenv.apply(root / ".env")
                try:
                    func(session)
                except OpsError as exc:
                    session.error(str(exc))

            return nox.session(wrapper, name=name, venv_backend="none")

        return register

    return menu


def use_dev_env(session: Session, root: Path) -> None:
    """Use the shared development environment (made or updated from requirements/dev.lock).

    MLflow's usage telemetry stays off in training runs, the bench and the tests unless the
    user opts in with MLFLOW_DISABLE_TELEMETRY=false (README, settings).
    """
    devenv.activate(session, root)
    session.env["MLFLOW_DISABLE_TELEMETRY"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")


def run_pytest(session: Session, *args: str, **env: str) -> None:
    """Run pytest in the shared environment (no cache folder: suites run against a stack)."""
    session.run("pytest", "-p", "no:cacheprovider", *args, external=True, env=env)
