"""MLflow serving statistics: sent off the request path to a fake server; degraded when down."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.state import get_state
from churn.api.stats import EXPERIMENT, MlflowStats, redact_uri

from .fake_mlflow import FakeMlflow


@pytest.fixture
def fake() -> Iterator[FakeMlflow]:
    server = FakeMlflow()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_thread_sends_serving_statistics(make_app: Callable[..., Flask], fake: FakeMlflow) -> None:
    env = {"MLFLOW_TRACKING_URI": fake.url, "CHURN_REPLICA": "api-2"}
    app = make_app(env=env, stats_interval=0.2)
    stats = get_state(app).stats
    assert stats is not None
    client = app.test_client()
    wait_for(lambda: stats.run_id is not None)
    assert fake.experiments == {EXPERIMENT: "1"}
    run = fake.runs[stats.run_id]
    tags = {t["key"]: t["value"] for t in run["request"]["tags"]}
    assert tags["replica"] == "api-2" and run["request"]["run_name"].startswith("api-api-2-")
    params = {p["key"]: p["value"] for p in run["params"]}
    assert params["default_model"] == "v2" and params["model_versions"] == "v1,v2"
    assert params["algorithm_v1"] == "LogisticRegression"

    probabilities = []
    for _ in range(3):
        body = client.post("/predict?model=v1", json=EXAMPLE_CUSTOMER).get_json()
        probabilities.append(body["churn_probability"])
    body = client.post("/predict/batch", json={"instances": [EXAMPLE_CUSTOMER] * 5}).get_json()
    client.post("/predict", json={})  # rejected

    wait_for(lambda: sum(fake.metrics().get("requests", [])) == 4)
    metrics = fake.metrics()
    assert sum(metrics["requests_v1"]) == 3 and sum(metrics["predictions_v2"]) == 5
    assert sum(metrics["rejected_requests"]) == 1
    assert metrics["mean_churn_probability_v1"][-1] == pytest.approx(probabilities[0])
    assert metrics["latency_p50_ms"][-1] > 0
    assert metrics["latency_p99_ms"][-1] >= metrics["latency_p50_ms"][-1]
    ready = client.get("/ready").get_json()
    assert ready["status"] == "ready" and ready["checks"]["mlflow"]["status"] == "ok"
    assert b'churn_api_mlflow_up{replica="api-2"} 1.0' in client.get("/metrics").data

    stats.stop(timeout=2)
    assert fake.runs[run_id := stats.run_id]["status"] == "FINISHED", run_id


def test_mlflow_down_is_degraded_then_resumes(make_app: Callable[..., Flask]) -> None:
    port = free_port()
    app = make_app(env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, stats_interval=3600)
    stats = get_state(app).stats
    assert stats is not None
    client = app.test_client()
    wait_for(lambda: stats.health()["status"] == "degraded")

    started = time.perf_counter()
    for _ in range(5):
        assert client.post("/predict", json=EXAMPLE_CUSTOMER).status_code == 200
    assert time.perf_counter() - started < 2.0  # MLflow being down does not slow predictions
    ready = client.get("/ready")
    body = ready.get_json()
    assert ready.status_code == 200 and body["status"] == "degraded"
    assert body["checks"]["mlflow"]["status"] == "degraded"
    assert "cannot connect" in body["checks"]["mlflow"]["reason"]
    mlflow_down = rb'\nchurn_api_mlflow_up\{replica="[^"]+"\} 0\.0\n'
    assert re.search(mlflow_down, client.get("/metrics").data)

    assert stats.flush() is False  # still down: the interval's points are kept
    assert stats.health()["pending_points"] > 0

    fake = FakeMlflow(port)  # MLflow comes back on the same address
    try:
        assert stats.flush() is True
        assert client.get("/ready").get_json()["status"] == "ready"
        assert sum(fake.metrics()["requests_v2"]) == 5  # the buffered points arrived
        assert stats.health()["pending_points"] == 0
    finally:
        stats.stop(timeout=2)
        fake.close()


def test_run_is_recreated_when_the_server_lost_it(fake: FakeMlflow) -> None:
    stats = MlflowStats(fake.url, 3600)
    assert stats.flush() is True
    first = stats.run_id
    fake.runs.clear()  # e.g. the MLflow store was reset
    assert stats.flush() is False  # refused once: the chunk is dropped, the run forgotten
    assert stats.flush() is True and stats.run_id not in (None, first)


def test_credentials_are_sent_but_never_shown() -> None:
    stats = MlflowStats("http://user:pw@127.0.0.1:9", 10)
    assert stats.tracking_uri == "http://127.0.0.1:9"
    assert "pw" not in str(stats.health())
    assert redact_uri("https://a:b@host:5000/x") == "https://host:5000/x"
    assert redact_uri("http://host") == "http://host"


def test_no_stats_thread_without_an_http_tracking_uri(make_app: Callable[..., Flask]) -> None:
    app = make_app(env={"MLFLOW_TRACKING_URI": "sqlite:///mlruns/mlflow.db"})
    assert get_state(app).stats is None
    body = app.test_client().get("/ready").get_json()
    assert body["checks"]["mlflow"]["status"] == "disabled"
