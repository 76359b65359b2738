"""The prediction fast path answers exactly as Flask does, and leaves everything else to it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from churn.api import fastpath
from churn.api.fastpath import PredictFastPath
from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.request_log import flush_logs
from churn.api.state import get_state
from churn.schema import FEATURE_COLUMNS

from .test_protocols import V2_TYPES

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
        self.state = front._state
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


@pytest.mark.parametrize(
    "path",
    [
        "/predict",
        "/predict?model=v1",
        "/predict?model=v2",
        "/predict?explain=true",
        "/predict?model=v1&explain=1",
        "/predict?explain=false&model=v2",
    ],
)
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
    if "model=" in path:
        assert fast.get_json()["model"] == path.partition("model=")[2][:2]
    assert ("explanation" in fast.get_json()) == ("explain=true" in path or "explain=1" in path)


def test_a_new_request_id_is_given_when_the_callers_is_missing_or_insane(twin: Twin) -> None:
    for headers in ({}, {"X-Request-ID": "has space"}):
        fast, _, declined = twin.both(path="/predict", json=EXAMPLE_CUSTOMER, headers=headers)
        assert not declined
        given = fast.headers["X-Request-ID"]
        assert len(given) == 32 and given == fast.get_json()["request_id"]


@pytest.mark.parametrize(
    ("request_args", "status"),
    [
        ({"path": "/predict?explain=maybe", "json": EXAMPLE_CUSTOMER}, 400),
        ({"path": "/predict?model=v1&model=v2", "json": EXAMPLE_CUSTOMER}, 200),
        ({"path": "/predict?explain=1&explain=0", "json": EXAMPLE_CUSTOMER}, 200),
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
        ({"path": "/predict/batch", "json": {"instances": [{"tenure": "x"}]}}, 422),
        ({"path": "/predict/batch", "json": {"instances": []}}, 422),
        ({"path": "/predict/batch?model=v9", "json": {"instances": [EXAMPLE_CUSTOMER]}}, 404),
        ({"path": "/predict/batch", "data": b"[", "content_type": "application/json"}, 400),
        ({"path": "/predict", "method": "GET"}, 405),
        ({"path": "/predict", "method": "PUT", "json": EXAMPLE_CUSTOMER}, 405),
        ({"path": "/invocations", "json": {"dataframe_records": [{"tenure": -1}]}}, 400),
        ({"path": "/invocations", "data": b"not json", "content_type": "application/json"}, 400),
        ({"path": "/invocations", "data": b"a,b", "content_type": "text/plain"}, 415),
        ({"path": "/invocations?model=v9", "json": {"instances": [EXAMPLE_CUSTOMER]}}, 404),
        ({"path": "/v2/models/churn/infer", "json": {"inputs": "no"}}, 400),
        ({"path": "/v2/models/other/infer", "json": {"inputs": []}}, 404),
        ({"path": "/v2/models/churn/versions/v9/infer", "json": {"inputs": []}}, 404),
        ({"path": "/v2/models/churn/versions/v1/infer/", "json": {"inputs": []}}, 404),
        ({"path": "/v2/models/churn/infer", "method": "GET"}, 405),
    ],
    ids=[
        "bad-explain",
        "two-models",
        "two-explains",
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
        "batch-invalid",
        "batch-empty",
        "batch-unknown-model",
        "batch-malformed",
        "get",
        "put",
        "invocations-invalid",
        "invocations-malformed",
        "invocations-type",
        "invocations-unknown-model",
        "v2-bad-inputs",
        "v2-other-model",
        "v2-unknown-version",
        "v2-trailing-slash",
        "v2-get",
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


def _v2_inputs(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [
        {"name": column, "datatype": V2_TYPES[column], "shape": [len(rows)], "data": values}
        for column, values in ((c, [r[c] for r in rows]) for c in FEATURE_COLUMNS)
    ]


def _tables() -> list[tuple[str, str, bytes]]:
    rows = [EXAMPLE_CUSTOMER, {**EXAMPLE_CUSTOMER, "tenure": 40, "TotalCharges": None}]
    features = [{c: r[c] for c in FEATURE_COLUMNS} for r in rows]
    split = {"columns": list(FEATURE_COLUMNS), "data": [list(r.values()) for r in features]}
    csv = (
        ",".join(FEATURE_COLUMNS)
        + "\n"
        + "\n".join(",".join("" if v is None else str(v) for v in r.values()) for r in features)
    )
    v2 = {"id": "r-1", "inputs": _v2_inputs(features)}
    # Well typed (decoded in one pass), then in forms only the general path accepts.
    batch = {"instances": [*rows, {**EXAMPLE_CUSTOMER, "customerID": "c-9"}] * 4}
    spelt = {"instances": [*batch["instances"], {**EXAMPLE_CUSTOMER, "tenure": "12"}]}
    explained = {"inputs": _v2_inputs(features), "parameters": {"explain": True}}
    binary = {
        "id": "r-2",
        "inputs": _v2_inputs(features),
        "parameters": {"binary_data_output": True},
    }
    return [
        ("/predict/batch", "application/json", json.dumps(batch).encode()),
        ("/predict/batch?model=v1", "application/json", json.dumps(batch).encode()),
        ("/predict/batch?explain=true", "application/json", json.dumps(batch).encode()),
        ("/predict/batch", "application/json", json.dumps(spelt).encode()),
        ("/predict/batch", "application/json", json.dumps({"instances": rows[:1]}).encode()),
        ("/invocations", "application/json", json.dumps({"dataframe_records": features}).encode()),
        (
            "/invocations?model=v1",
            "application/json",
            json.dumps({"dataframe_split": split}).encode(),
        ),
        ("/invocations", "text/csv", csv.encode()),
        ("/v2/models/churn/infer", "application/json", json.dumps(v2).encode()),
        ("/v2/models/churn/versions/v1/infer", "application/json", json.dumps(v2).encode()),
        ("/v2/models/churn/infer?explain=true", "application/json", json.dumps(v2).encode()),
        ("/v2/models/churn/versions/v2/infer", "application/json", json.dumps(explained).encode()),
        ("/v2/models/churn/infer", "application/json", json.dumps(binary).encode()),
        ("/invocations", "application/json", json.dumps({"instances": features}).encode()),
    ]


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    _tables(),
    ids=[
        "batch",
        "batch-v1",
        "batch-explain",
        "batch-numeric-string",
        "batch-of-one",
        "records",
        "split-v1",
        "csv",
        "v2",
        "v2-v1",
        "v2-explain-query",
        "v2-explain",
        "v2-binary-outputs",
        "instances",
    ],
)
def test_protocol_answers_are_given_in_front_with_flasks_bytes(
    twin: Twin, path: str, content_type: str, body: bytes
) -> None:
    fast, flask, declined = twin.both(
        path=path, data=body, content_type=content_type, headers={"X-Request-ID": "table-1"}
    )
    assert not declined
    assert fast.status_code == 200, fast.data
    assert fast.data == flask.data
    assert _headers(fast) == _headers(flask)
    assert fast.headers["X-Request-ID"] == "table-1"


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

    # A V2 infer of v1, by its versioned path.
    path = "/v2/models/churn/versions/v1/infer"
    content_type, body = next((t, b) for p, t, b in _tables() if p == path)
    _, _, declined = twin.both(path=path, data=body, content_type=content_type)
    assert not declined
    v2_labels = {"endpoint": "/v2/models/<name>/versions/<version>/infer", "method": "POST"}
    assert sample("churn_api_requests_total", **v2_labels, status="200") == 2
    assert sample("churn_api_served_total", version="v1", alias="none") == 2

    flush_logs()
    lines = [json.loads(line) for line in next(log_dir.glob("api-*.log")).read_text().splitlines()]
    requests = [line for line in lines if line["message"] == "request"]
    assert len(requests) == 8
    assert [line["batch_size"] for line in requests[6:]] == [2, 2]
    for line in requests[:6]:
        assert line["request_id"] == "count-me" and line["method"] == "POST"
        assert line["path"] == "/predict" and line["status"] == 200
        assert line["model"] == "v2" and line["batch_size"] == 1


@pytest.mark.parametrize("declared", ["\u00b2", "-1", "1e3", " 9"])
def test_an_odd_declared_length_goes_to_flask(twin: Twin, declared: str) -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": declared,
        "wsgi.input": io.BytesIO(b"{}"),
    }
    seen: list[dict[str, Any]] = []

    def flask_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(environ)
        return []

    front = PredictFastPath(flask_app, twin.state)
    assert front(environ, lambda *args: None) == []
    assert seen == [environ]


def test_an_unexpected_failure_falls_back_to_flask_and_is_logged_once(
    twin: Twin, app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> bytes:
        raise RuntimeError("broken answer")

    # The answer's writing fails, after scoring: only the fast path writes with it.
    monkeypatch.setattr(fastpath, "orjson", SimpleNamespace(dumps=broken))
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


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict?explain=true", EXAMPLE_CUSTOMER),
        ("/predict/batch?explain=true", {"instances": [EXAMPLE_CUSTOMER]}),
        ("/v2/models/churn/infer?explain=true", None),
    ],
    ids=["predict", "batch", "v2"],
)
def test_a_refused_explanation_scores_and_counts_nothing(
    twin: Twin, app: Flask, monkeypatch: pytest.MonkeyPatch, path: str, body: object
) -> None:
    """Explained before scoring: a 4xx for a model without explanations leaves no drift count."""
    from churn.api import predict, v2
    from churn.serving.prediction import ExplanationUnavailableError, ServingModels

    def unavailable(*args: object) -> None:
        raise ExplanationUnavailableError("this model has no explanation")

    scored: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        scored.append(path)
        return real_score(*args, **kwargs)

    real_score = predict.score
    monkeypatch.setattr(ServingModels, "explain", unavailable)
    for module in (predict, v2):  # the fast path scores with their steps
        monkeypatch.setattr(module, "score", counting)
    if body is None:
        body = {"inputs": _v2_inputs([{c: EXAMPLE_CUSTOMER[c] for c in FEATURE_COLUMNS}])}
    fast, flask, _ = twin.both(path=path, json=body)
    assert fast.status_code == flask.status_code
    assert fast.status_code in (400, 422), fast.data
    assert scored == []
    assert get_state(app).router.served.labels("v2", "none")._value.get() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [(p, b) for p, t, b in _tables() if t == "application/json" and not p.startswith("/predict")],
)
def test_protocol_requests_in_json_are_answered_without_a_request_object(
    twin: Twin, monkeypatch: pytest.MonkeyPatch, path: str, body: bytes
) -> None:
    def no_request(*args: Any) -> None:
        raise AssertionError("a request object was built")

    monkeypatch.setattr(fastpath, "Request", no_request)
    fast, flask, declined = twin.both(path=path, data=body, content_type="application/json")
    assert not declined and fast.status_code == 200
    assert fast.data == flask.data
