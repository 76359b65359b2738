"""Data survives `nox -s down` and `nox -s up`: MLflow runs, artifacts, registered models, API logs.

The suite's stack is stopped and started with the real nox sessions (pointed at it by
``COMPOSE_PROJECT_NAME``, ``STACK_NETWORK``, the ports and the data folders), so what is
checked is what a user runs. ``RELIABILITY_NOX`` names the Python that has nox (`nox -s
reliability` passes its own); without nox the same Compose commands are run directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import requests
from reliability_support import ROOT, SERVICES, Stack, customer, figure, wait_for


def _nox(stack: Stack, session: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    python = os.environ.get("RELIABILITY_NOX") or sys.executable
    has_nox = subprocess.run([python, "-c", "import nox"], capture_output=True, check=False)
    if has_nox.returncode != 0:
        if session == "down":
            return stack.down()
        up = stack.run("up", "-d", "--no-build", timeout=timeout)
        if up.returncode == 0:
            stack.wait_healthy()
        return up
    return subprocess.run(
        [python, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", session],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
        env={**stack.env(), "UP_TIMEOUT": "400"},
    )  # fmt: skip


def _logged(stack: Stack, request_id: str) -> bool:
    return any(
        request_id in path.read_text(encoding="utf-8", errors="replace")
        for path in stack.logs_dir.glob("api*.log*")
    )


def test_runs_models_artifacts_and_logs_survive_down_and_up(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:10]
    experiment_id = stack.mlflow_api("experiments/create", {"name": f"reliability-{tag}"})[
        "experiment_id"
    ]
    run = stack.mlflow_api("runs/create", {"experiment_id": experiment_id})["run"]["info"]
    run_id = run["run_id"]
    stack.mlflow_api(
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [{"key": "auc", "value": 0.8125, "timestamp": 1, "step": 0}],
            "params": [{"key": "tag", "value": tag}],
        },
    )
    artifact = run["artifact_uri"].removeprefix("mlflow-artifacts:/") + "/note.txt"
    artifacts_url = f"{stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{artifact}"
    assert requests.put(artifacts_url, data=tag.encode(), timeout=10).status_code == 200
    model = f"reliability-model-{tag}"
    stack.mlflow_api("registered-models/create", {"name": model})
    stack.mlflow_api(
        "model-versions/create", {"name": model, "source": run["artifact_uri"], "run_id": run_id}
    )
    request_id = f"persist-{tag}"
    r = requests.post(
        f"{stack.api_url}/predict",
        json=customer(),
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert r.status_code == 200
    wait_for("the request in the API's log file", lambda: _logged(stack, request_id))
    serving_run = stack.ready().json()["checks"]["mlflow"]["run_id"]
    assert serving_run

    started = time.monotonic()
    down = _nox(stack, "down")
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    down_seconds = time.monotonic() - started
    assert all(stack.container(s) == "" for s in SERVICES), "down removes the containers"
    assert (stack.mlruns_dir / "mlflow.db").is_file()
    assert _logged(stack, request_id)

    started = time.monotonic()
    up = _nox(stack, "up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    up_seconds = time.monotonic() - started
    wait_for("API ready after up", stack.is_ready)

    experiment = stack.mlflow_api(f"experiments/get?experiment_id={experiment_id}")
    assert experiment["experiment"]["name"] == f"reliability-{tag}"
    data = stack.mlflow_api(f"runs/get?run_id={run_id}")["run"]["data"]
    assert {"key": "tag", "value": tag} in data["params"]
    assert [m["value"] for m in data["metrics"] if m["key"] == "auc"] == [0.8125]
    assert requests.get(artifacts_url, timeout=10).content == tag.encode()
    version = stack.mlflow_api(f"model-versions/get?name={model}&version=1")["model_version"]
    assert version["run_id"] == run_id
    old_serving = stack.mlflow_api(f"runs/get?run_id={serving_run}")["run"]
    assert old_serving["info"]["run_id"] == serving_run
    assert _logged(stack, request_id), "the API's earlier log lines are kept"
    # The new API process logs to the same file and reports to a new serving run.
    wait_for(
        "a new serving run",
        lambda: stack.ready().json()["checks"]["mlflow"]["run_id"] not in (None, serving_run),
    )
    tool = "nox" if "nox > " in (up.stdout + up.stderr) else "compose"
    figure(
        f"data across `{tool} -s down` / `up`" if tool == "nox" else "data across down / up",
        f"runs, metrics, artifacts, registered model, API log kept; down {down_seconds:.0f} s, "
        f"up (healthy) {up_seconds:.0f} s",
    )
