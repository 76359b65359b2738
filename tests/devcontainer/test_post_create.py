"""The post-create script runs to completion in a fresh container, after which `nox -l` works.

The container is made from a Debian bookworm image with Python (``DEVCONTAINER_TEST_IMAGE``;
default: the stand-in base that `nox -s build` makes where no registry is reachable, else
python:3.12-slim). The repo's files (tracked and untracked, not ignored: what a clone plus
your edits holds) are copied in, as Codespaces clones the repo before running the script.

Needs a Docker engine and network access to the package index; takes a few minutes, so it
runs only when ``CHURN_CONTAINER_TESTS=1`` (`nox -s devcontainer` sets it, and then a missing
engine or image is a failure, not a skip).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from churn_ops.images import DEFAULT_BASE_IMAGE, STANDIN_BASE_IMAGE, image_exists
from churn_ops.stack import docker_answers

ROOT = Path(__file__).resolve().parents[2]
CANDIDATE_IMAGES = (STANDIN_BASE_IMAGE, DEFAULT_BASE_IMAGE)
WORKDIR = "/workspaces/churn-prediction"
RESULTS = ROOT / "results" / "devcontainer"
TIMEOUT_S = 1200

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CHURN_CONTAINER_TESTS") != "1",
        reason="container test: run `nox -s devcontainer` (sets CHURN_CONTAINER_TESTS=1)",
    ),
]


def _docker(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, timeout=timeout, check=False, **kwargs
    )


@pytest.fixture(scope="module")
def base_image() -> str:
    if not docker_answers():
        pytest.fail("no Docker engine answers (`docker info` fails)")
    wanted = os.environ.get("DEVCONTAINER_TEST_IMAGE")
    for image in [wanted] if wanted else CANDIDATE_IMAGES:
        if image_exists(image):
            return image
    pytest.fail(
        f"none of {[wanted] if wanted else list(CANDIDATE_IMAGES)} exists locally: run "
        "`nox -s build` (it makes the stand-in base) or set DEVCONTAINER_TEST_IMAGE"
    )
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def repo_tar() -> bytes:
    """The working tree as a fresh clone with local edits would have it, as a tar stream."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in sorted(set(filter(None, listed.split("\0")))):
            path = ROOT / rel
            if path.is_file():  # skip files deleted but not yet committed
                tar.add(path, arcname=rel, recursive=False)
    return buffer.getvalue()


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"churn-devcontainer-test-{uuid.uuid4().hex[:8]}"
    yield name
    _docker("rm", "-f", "-v", name)


def _run_in_fresh_container(
    image: str, name: str, repo_tar: bytes, script: str, log_name: str
) -> tuple[subprocess.CompletedProcess, float]:
    """Unpack the repo at WORKDIR in a new container from ``image``, then run ``script``."""
    shell = f"set -euo pipefail; mkdir -p {WORKDIR}; tar -x -C {WORKDIR}; cd {WORKDIR}; {script}"
    started = time.monotonic()
    done = _docker(
        "run", "--rm", "-i", "--name", name, image, "bash", "-c", shell,
        input=repo_tar, timeout=TIMEOUT_S,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / log_name).write_bytes(
        done.stdout + b"\n----- stderr -----\n" + done.stderr + f"\n{elapsed:.0f} s\n".encode()
    )
    return done, elapsed


def test_post_create_as_root_installs_everything_then_nox_lists_the_sessions(
    base_image: str, repo_tar: bytes, container_name: str
) -> None:
    """As root (apt-get allowed): nox, uv, the dev environment and Chromium; then `nox -l`."""
    script = (
        "bash .devcontainer/post-create.sh; "
        'echo "=== new shell"; '
        # A new login shell, as a terminal the user opens afterwards.
        'bash -lc \'nox -l && .nox/dev/bin/python -c "import churn, pytest, mlflow, dvc" '
        "&& chromium --version && chromedriver --version'"
    )
    done, elapsed = _run_in_fresh_container(
        base_image, container_name, repo_tar, script, "post-create-root.log"
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"exit {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    script_out, _, after = out.partition("=== new shell")
    marks = re.findall(r"^== \[ *(\d+) s\] (.+)$", script_out, flags=re.MULTILINE)
    assert marks and marks[-1][1] == "ready. Next:", script_out
    assert "nox -s build up smoke" in script_out
    sessions = set(re.findall(r"^[*-] (\w+)", after, flags=re.MULTILINE))
    assert {"tests", "build", "up", "smoke", "down", "browser"} <= sessions, after
    assert re.search(r"^Chromium \d+", after, flags=re.MULTILINE), after
    steps = ", ".join(f"{name} at {at} s" for at, name in marks)
    print(f"post-create as root in {base_image}: {elapsed:.0f} s in all; {steps}")


def test_post_create_as_a_user_without_sudo_still_gives_nox(
    base_image: str, repo_tar: bytes, container_name: str
) -> None:
    """As a plain user whose PATH has ~/.local/bin (the Codespaces user's shell does) but who
    cannot use apt-get: nox lands in ~/.local/bin, Chromium is reported, the script succeeds.
    """
    user_env = (
        "env HOME=/home/dev PATH=/home/dev/.local/bin:/usr/local/bin:/usr/bin:/bin "
        "CHURN_SKIP_DEV_ENV=1"
    )
    script = (
        "useradd --create-home --uid 1000 dev; chown -R dev: .; "
        f"runuser -u dev -- {user_env} bash .devcontainer/post-create.sh; "
        'echo "=== new shell"; '
        f"runuser -u dev -- {user_env} bash -c 'command -v nox; nox -l'"
    )
    done, _ = _run_in_fresh_container(
        base_image, container_name, repo_tar, script, "post-create-user.log"
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"exit {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    _, _, after = out.partition("=== new shell")
    assert after.split()[0] == "/home/dev/.local/bin/nox"
    assert "- browser" in after or "* browser" in after
    assert "could not install Chromium" in err
