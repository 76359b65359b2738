"""The stack on Docker Swarm under load: replicas, a rolling update, a killed replica, throughput.

Load comes from wrk on 127.0.0.1, bounded in connections and time, against the stack's load
balancer. Figures (failed requests, recovery seconds, requests per second) go to
results/swarm/figures.json; the tests check behaviour (no request lost, the replica comes back),
never a speed.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from swarm_support import FIGURES, ROLLED_LABEL, docker

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn_ops.swarm import SwarmStack

CONNECTIONS = 8
PREDICT_SCRIPT = f"""
wrk.method = "POST"
wrk.body = [[{json.dumps(EXAMPLE_CUSTOMER)}]]
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class WrkResult:
    """What wrk printed: requests, failures of each kind, and the rate."""

    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    per_second: float

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx answer (errors and timeouts included)."""
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's summary."""
    total = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    assert total and rate, f"wrk printed no summary:\n{text}"
    kinds = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(kinds, map(int, errors.groups()), strict=True)) if errors else {},
        per_second=float(rate.group(1)),
    )


@pytest.fixture(scope="module")
def wrk_script() -> Iterator[Path]:
    """The wrk script that posts the example customer to /predict."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(PREDICT_SCRIPT)
    yield Path(fh.name)
    Path(fh.name).unlink()


def start_wrk(stack: SwarmStack, script: Path, seconds: int) -> subprocess.Popen[str]:
    """Start wrk against the load balancer's /predict for at most ``seconds``."""
    url = f"http://127.0.0.1:{stack.api_port}/predict"
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_wrk(process: subprocess.Popen[str]) -> WrkResult:
    """Stop wrk (SIGINT: it prints its summary) and read the summary."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    return parse_wrk(out)


def run_wrk(stack: SwarmStack, script: Path, seconds: int) -> WrkResult:
    """Run wrk for ``seconds`` to its end and read the summary."""
    out, _ = start_wrk(stack, script, seconds).communicate(timeout=seconds + 60)
    return parse_wrk(out)


def api_tasks(stack: SwarmStack) -> list[dict[str, str]]:
    """The API's tasks that should run: id, slot name, state, image, container id."""
    out = docker(
        "service", "ps", "--filter", "desired-state=running", "--no-trunc",
        "--format", "{{json .}}", f"{stack.name}_api",
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def api_containers(stack: SwarmStack) -> list[str]:
    """Ids of the running containers of the API's current tasks (not those being stopped)."""
    tasks = docker(
        "service", "ps", "-q", "--filter", "desired-state=running", f"{stack.name}_api"
    ).stdout.split()
    ids = []
    for task in tasks:
        template = "{{.Status.State}} {{.Status.ContainerStatus.ContainerID}}"
        state, _, container = docker("inspect", "--format", template, task).stdout.partition(" ")
        if state == "running" and container.strip():
            ids.append(container.strip()[:12])
    return ids


def healthy_api_containers(stack: SwarmStack) -> list[str]:
    """Ids of the API's running containers whose healthcheck passes."""
    return [
        cid
        for cid in api_containers(stack)
        if docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip()
        == "healthy"
    ]


def wait_for(condition, timeout: float, what: str, step: float = 0.2) -> float:  # noqa: ANN001
    """Wait until ``condition()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)
    return time.monotonic() - started


def replicas_seen(stack: SwarmStack, scrapes: int = 12) -> set[str]:
    """The ``replica`` labels of /metrics answers fetched through the load balancer."""
    seen = set()
    for _ in range(scrapes):
        text = requests.get(f"http://127.0.0.1:{stack.api_port}/metrics", timeout=10).text
        seen |= set(re.findall(r'churn_api_models_loaded\{replica="([^"]+)"\}', text))
    return seen


def test_replicas_behind_the_balancer_give_the_same_answers(stack: SwarmStack) -> None:
    url = f"http://127.0.0.1:{stack.api_port}"
    answers = {
        requests.post(f"{url}/predict", json=EXAMPLE_CUSTOMER, timeout=10).json()[
            "churn_probability"
        ]
        for _ in range(12)
    }
    assert len(answers) == 1
    hostnames = {
        docker("inspect", "--format", "{{.Config.Hostname}}", c).stdout.strip()
        for c in api_containers(stack)
    }
    assert len(hostnames) == 2
    # round robin: both replicas answered, each under its own label (its host name)
    assert replicas_seen(stack) == hostnames


def test_rolling_update_to_a_rebuilt_image_fails_no_request(
    stack: SwarmStack, wrk_script: Path
) -> None:
    rolled = f"{stack.image('api')}-rolled"
    build = subprocess.run(
        ["docker", "build", "-q", "--label", f"{ROLLED_LABEL}=1", "-t", rolled, "-"],
        input=f"FROM {stack.image('api')}\nLABEL churn.rollout=2\n",
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    before = set(api_containers(stack))
    load = start_wrk(stack, wrk_script, seconds=240)
    try:
        time.sleep(3)
        started = time.monotonic()
        update = docker(
            "service", "update", "--detach=false", "--no-resolve-image", "--image", rolled,
            f"{stack.name}_api", timeout=300,
        )  # fmt: skip
        FIGURES["rolling_update_seconds"] = round(time.monotonic() - started, 1)
        time.sleep(3)
    finally:
        result = stop_wrk(load)
    assert update.returncode == 0, update.stderr + update.stdout
    FIGURES["rolling_update"] = {
        "requests": result.requests,
        "failed": result.failed,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
    }
    state = docker(
        "service", "inspect", "--format", "{{.UpdateStatus.State}}", f"{stack.name}_api"
    ).stdout.strip()
    assert state == "completed"  # not rolled back
    tasks = api_tasks(stack)
    assert len(tasks) == 2 and all(t["Image"].startswith(rolled) for t in tasks)
    assert not before & set(api_containers(stack))  # every replica was replaced
    assert result.requests > 0 and result.failed == 0, FIGURES["rolling_update"]


def test_a_killed_replica_loses_at_most_its_requests_in_flight_and_comes_back(
    stack: SwarmStack, wrk_script: Path
) -> None:
    wait_for(lambda: len(healthy_api_containers(stack)) == 2, 120, "2 healthy replicas")
    victim = api_containers(stack)[0]
    load = start_wrk(stack, wrk_script, seconds=120)
    try:
        time.sleep(3)
        killed_at = time.monotonic()
        assert docker("kill", "--signal", "KILL", victim).returncode == 0
        back = wait_for(
            lambda: len([c for c in healthy_api_containers(stack) if c != victim]) == 2,
            90,
            "a new replica, healthy",
        )
        FIGURES["killed_replica_back_seconds"] = round(back, 1)
        FIGURES["killed_replica_back_target_seconds"] = 10
        time.sleep(2)
        FIGURES["killed_replica_serving_seconds"] = round(time.monotonic() - killed_at, 1)
    finally:
        result = stop_wrk(load)
    FIGURES["killed_replica"] = {
        "requests": result.requests,
        "failed": result.failed,
        "socket_errors": result.socket_errors,
        "in_flight_bound": CONNECTIONS,
    }
    # at most the requests in flight on the killed replica fail: never more than the open
    # connections (each carries one request at a time)
    assert result.requests > 0 and result.failed <= CONNECTIONS, FIGURES["killed_replica"]
    assert len(replicas_seen(stack)) == 2


@pytest.mark.parametrize("replicas", [1, 2])
def test_throughput_with_one_and_two_replicas_is_reported(
    stack: SwarmStack, wrk_script: Path, replicas: int
) -> None:
    scaled = docker(
        "service", "scale", "--detach=false", f"{stack.name}_api={replicas}", timeout=300
    )
    assert scaled.returncode == 0, scaled.stderr
    wait_for(lambda: len(healthy_api_containers(stack)) == replicas, 120, f"{replicas} replicas")
    time.sleep(3)  # the balancer's DNS and health checks catch up
    result = run_wrk(stack, wrk_script, seconds=15)
    FIGURES[f"throughput_{replicas}_replica_req_per_s"] = result.per_second
    FIGURES[f"throughput_{replicas}_replica_failed"] = result.failed
    assert result.requests > 0 and result.failed == 0
