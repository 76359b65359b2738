"""Helpers of the lifecycle suite: its registry-mode stack, alias moves, wrk loads, figures.

The suite's stack is a Compose project of its own (``churn-lifecycle`` by default) with
``CHURN_MODEL_SOURCE=registry``, on free ports of 127.0.0.1 and its own network, started from
the images already built. Aliases are moved with the functions behind ``nox -s promote``
(`churn_ops.promotion.promote`) against the suite's MLflow server. The load is wrk, bounded in
time and connections, driven by `benchmarks.wrk` with ``served.lua``, which also counts the
answers by the version and alias that served them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.registry_names import ALIASES, CHAMPION, REGISTERED_MODEL
from churn_ops.stack import Stack, StackNotHealthy, docker, health_of

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the wrk driver of `nox -s bench`, beside src/

from benchmarks.procstat import cpu_seconds, tree_pids  # noqa: E402 - importable only from here on
from benchmarks.wrk import WrkResult, run_wrk  # noqa: E402

SCRIPT = Path(__file__).with_name("served.lua")
#: wrk's connections and threads in every load of the suite (the issue's 16 connections).
CONNECTIONS = 16
THREADS = 2
#: The share of customers the API sends to the challenger (the issue's 0.10).
CANARY_WEIGHT = 0.10
#: The customer every load posts (default traffic); its hash sends it to the champion.
LOAD_CUSTOMER = "7590-VHVEG"
JSON = "application/json"
#: Longest wait for a move to be served, a restart, MLflow coming back: a limit, not a target.
WAIT_LIMIT = 120.0

#: Figures measured by the tests, printed at the end of the run and written as JSON.
FIGURES: dict[str, Any] = {}


def seconds_setting(name: str, default: int) -> int:
    """Return a whole number of seconds from the environment (wrk takes whole seconds)."""
    value = int(os.environ.get(name) or default)
    if value < 1:
        raise ValueError(f"{name} must be at least 1 second, got {value}")
    return value


def wrk_figures(result: WrkResult) -> dict[str, Any]:
    """The figures of one wrk run worth reporting, rounded."""
    return {
        "seconds": round(result.duration_s, 1),
        "requests": result.requests,
        "requests_per_s": round(result.requests_per_s, 1),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "max_ms": round(result.max_ms or 0.0, 1),
        "non_2xx": result.status_errors,
        "socket_errors": dict(result.socket_errors),
    }


def customer(customer_id: str) -> dict[str, object]:
    """A valid customer object with ``customer_id``."""
    return {"customerID": customer_id, **EXAMPLE_CUSTOMER}


#: The body of every load and probe: one prediction for `LOAD_CUSTOMER`.
LOAD_BODY = json.dumps(customer(LOAD_CUSTOMER)).encode()


@dataclass
class Load:
    """One bounded wrk run on POST /predict (default traffic) of the suite's API."""

    result: WrkResult
    #: answers by "status version alias" (``{"200 v1 champion": 5120}``)
    served: dict[str, int]

    @property
    def failed(self) -> int:
        """Non-2xx answers plus socket errors of every kind."""
        return self.result.errors

    def versions(self) -> set[str]:
        """The versions that answered."""
        return {key.split(" ")[1] for key in self.served}


@dataclass
class Answer:
    """One answer seen by the `Prober`: when (monotonic), its status, version and alias."""

    at: float
    status: int
    version: str
    alias: str


@dataclass
class Prober:
    """Posts one default-traffic prediction every ``every`` seconds and keeps each answer."""

    port: int
    body: bytes
    every: float = 0.05
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Probe until `stop` (one keep-alive connection, opened again after a failure)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": JSON}
        while not self._stop.is_set():
            try:
                conn.request("POST", "/predict", self.body, headers)
                response = conn.getresponse()
                response.read()
                version = response.getheader("X-Model-Version") or "-"
                alias = response.getheader("X-Model-Alias") or "-"
                self.answers.append(Answer(time.monotonic(), response.status, version, alias))
            except (OSError, http.client.HTTPException):
                self.answers.append(Answer(time.monotonic(), 0, "-", "-"))
                conn.close()
            self._stop.wait(self.every)
        conn.close()

    def stop(self) -> None:
        """End the probing loop."""
        self._stop.set()

    def first(self, version: str, after: float) -> Answer | None:
        """The first answer by ``version`` seen after the monotonic time ``after``."""
        return next((a for a in self.answers if a.at >= after and a.version == version), None)

    def failures(self) -> list[Answer]:
        """Answers that were not a 200."""
        return [a for a in self.answers if a.status != 200]


