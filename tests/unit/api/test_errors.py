"""The bad-input catalogue: every case gets a fitting 4xx JSON error, never a 5xx."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.state import get_state

GOOD = json.dumps(EXAMPLE_CUSTOMER)
JSON = "application/json"


def with_(**changes: object) -> str:
    return json.dumps({**EXAMPLE_CUSTOMER, **changes})


def without(*names: str) -> str:
    return json.dumps({k: v for k, v in EXAMPLE_CUSTOMER.items() if k not in names})


def batch(instances: object) -> str:
    return json.dumps({"instances": instances})


# (id, method, path, body, content type, status, error code, a field named in details or None)
CATALOGUE: list[tuple[str, str, str, str | bytes | None, str | None, int, str, str | None]] = [
    ("malformed json", "POST", "/predict", "{not json", JSON, 400, "malformed_json", None),
    ("truncated json", "POST", "/predict", GOOD[:-5], JSON, 400, "malformed_json", None),
    ("empty body", "POST", "/predict", "", JSON, 400, "malformed_json", None),
    ("whitespace body", "POST", "/predict", "  \n", JSON, 400, "malformed_json", None),
    ("invalid utf-8", "POST", "/predict", b'{"gender": "\xff"}', JSON, 400, "malformed_json", None),
    ("deep nesting", "POST", "/predict", "[" * 100_000, JSON, 400, "malformed_json", None),
    (
        "huge integer",
        "POST",
        "/predict",
        '{"tenure": ' + "9" * 5000 + "}",
        JSON,
        400,
        "malformed_json",
        None,
    ),
    ("no content type", "POST", "/predict", GOOD, None, 415, "unsupported_media_type", None),
    ("text/plain", "POST", "/predict", GOOD, "text/plain", 415, "unsupported_media_type", None),
    (
        "form post",
        "POST",
        "/predict",
        "a=1",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        None,
    ),
    ("array body", "POST", "/predict", "[]", JSON, 422, "validation_error", "body"),
    ("string body", "POST", "/predict", '"hello"', JSON, 422, "validation_error", "body"),
    ("null body", "POST", "/predict", "null", JSON, 422, "validation_error", "body"),
    ("number body", "POST", "/predict", "42", JSON, 422, "validation_error", "body"),
    ("empty object", "POST", "/predict", "{}", JSON, 422, "validation_error", "tenure"),
    (
        "missing field",
        "POST",
        "/predict",
        without("Contract"),
        JSON,
        422,
        "validation_error",
        "Contract",
    ),
    (
        "extra field",
        "POST",
        "/predict",
        with_(favourite_colour="blue"),
        JSON,
        422,
        "validation_error",
        "favourite_colour",
    ),
    ("case typo", "POST", "/predict", with_(Tenure=5), JSON, 422, "validation_error", "Tenure"),
    (
        "misspelled category",
        "POST",
        "/predict",
        with_(Contract="Monthly"),
        JSON,
        422,
        "validation_error",
        "Contract",
    ),
    (
        "wrong case category",
        "POST",
        "/predict",
        with_(gender="female"),
        JSON,
        422,
        "validation_error",
        "gender",
    ),
    (
        "string tenure words",
        "POST",
        "/predict",
        with_(tenure="twelve"),
        JSON,
        422,
        "validation_error",
        "tenure",
    ),
    (
        "negative tenure",
        "POST",
        "/predict",
        with_(tenure=-3),
        JSON,
        422,
        "validation_error",
        "tenure",
    ),
    (
        "huge tenure",
        "POST",
        "/predict",
        with_(tenure=10**12),
        JSON,
        422,
        "validation_error",
        "tenure",
    ),
    (
        "fractional tenure",
        "POST",
        "/predict",
        with_(tenure=2.5),
        JSON,
        422,
        "validation_error",
        "tenure",
    ),
    (
        "boolean senior",
        "POST",
        "/predict",
        with_(SeniorCitizen=True),
        JSON,
        422,
        "validation_error",
        "SeniorCitizen",
    ),
    (
        "senior 2",
        "POST",
        "/predict",
        with_(SeniorCitizen=2),
        JSON,
        422,
        "validation_error",
        "SeniorCitizen",
    ),
    (
        "NaN literal",
        "POST",
        "/predict",
        GOOD.replace("29.85,", "NaN,", 1),
        JSON,
        422,
        "validation_error",
        "MonthlyCharges",
    ),
    (
        "Infinity literal",
        "POST",
        "/predict",
        GOOD.replace("29.85}", "Infinity}"),
        JSON,
        422,
        "validation_error",
        "TotalCharges",
    ),
    (
        "-Infinity literal",
        "POST",
        "/predict",
        GOOD.replace("29.85,", "-Infinity,", 1),
        JSON,
        422,
        "validation_error",
        "MonthlyCharges",
    ),
    (
        "1e400 overflow",
        "POST",
        "/predict",
        GOOD.replace("29.85,", "1e400,", 1),
        JSON,
        422,
        "validation_error",
        "MonthlyCharges",
    ),
    (
        "negative charges",
        "POST",
        "/predict",
        with_(MonthlyCharges=-1),
        JSON,
        422,
        "validation_error",
        "MonthlyCharges",
    ),
    (
        "null monthly",
        "POST",
        "/predict",
        with_(MonthlyCharges=None),
        JSON,
        422,
        "validation_error",
        "MonthlyCharges",
    ),
    (
        "string NaN",
        "POST",
        "/predict",
        with_(TotalCharges="NaN"),
        JSON,
        422,
        "validation_error",
        "TotalCharges",
    ),
    (
        "object value",
        "POST",
        "/predict",
        with_(PaymentMethod={"a": 1}),
        JSON,
        422,
        "validation_error",
        "PaymentMethod",
    ),
    (
        "numeric customerID",
        "POST",
        "/predict",
        with_(customerID=5),
        JSON,
        422,
        "validation_error",
        "customerID",
    ),
    ("unknown model", "POST", "/predict?model=v9", GOOD, JSON, 404, "unknown_model", "model"),
    ("empty model", "POST", "/predict?model=", GOOD, JSON, 404, "unknown_model", "model"),
    (
        "batch unknown model",
        "POST",
        "/predict/batch?model=latest",
        batch([EXAMPLE_CUSTOMER]),
        JSON,
        404,
        "unknown_model",
        "model",
    ),
    ("batch not object", "POST", "/predict/batch", "[]", JSON, 422, "validation_error", "body"),
    (
        "batch no instances",
        "POST",
        "/predict/batch",
        "{}",
        JSON,
        422,
        "validation_error",
        "instances",
    ),
    (
        "batch instances object",
        "POST",
        "/predict/batch",
        '{"instances": {}}',
        JSON,
        422,
        "validation_error",
        "instances",
    ),
    (
        "batch empty",
        "POST",
        "/predict/batch",
        batch([]),
        JSON,
        422,
        "validation_error",
        "instances",
    ),
    (
        "batch extra key",
        "POST",
        "/predict/batch",
        json.dumps({"instances": [EXAMPLE_CUSTOMER], "x": 1}),
        JSON,
        422,
        "validation_error",
        "x",
    ),
    (
        "batch bad record",
        "POST",
        "/predict/batch",
        batch([EXAMPLE_CUSTOMER, {**EXAMPLE_CUSTOMER, "tenure": -1}]),
        JSON,
        422,
        "validation_error",
        "instances[1].tenure",
    ),
    (
        "batch non-object record",
        "POST",
        "/predict/batch",
        batch([EXAMPLE_CUSTOMER, 7]),
        JSON,
        422,
        "validation_error",
        "instances[1]",
    ),
    (
        "batch over limit",
        "POST",
        "/predict/batch",
        batch([EXAMPLE_CUSTOMER] * 1001),
        JSON,
        422,
        "batch_too_large",
        "instances",
    ),
    (
        "single sent as batch",
        "POST",
        "/predict",
        batch([EXAMPLE_CUSTOMER]),
        JSON,
        422,
        "validation_error",
        "instances",
    ),
    ("unknown path", "GET", "/predictions", None, None, 404, "not_found", None),
    ("odd path", "GET", "/../../etc/passwd", None, None, 404, "not_found", None),
    ("trailing slash", "POST", "/predict/", GOOD, JSON, 404, "not_found", None),
    ("long odd path", "GET", "/" + "a" * 5000, None, None, 404, "not_found", None),
    ("GET predict", "GET", "/predict", None, None, 405, "method_not_allowed", None),
    ("PUT batch", "PUT", "/predict/batch", GOOD, JSON, 405, "method_not_allowed", None),
    ("DELETE models", "DELETE", "/models", None, None, 405, "method_not_allowed", None),
    ("POST health", "POST", "/health", "{}", JSON, 405, "method_not_allowed", None),
    ("unknown swagger asset", "GET", "/docs/assets/index.html", None, None, 404, "not_found", None),
]


def _send(client: FlaskClient, method: str, path: str, body: Any, content_type: str | None):
    headers = {"Content-Type": content_type} if content_type else {}
    data = body.encode() if isinstance(body, str) else body
    return client.open(path, method=method, data=data, headers=headers)


def _assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert all(set(d) == {"field", "problem"} for d in error["details"])
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code", "field"),
    [case[1:] for case in CATALOGUE],
    ids=[case[0] for case in CATALOGUE],
)
def test_bad_input_gets_the_contract_error(
    client: FlaskClient,
    method: str,
    path: str,
    body: Any,
    content_type: str | None,
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = _send(client, method, path, body, content_type)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    payload = response.get_json()
    _assert_error_shape(payload, code)
    if field is not None:
        assert field in [d["field"] for d in payload["error"]["details"]]
    if status == 405:
        assert "Allow" in response.headers


def test_the_catalogue_never_reaches_the_catch_all(app: Flask) -> None:
    client = app.test_client()
    assert len(CATALOGUE) >= 30
    for _, method, path, body, content_type, status, _, _ in CATALOGUE:
        assert _send(client, method, path, body, content_type).status_code == status
    assert get_state(app).internal_errors == 0
    assert client.get("/ready").status_code == 200
    assert client.post("/predict", json=EXAMPLE_CUSTOMER).status_code == 200


def test_unknown_model_lists_the_available_versions(client: FlaskClient) -> None:
    body = client.post("/predict?model=v3", json=EXAMPLE_CUSTOMER).get_json()
    assert "available: v1, v2" in body["error"]["message"]


def test_declared_body_over_the_limit_is_refused_before_reading(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(max_body_bytes=4096).test_client()

    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body was read")

        readline = read

    response = client.post(
        "/predict",
        input_stream=Unreadable(),
        headers={"Content-Type": JSON},
        environ_overrides={"CONTENT_LENGTH": "5000"},
    )
    assert response.status_code == 413
    _assert_error_shape(response.get_json(), "payload_too_large")


def test_body_over_the_limit_without_length_is_cut_while_reading(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(max_body_bytes=4096)
    client = app.test_client()
    big = json.dumps({**EXAMPLE_CUSTOMER, "customerID": "x" * 10_000}).encode()
    response = client.post(
        "/predict",
        input_stream=io.BytesIO(big),
        headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"},
        # as a server that de-chunks bodies itself says (Waitress sets Content-Length instead)
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    _assert_error_shape(response.get_json(), "payload_too_large")
    assert get_state(app).internal_errors == 0


def test_body_limit_setting_applies(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_body_bytes=2048).test_client()
    response = client.post("/predict/batch", json={"instances": [EXAMPLE_CUSTOMER] * 10})
    assert response.status_code == 413
    assert client.post("/predict", json=EXAMPLE_CUSTOMER).status_code == 200


def test_many_problems_are_capped_in_details(client: FlaskClient) -> None:
    response = client.post("/predict/batch", json={"instances": [{}] * 20})
    error = response.get_json()["error"]
    assert response.status_code == 422
    assert len(error["details"]) == 100 and "380 problems" in error["message"]


def test_unexpected_errors_answer_a_bare_json_500(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app()  # built under capsys, so its log lines are captured
    state = get_state(app)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    state.models.predict_proba = explode  # type: ignore[union-attr, method-assign]
    response = app.test_client().post("/predict", json=EXAMPLE_CUSTOMER)
    assert response.status_code == 500
    _assert_error_shape(response.get_json(), "internal_error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert state.internal_errors == 1
    logged = capsys.readouterr().out
    assert "secret internal detail" in logged and "Traceback" in logged
