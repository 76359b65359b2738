"""Running commands quietly, free ports, and the one way to install a Debian tool."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from typing import Any, Protocol


class OpsError(RuntimeError):
    """An operation cannot go on; the message says what to do."""


class Session(Protocol):
    """What the helpers need of a nox session (a fake one in the unit tests)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        """Print a progress line."""

    def warn(self, *args: Any, **kwargs: Any) -> None:
        """Print a warning."""

    def error(self, *args: Any) -> Any:
        """Stop the session with a message (raises)."""

    def run(self, *args: str, **kwargs: Any) -> Any:
        """Run a command, echoing it; raise when it fails."""

    def run_install(self, *args: str, **kwargs: Any) -> Any:
        """Run an install command (also under `nox --install-only`)."""


def run_quiet(
    *cmd: str,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - subprocess's own name
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with captured output; never raise (124: timed out, 127: not found).

    ``env`` is added to the current environment, not put in its place.
    """
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, input=input,
            env={**os.environ, **env} if env is not None else None, cwd=cwd,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout:.0f} s")
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def last_line(out: subprocess.CompletedProcess[str], default: str = "no answer") -> str:
    """Return the last line a command wrote to stderr (or ``default``)."""
    return (out.stderr.strip().splitlines() or [default])[-1]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:  # noqa: S104 - what Compose binds
    """Tell whether something already holds ``port`` (as Compose would publish it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def apt_install(session: Session, *packages: str) -> bool:
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


def ensure_tool(session: Session, tool: str, package: str, hint: str = "") -> bool:
    """Make sure ``tool`` is on PATH, installing Debian's ``package`` when root.

    Returns False (after saying so) when it is missing and cannot be installed here.
    """
    if shutil.which(tool):
        return True
    try:
        apt_install(session, package)
    except Exception as exc:  # noqa: BLE001 - nox raises its own CommandFailed
        session.log(f"apt-get could not install {package}: {exc}")
    if shutil.which(tool):
        return True
    session.log(f"'{tool}' is not installed: `sudo apt-get install {package}`{hint}")
    return False
