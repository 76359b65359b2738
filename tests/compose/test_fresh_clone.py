"""A by-hand `docker compose -f docker/docker-compose.yml up -d` on a fresh clone gets healthy.

Exactly the README's by-hand command, run in a new `git clone` of this repository (committed
files only: no mlruns/, no logs/, no .env) with the images already built, under a Compose
project, network and ports of its own. Docker then creates the missing data folders as root; the
stack must still become healthy, write its data, and leave it readable and removable by the
user who ran the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from compose_support import ROOT, compose_clis, free_port, require_images, run, wait_healthy

CLIS = compose_clis()


@pytest.fixture()
def clone(tmp_path: Path) -> Iterator[Path]:
    """A fresh clone of this repository's committed state."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    yield target
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize("compose", CLIS or [None], ids=lambda c: " ".join(c) if c else "none")
def test_by_hand_up_on_a_fresh_clone_gets_healthy(compose: list[str] | None, clone: Path) -> None:
    if compose is None:
        pytest.skip("no Compose CLI on this machine")
    require_images("churn-mlflow", "churn-prediction-api")
    name = f"churn-compose-test-{os.getpid()}"
    api_port, mlflow_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLRUNS_", "LOGS_DIR"))},
        "COMPOSE_PROJECT_NAME": name,
        "STACK_NETWORK": name,
        "API_PORT": str(api_port),
        "MLFLOW_PORT": str(mlflow_port),
        "API_BIND": "127.0.0.1",
        "MLFLOW_BIND": "127.0.0.1",
    }
    assert not (clone / "mlruns").exists()
    up = [*compose, "-f", "docker/docker-compose.yml"]
    try:
        run([*up, "up", "-d"], clone, env)
        wait_healthy(up, ["mlflow", "api"], clone, env)

        mlflow = f"http://127.0.0.1:{mlflow_port}"
        created = requests.post(
            f"{mlflow}/api/2.0/mlflow/experiments/create", json={"name": "by-hand"}, timeout=30
        )
        assert created.status_code == 200, created.text[:300]
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=30).status_code == 200

        data = clone / "mlruns"
        assert (data / "mlflow.db").is_file()
        owner = data.stat().st_uid
        assert owner != 0 or os.getuid() == 0, "mlruns/ was left to root"
        for folder, _dirs, files in os.walk(data):
            for entry in [folder, *(os.path.join(folder, f) for f in files)]:
                assert os.access(entry, os.R_OK), f"{entry} is not readable by uid {os.getuid()}"
    finally:
        subprocess.run([*up, "down", "-v", "--remove-orphans"], cwd=clone, env=env, timeout=300)
    # The host user removes the data the stack wrote, with no sudo and no container.
    shutil.rmtree(clone / "mlruns")
    shutil.rmtree(clone / "logs")
