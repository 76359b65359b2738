"""Fixtures of the Swarm suite (`nox -s swarm`): a stack of its own on Docker Swarm.

The stack (``SWARM_TEST_STACK``, default ``churn-swarmtest``) is deployed from the images already
built (``nox -s build``; ``IMAGE_TAG`` picks the tag) with 2 API replicas, its load balancer and
MLflow on free ports. Everything is removed at the end, even after a failure: the stack, its
volumes and secrets, the images the tests tagged, and the swarm when the suite initialised it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarm_support import FIGURES, RESULTS, ROLLED_LABEL, ROOT, docker, free_port

from churn_ops.swarm import SwarmStack

STACK = os.environ.get("SWARM_TEST_STACK", "churn-swarmtest")


@pytest.fixture(scope="session")
def stack() -> Iterator[SwarmStack]:
    """The suite's own stack, deployed with 2 API replicas; removed with its data at the end."""
    if shutil.which("docker") is None or docker("info").returncode != 0:
        pytest.fail("No Docker engine answers: the Swarm suite needs one")
    if shutil.which("wrk") is None:
        pytest.fail("The Swarm suite needs wrk (`apt-get install wrk`; `nox -s swarm` does it)")
    with tempfile.TemporaryDirectory(prefix="churn-swarmtest-") as state:
        deployed = SwarmStack(
            root=ROOT,
            name=STACK,
            api_port=int(os.environ.get("SWARM_TEST_API_PORT") or free_port()),
            mlflow_port=int(os.environ.get("SWARM_TEST_MLFLOW_PORT") or free_port()),
            image_tag=os.environ.get("IMAGE_TAG", "latest"),
            state_dir=Path(state),
        )
        try:
            FIGURES["deploy_seconds"] = round(deployed.deploy(replicas=2, timeout=420), 1)
            yield deployed
        finally:
            deployed.undeploy(volumes=True)
            for ref in docker(
                "image", "ls", "-q", "--filter", f"label={ROLLED_LABEL}"
            ).stdout.split():
                docker("rmi", "-f", ref)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
            print(f"\nSwarm figures ({RESULTS / 'figures.json'}):\n{json.dumps(FIGURES, indent=2)}")
