"""The ``/predict`` fast path answers exactly as Flask does, and leaves everything else to it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from churn.api import fastpath
from churn.api.fastpath import PredictFastPath
from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.request_log import flush_logs
from churn.api.state import get_state

#: Headers that differ between two answers to the same request.
_VARYING = {"X-Request-ID", "Date"}


class Twin:
    """The app through its fast path, and the same app's Flask alone; counts Flask's calls."""

    def __init__(self, app: Flask) -> None:
        front = app.wsgi_app
        assert isinstance(front, PredictFastPath)
        self.flask_only = front.app
        self.flask_calls = 0

        def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            self.flask_calls += 1
            return self.flask_only(environ, start_response)

        front.app = counting
        self.front = Client(front)
        self.plain = Client(self.flask_only)

    def both(self, **request: Any) -> tuple[TestResponse, TestResponse, bool]:
        """Send one request both ways: (fast path's answer, Flask's, whether Flask answered)."""
        request.setdefault("method", "POST")
        before = self.flask_calls
        fast = self.front.open(**request)
        declined = self.flask_calls > before
        return fast, self.plain.open(**request), declined


def _headers(response: TestResponse) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.items() if k not in _VARYING]


def _same(fast: TestResponse, flask: TestResponse) -> None:
    assert fast.status_code == flask.status_code
    assert _headers(fast) == _headers(flask)
    fast_body, flask_body = fast.get_json(), flask.get_json()
    for body in (fast_body, flask_body):
        body.pop("request_id", None)
        if isinstance(body.get("error"), dict):
            body["error"].pop("request_id", None)
    assert fast_body == flask_body


@pytest.fixture
def twin(app: Flask) -> Twin:
    return Twin(app)


@pytest.mark.parametrize("path", ["/predict", "/predict?model=v1", "/predict?model=v2"])
@pytest.mark.parametrize(
    "customer",
    [
        EXAMPLE_CUSTOMER,
        {k: v for k, v in EXAMPLE_CUSTOMER.items() if k != "customerID"},
        {**EXAMPLE_CUSTOMER, "TotalCharges": None, "tenure": 0, "customerID": "C-2"},
        {**EXAMPLE_CUSTOMER, "Contract": "Two year", "customerID": "C-3"},
    ],
    ids=["example", "no-id", "no-charges", "two-year"],
)
def test_a_plain_predict_is_answered_in_front_with_flasks_bytes(
    twin: Twin, customer: dict[str, object], path: str
) -> None:
    body = json.dumps(customer).encode()
    request = {
        "path": path,
        "data": body,
        "content_type": "application/json",
        "headers": {"X-Request-ID": "same-id-1"},
    }
    fast, flask, declined = twin.both(**request)
    assert not declined
    assert fast.status_code == 200
    assert fast.data == flask.data  # byte for byte, the request id included
    assert _headers(fast) == _headers(flask)
    assert fast.headers["X-Request-ID"] == flask.headers["X-Request-ID"] == "same-id-1"
    assert fast.headers["X-Model-Version"] == fast.get_json()["model"]
    if "=" in path:
        assert fast.get_json()["model"] == path.rpartition("=")[2]


def test_a_new_request_id_is_given_when_the_callers_is_missing_or_insane(twin: Twin) -> None:
    for headers in ({}, {"X-Request-ID": "has space"}):
        fast, _, declined = twin.both(path="/predict", json=EXAMPLE_CUSTOMER, headers=headers)
        assert not declined
        given = fast.headers["X-Request-ID"]
        assert len(given) == 32 and given == fast.get_json()["request_id"]


@pytest.mark.parametrize(
    ("request_args", "status"),
    [
        ({"path": "/predict?model=v1&explain=true", "json": EXAMPLE_CUSTOMER}, 200),
        ({"path": "/predict?explain=true", "json": EXAMPLE_CUSTOMER}, 200),
        ({"path": "/predict?model=%76%31", "json": EXAMPLE_CUSTOMER}, 200),
        ({"path": "/predict?model=v9", "json": EXAMPLE_CUSTOMER}, 404),
        ({"path": "/predict?model=", "json": EXAMPLE_CUSTOMER}, 404),
        ({"path": "/predict?other=1", "json": EXAMPLE_CUSTOMER}, 200),
        (
            {
                "path": "/predict",
                "data": json.dumps(EXAMPLE_CUSTOMER),
                "content_type": "application/json; charset=utf-8",
            },
            200,
        ),
        ({"path": "/predict", "json": {**EXAMPLE_CUSTOMER, "tenure": -3}}, 422),
        ({"path": "/predict", "json": [EXAMPLE_CUSTOMER]}, 422),
        ({"path": "/predict", "data": b"{not json", "content_type": "application/json"}, 400),
        ({"path": "/predict", "data": b"   ", "content_type": "application/json"}, 400),
        ({"path": "/predict", "data": b"", "content_type": "application/json"}, 400),
        ({"path": "/predict", "data": json.dumps(EXAMPLE_CUSTOMER)}, 415),
        ({"path": "/predict", "json": {"x": "y" * 70_000}}, 413),
        ({"path": "/predict/batch", "json": {"instances": [EXAMPLE_CUSTOMER] * 3}}, 200),
        ({"path": "/predict", "method": "GET"}, 405),
        ({"path": "/predict", "method": "PUT", "json": EXAMPLE_CUSTOMER}, 405),
    ],
    ids=[
        "model-and-explain",
        "explain",
        "escaped-model",
        "unknown-model",
        "empty-model",
        "other-query",
        "charset",
        "invalid-field",
        "not-an-object",
        "malformed",
        "blank",
        "empty",
        "not-json-type",
        "too-large",
        "batch",
        "get",
        "put",
    ],
)
def test_everything_else_is_answered_by_flask_with_its_body(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    request_args: dict[str, Any],
    status: int,
) -> None:
    twin = Twin(make_app(max_body_bytes=65_536))
    with caplog.at_level(logging.WARNING, logger="churn.api"):
        fast, flask, declined = twin.both(**request_args)
    assert declined
    assert not [r for r in caplog.records if "fast path failed" in r.getMessage()]  # declined
    assert fast.status_code == status
    _same(fast, flask)


def test_a_fast_answer_is_counted_and_logged_as_flasks_is(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    app = make_app(log_dir=str(log_dir))
    twin, state = Twin(app), get_state(app)
    registry = state.metrics.registry

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    request_labels = {"endpoint": "/predict", "method": "POST", "status": "200"}
    for _ in range(3):
        fast, _, declined = twin.both(
            path="/predict", json=EXAMPLE_CUSTOMER, headers={"X-Request-ID": "count-me"}
        )
        assert not declined
    assert sample("churn_api_requests_total", **request_labels) == 6
    assert sample("churn_api_served_total", version="v2", alias="none") == 6
    assert sample("churn_api_request_latency_seconds_count", endpoint="/predict") == 6
    churned = fast.get_json()["churn"]
    assert sample("churn_api_predictions_total", model="v2", churn=str(churned).lower()) == 6

    flush_logs()
    lines = [json.loads(line) for line in next(log_dir.glob("api-*.log")).read_text().splitlines()]
    requests = [line for line in lines if line["message"] == "request"]
    assert len(requests) == 6
    for line in requests:
        assert line["request_id"] == "count-me" and line["method"] == "POST"
        assert line["path"] == "/predict" and line["status"] == 200
        assert line["model"] == "v2" and line["batch_size"] == 1


def test_an_unexpected_failure_falls_back_to_flask_and_is_logged_once(
    twin: Twin, app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> dict[str, object]:
        raise RuntimeError("broken answer")

    monkeypatch.setattr(fastpath, "single_answer", broken)
    served = get_state(app).router.served
    with caplog.at_level(logging.WARNING, logger="churn.api"):
        for _ in range(2):
            fast, flask, declined = twin.both(path="/predict", json=EXAMPLE_CUSTOMER)
            assert declined and fast.status_code == 200
            _same(fast, flask)
    warnings = [r for r in caplog.records if "fast path failed" in r.getMessage()]
    assert len(warnings) == 1
    # counted once per answer, by Flask: the fast path had counted nothing when it failed
    assert served.labels("v2", "none")._value.get() == 4
