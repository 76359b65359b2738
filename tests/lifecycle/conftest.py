"""Fixtures of the lifecycle suite (`nox -s lifecycle`): a registry-mode stack of its own.

The stack is a separate Compose project (``LIFECYCLE_PROJECT``, default ``churn-lifecycle``)
started from the images already built (``nox -s build``), on free ports of 127.0.0.1, with its
own network and its data folders in a temporary folder, and ``CHURN_MODEL_SOURCE=registry``
(``CHURN_CANARY_WEIGHT=0.10``, shadow off: `LifecycleStack`).
Once it is healthy, the session registers a small, really trained ``v1`` and ``v2`` in its
MLflow server (as `nox -s train` registers them) and points ``champion`` at v1. Everything
is removed at the end, always, with its volumes.

Durations (whole seconds): ``LIFECYCLE_MOVE_SECONDS`` (60, each of the three alias-move runs),
``LIFECYCLE_LOAD_SECONDS`` (20, the outage run), ``LIFECYCLE_SHADOW_SECONDS`` (10, each of
the shadow runs, ``LIFECYCLE_SHADOW_ROUNDS`` (2) rounds of off then on);
``LIFECYCLE_CANARY_REQUESTS`` (10000). The figures go to ``results/lifecycle.json``
(``LIFECYCLE_RESULTS``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifecycle_support import FIGURES, ROOT, LifecycleStack, write_figures

from churn_ops.images import image_exists, image_ref
from churn_ops.shell import free_port
from churn_ops.stack import StackNotHealthy, docker_answers

PROJECT = os.environ.get("LIFECYCLE_PROJECT", "churn-lifecycle")


@pytest.fixture(scope="session")
def stack(artifact_root: Path) -> Iterator[LifecycleStack]:
    """The suite's running stack, serving champion v1 from its registry (v2 registered)."""
    if PROJECT in ("", "docker"):  # `docker` is the main stack's project (the folder's name)
        pytest.fail(f"LIFECYCLE_PROJECT={PROJECT!r} would be the main stack: choose another")
    if not docker_answers():
        pytest.fail("No Docker engine answers: the lifecycle suite needs one")
    for name in ("churn-prediction-api", "churn-mlflow"):
        if not image_exists(image_ref(name)):
            pytest.fail(f"The image {image_ref(name)} is missing: run `nox -s build` first")
    if shutil.which("wrk") is None:
        pytest.fail("The lifecycle suite needs wrk (`apt-get install wrk`; `nox -s lifecycle`)")
    workdir = Path(tempfile.mkdtemp(prefix=f"{PROJECT}-"))
    os.chmod(workdir, 0o755)
    stack = LifecycleStack(PROJECT, workdir, free_port(), free_port())
    stack.down("--volumes")  # leftovers of an interrupted run of this project only
    stack.prepare_dirs()
    try:
        try:
            FIGURES["stack_start_s"] = round(stack.up(), 1)
        except StackNotHealthy as exc:
            pytest.fail(str(exc))
        started = time.monotonic()
        stack.register(artifact_root)
        stack.serve(champion="v1")
        FIGURES["register_and_first_serve_s"] = round(time.monotonic() - started, 1)
        yield stack
    finally:
        down = stack.down("--volumes")
        if down.returncode != 0:
            print(f"compose down of {PROJECT} failed: {down.stderr[-1000:]}")
        shutil.rmtree(workdir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the measured figures and write them to a JSON file."""
    if not FIGURES:
        return
    import json

    terminalreporter.section("lifecycle figures")
    terminalreporter.write_line(json.dumps(FIGURES, indent=2))
    target = Path(os.environ.get("LIFECYCLE_RESULTS") or ROOT / "results" / "lifecycle.json")
    write_figures(target)
    terminalreporter.write_line(f"(written to {target})")
