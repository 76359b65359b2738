"""Fixtures of the reliability suite (`nox -s reliability`): one stack of its own per run.

The stack is a separate Compose project (``RELIABILITY_PROJECT``, default ``churn-reliability``)
started from the images already built (``nox -s build``), on free ports of 127.0.0.1, with its
data folders in a temporary folder. It is torn down with its volumes at the end, always.
Destructive tests leave it healthy again for the next one.

Debugging: ``RELIABILITY_REUSE_WORKDIR=<folder> RELIABILITY_API_PORT=.. RELIABILITY_MLFLOW_PORT=..``
runs the tests against a stack of ``RELIABILITY_PROJECT`` already running with those settings,
and leaves it running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import (
    FIGURES,
    ROOT,
    Stack,
    docker,
    figure,
    free_port,
    image_ref,
    write_figures,
)

PROJECT = os.environ.get("RELIABILITY_PROJECT", "churn-reliability")
#: Label on every container a test starts by hand (outside Compose), for the final clean-up.
LABEL = "churn.reliability.project"


def _remove_labelled_containers() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={PROJECT}").stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The suite's own running stack (both services healthy)."""
    if PROJECT in ("", "docker"):  # `docker` is the main stack's project (the folder's name)
        pytest.fail(f"RELIABILITY_PROJECT={PROJECT!r} would be the main stack: choose another")
    if docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode != 0:
        pytest.fail("No Docker engine answers: the reliability suite needs one")
    for name in ("churn-prediction-api", "churn-mlflow"):
        if docker("image", "inspect", image_ref(name)).returncode != 0:
            pytest.fail(f"The image {image_ref(name)} is missing: run `nox -s build` first")
    ports = (
        int(os.environ.get("RELIABILITY_API_PORT") or free_port()),
        int(os.environ.get("RELIABILITY_MLFLOW_PORT") or free_port()),
    )
    if os.environ.get("RELIABILITY_REUSE_WORKDIR"):
        # Debugging: reuse a stack of this project already running with these settings.
        workdir = Path(os.environ["RELIABILITY_REUSE_WORKDIR"])
        yield Stack(project=PROJECT, workdir=workdir, api_port=ports[0], mlflow_port=ports[1])
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"{PROJECT}-"))
    os.chmod(workdir, 0o755)
    stack = Stack(project=PROJECT, workdir=workdir, api_port=ports[0], mlflow_port=ports[1])
    stack.down("--volumes")  # leftovers of an interrupted run of this project only
    _remove_labelled_containers()
    stack.prepare_dirs()
    try:
        seconds = stack.up()
        figure("stack start (both healthy)", f"{seconds:.1f} s")
        yield stack
    finally:
        _remove_labelled_containers()
        down = stack.down("--volumes")
        if down.returncode != 0:
            print(f"compose down of {PROJECT} failed: {down.stderr[-1000:]}")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def container_label() -> dict[str, str]:
    """The label to put on containers started by hand, so the teardown removes them."""
    return {LABEL: PROJECT}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the measured figures (recovery times, soak) and write them to a JSON file."""
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    width = max(len(name) for name in FIGURES)
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")
    target = Path(os.environ.get("RELIABILITY_RESULTS") or ROOT / "results" / "reliability.json")
    write_figures(target)
    terminalreporter.write_line(f"(written to {target})")