class LifecycleStack(Stack):
    """The suite's own registry-mode stack, and ways to move its aliases and load it."""

    def __init__(self, project: str, workdir: Path, api_port: int, mlflow_port: int) -> None:
        """Describe the stack beside the main one: registry mode, polled every 5 s, canary 0.10.

        `serve` asks the API to look at the registry at once (``POST /registry/refresh`` with
        the stack's token); the moves the tests measure wait for the poll.

        The canary weight only matters once a ``challenger`` is set, and then only for the
        customers whose hash falls under it: the loads' customer (`LOAD_CUSTOMER`) is not one.
        """
        poll = os.environ.get("LIFECYCLE_REGISTRY_POLL", "5")
        self.token = secrets.token_hex(16)
        settings = {
            "CHURN_REGISTRY_POLL": poll,
            "CHURN_REGISTRY_TOKEN": self.token,
            "CHURN_CANARY_WEIGHT": str(CANARY_WEIGHT),
        }
        super().__init__(
            mlruns_dir=workdir / "mlruns", logs_dir=workdir / "logs", api_port=api_port,
            mlflow_port=mlflow_port, project=project, bind="127.0.0.1", network=project,
            extra_env={"CHURN_MODEL_SOURCE": "registry", "CHURN_SHADOW": "false", **settings},
        )  # fmt: skip
        self.workdir = workdir
        self.poll = float(poll)
        self._client: Any = None

    # -- the registry ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """An `mlflow.MlflowClient` of the suite's MLflow server."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.mlflow_url)
        return self._client

    def register(self, root: Path, versions: tuple[str, ...] = ("v1", "v2")) -> list[str]:
        """Register ``versions`` of the artifacts under ``root`` as training does; their numbers."""
        from churn.mlflow_store import register_serving_version
        from churn.model_record import read_record, record_path

        experiment = self.client.create_experiment("churn-lifecycle-suite")
        numbers = []
        for version in versions:
            run = self.client.create_run(experiment)
            self.client.set_terminated(run.info.run_id)
            tracking = {"tracking_uri": self.mlflow_url, "run_id": run.info.run_id}
            record = read_record(root / "models", version)
            path = record_path(root / "models", version)
            numbers.append(register_serving_version(root, record, path, tracking))
        return numbers

    def promote(self, version: str, alias: str = CHAMPION) -> str:
        """Point ``alias`` at ``version`` the way `nox -s promote` does; what changed."""
        from churn_ops.promotion import promote

        return str(promote(self.client, version, alias))

    # -- the API ---------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        """One request to the API on a connection of its own: status, response, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            return response.status, response, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET ``path`` of the API: its status and JSON body."""
        status, _, data = self.call("GET", path)
        return status, json.loads(data or b"{}")

    def answered_by(self, body: bytes) -> str:
        """The version that answers one default-traffic prediction now."""
        _, response, _ = self.call("POST", "/predict", body, **{"Content-Type": JSON})
        return response.getheader("X-Model-Version") or "-"

    def metrics(self) -> str:
        """The API's /metrics text."""
        return self.call("GET", "/metrics")[2].decode()

    def aliases(self) -> dict[str, str]:
        """The aliases the API serves (``/models``)."""
        return dict(self.get("/models")[1].get("aliases", {}))

    def wait_until(self, what: str, probe: Callable[[], bool], limit: float = WAIT_LIMIT) -> float:
        """Poll ``probe`` every 0.1 s until True; the seconds it took (fails after ``limit``)."""
        started = time.monotonic()
        while True:
            try:
                if probe():
                    return time.monotonic() - started
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.monotonic() - started > limit:
                raise AssertionError(f"{what}: not within {limit:.0f} s")
            time.sleep(0.1)

    def serve(self, **aliases: str) -> None:
        """Point the aliases at versions (``champion="v1"``), no other, and wait until served."""
        for alias, version in aliases.items():
            self.promote(version, alias)
        current = self.client.get_registered_model(REGISTERED_MODEL).aliases or {}
        for alias in set(ALIASES) & set(current) - set(aliases):
            self.client.delete_registered_model_alias(REGISTERED_MODEL, alias)
        status, _, data = self.call(
            "POST", "/registry/refresh", Authorization=f"Bearer {self.token}"
        )  # look now rather than at the next poll
        assert status == 202, data[:500]
        self.wait_until(f"the API serving {aliases}", lambda: self.aliases() == aliases)

    def configure(self, *, recreate: bool = False, **env: str) -> float | None:
        """Run the API with these settings (``CHURN_SHADOW="true"``); seconds to healthy.

        Only the API container is recreated, and only when a setting changed (None then) or
        ``recreate`` asks for a fresh one anyway.
        """
        wanted = {**self.extra_env, **env}
        if wanted == self.extra_env and not recreate:
            return None
        self.extra_env = wanted
        started = time.monotonic()
        fresh = ("--force-recreate",) if recreate else ()
        out = self.run("up", "-d", *fresh, "--no-build", "--no-deps", "api", timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        try:
            self.wait_healthy(timeout=WAIT_LIMIT, give_up_on=("unhealthy", "exited", "dead"))
        except StackNotHealthy as exc:
            logs = self.run("logs", "--tail", "40", "api", timeout=60).stdout[-3000:]
            raise AssertionError(f"the API did not come back healthy: {exc}\n{logs}") from None
        return time.monotonic() - started

    def api_cpu_seconds(self) -> float:
        """CPU seconds the API container's processes have used so far (from /proc)."""
        out = docker("inspect", "-f", "{{.State.Pid}}", self.container("api"), timeout=60)
        seconds = cpu_seconds(tree_pids(int(out.stdout.strip())))
        assert seconds is not None, "the API's processes could not be read in /proc"
        return seconds

    def mlflow_state(self) -> str:
        """The MLflow container's health (or state)."""
        return health_of(self.container("mlflow"))[0]

    def stop_mlflow(self) -> None:
        """Stop the suite's MLflow container (`docker stop`)."""
        docker("stop", self.container("mlflow"), timeout=120, check=True)

    def start_mlflow(self) -> None:
        """Start the suite's MLflow container again (`docker start`)."""
        docker("start", self.container("mlflow"), timeout=120, check=True)

    # -- load ------------------------------------------------------------------------------

    @contextmanager
    def load(self, seconds: int, body: bytes) -> Iterator[Future[Load]]:
        """Run wrk on POST /predict for ``seconds`` in the background; yield its future `Load`."""
        body_file = self.workdir / "load-body.json"
        body_file.write_bytes(body)

        def run() -> Load:
            result, out = run_wrk(
                f"{self.api_url}/predict", method="POST", body_file=body_file,
                duration_s=seconds, threads=THREADS, connections=CONNECTIONS, script=SCRIPT,
            )  # fmt: skip
            found = re.search(r"^SERVED_JSON (\{.*\})$", out, re.M)
            assert found, out
            return Load(result, json.loads(found.group(1)))

        with ThreadPoolExecutor(1) as pool:
            yield pool.submit(run)

    @contextmanager
    def probing(self, body: bytes, every: float = 0.05) -> Iterator[Prober]:
        """Probe default traffic every ``every`` seconds while the block runs."""
        prober = Prober(self.api_port, body, every)
        thread = threading.Thread(target=prober.run, name="prober", daemon=True)
        thread.start()
        try:
            yield prober
        finally:
            prober.stop()
            thread.join(timeout=15)


def sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples ``name`` of a /metrics text whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels or {}).items() <= s.labels.items():
                total += float(s.value)
    return total


def write_figures(path: Path) -> None:
    """Write the recorded figures as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2) + "\n", encoding="utf-8")
