"""Bad input against the running API: every case gets the contract's JSON 4xx naming the problem.

Each case is sent over a fresh connection exactly as written (http.client or a raw socket, so
nothing is normalised on the way), then checked for: the expected 4xx status, a JSON body of
the shape ``{"error": {"code", "message", "details": [{"field", "problem"}]}}``, the expected
error code, and the problem named (a field in ``details`` or words in the message). Afterwards
the service must be healthy and must have answered no 5xx at all (`/metrics`).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from dataclasses import dataclass, field

import pytest
import requests
from reliability_support import Stack, customer, figure

MAX_BODY = 2 * 1024 * 1024  # configs/api.yaml max_body_bytes
MAX_BATCH = 1000  # configs/api.yaml max_batch


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _raw(text: str) -> bytes:
    return text.encode()


@dataclass(frozen=True)
class Case:
    """One bad request and what the answer must say."""

    name: str
    status: int
    code: str
    body: bytes | None = None
    method: str = "POST"
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    #: A field that must appear in ``details`` (exactly), if any.
    detail_field: str | None = None
    #: Words that must appear in the message or in a detail's problem (case-insensitive).
    words: tuple[str, ...] = ()


def _batch(instances: object) -> bytes:
    return _json({"instances": instances})


GOOD = customer()
CASES: list[Case] = [
    # --- the body as a whole
    Case("malformed JSON", 400, "malformed_json", _raw('{"gender": "Female",'), words=("json",)),
    Case("truncated JSON", 400, "malformed_json", _json(GOOD)[:-7], words=("json",)),
    Case("single quotes", 400, "malformed_json", _raw("{'gender': 'Female'}"), words=("json",)),
    Case("empty body", 400, "malformed_json", b"", words=("empty",)),
    Case("whitespace body", 400, "malformed_json", b" \n\t ", words=("empty",)),
    Case("invalid UTF-8", 400, "malformed_json", b'{"gender": "\xff\xfe"}', words=("json",)),
    Case(
        "nested 100,000 deep",
        400,
        "malformed_json",
        b"[" * 100_000 + b"]" * 100_000,
        words=("nested",),
    ),  # fmt: skip
    Case(
        "integer of 5,000 digits",
        400,
        "malformed_json",
        _raw('{"tenure": ' + "9" * 5000 + "}"),
        words=("json",),
    ),  # fmt: skip
    Case(
        "text/plain content type",
        415,
        "unsupported_media_type",
        _json(GOOD),
        headers={"Content-Type": "text/plain"},
        words=("content-type", "text/plain"),
    ),  # fmt: skip
    Case(
        "no content type",
        415,
        "unsupported_media_type",
        _json(GOOD),
        headers={},
        words=("content-type",),
    ),  # fmt: skip
    Case(
        "form-encoded body",
        415,
        "unsupported_media_type",
        b"gender=Female&tenure=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        words=("application/x-www-form-urlencoded",),
    ),  # fmt: skip
    Case("array body", 422, "validation_error", _json([GOOD]), detail_field="body"),
    Case("string body", 422, "validation_error", _json("churn?"), detail_field="body"),
    Case("number body", 422, "validation_error", _raw("42"), detail_field="body"),
    Case("null body", 422, "validation_error", _raw("null"), detail_field="body"),
    # --- fields
    Case(
        "missing field",
        422,
        "validation_error",
        _json({k: v for k, v in GOOD.items() if k != "tenure"}),
        detail_field="tenure",
        words=("missing",),
    ),  # fmt: skip
    Case("empty object", 422, "validation_error", _json({}), detail_field="Contract"),
    Case(
        "extra field",
        422,
        "validation_error",
        _json({**GOOD, "favouriteColour": "teal"}),
        detail_field="favouriteColour",
        words=("unknown field",),
    ),  # fmt: skip
    Case(
        "misspelled field name",
        422,
        "validation_error",
        _json({**{k: v for k, v in GOOD.items() if k != "tenure"}, "Tenure": 1}),
        detail_field="Tenure",
        words=("did you mean 'tenure'",),
    ),  # fmt: skip
    Case(
        "category in wrong case",
        422,
        "validation_error",
        _json(customer(Contract="month-to-month")),
        detail_field="Contract",
        words=("did you mean 'Month-to-month'",),
    ),  # fmt: skip
    Case(
        "misspelled category",
        422,
        "validation_error",
        _json(customer(InternetService="Fibre optic")),
        detail_field="InternetService",
        words=("Fiber optic",),
    ),  # fmt: skip
    Case(
        "look-alike category (Cyrillic e)",
        422,
        "validation_error",
        _json(customer(gender="F\u0435male")),
        detail_field="gender",
    ),  # fmt: skip
    Case(
        "number for a category",
        422,
        "validation_error",
        _json(customer(gender=1)),
        detail_field="gender",
    ),  # fmt: skip
    Case(
        "null for a category",
        422,
        "validation_error",
        _json(customer(Partner=None)),
        detail_field="Partner",
        words=("null",),
    ),  # fmt: skip
    Case(
        "word for a number",
        422,
        "validation_error",
        _json(customer(tenure="twelve")),
        detail_field="tenure",
        words=("twelve",),
    ),  # fmt: skip
    Case(
        "exponent string for a number",
        422,
        "validation_error",
        _json(customer(MonthlyCharges="1e3")),
        detail_field="MonthlyCharges",
    ),  # fmt: skip
    Case(
        "padded numeric string",
        422,
        "validation_error",
        _json(customer(tenure=" 12")),
        detail_field="tenure",
    ),  # fmt: skip
    Case(
        "boolean for a number",
        422,
        "validation_error",
        _json(customer(SeniorCitizen=True)),
        detail_field="SeniorCitizen",
        words=("boolean",),
    ),  # fmt: skip
    Case(
        "array for a number",
        422,
        "validation_error",
        _json(customer(MonthlyCharges=[29.85])),
        detail_field="MonthlyCharges",
    ),  # fmt: skip
    Case(
        "fractional tenure",
        422,
        "validation_error",
        _json(customer(tenure=5.5)),
        detail_field="tenure",
        words=("whole number",),
    ),  # fmt: skip
    Case(
        "negative tenure",
        422,
        "validation_error",
        _json(customer(tenure=-1)),
        detail_field="tenure",
        words=("between",),
    ),  # fmt: skip
    Case(
        "negative TotalCharges string",
        422,
        "validation_error",
        _json(customer(TotalCharges="-5")),
        detail_field="TotalCharges",
    ),  # fmt: skip
    Case(
        "SeniorCitizen 2",
        422,
        "validation_error",
        _json(customer(SeniorCitizen=2)),
        detail_field="SeniorCitizen",
        words=("between 0 and 1",),
    ),  # fmt: skip
    Case(
        "huge MonthlyCharges 1e308",
        422,
        "validation_error",
        _json(customer(MonthlyCharges=1e308)),
        detail_field="MonthlyCharges",
        words=("between",),
    ),  # fmt: skip
    Case(
        "huge integer (400 digits)",
        422,
        "validation_error",
        _raw(json.dumps(customer(tenure=0)).replace('"tenure": 0', '"tenure": ' + "9" * 400)),
        detail_field="tenure",
    ),  # fmt: skip
    Case(
        "NaN literal",
        422,
        "validation_error",
        _raw(
            json.dumps(customer(MonthlyCharges=0)).replace(
                '"MonthlyCharges": 0', '"MonthlyCharges": NaN'
            )
        ),
        detail_field="MonthlyCharges",
        words=("finite",),
    ),  # fmt: skip
    Case(
        "Infinity literal",
        422,
        "validation_error",
        _raw(
            json.dumps(customer(TotalCharges=0)).replace(
                '"TotalCharges": 0', '"TotalCharges": Infinity'
            )
        ),
        detail_field="TotalCharges",
        words=("finite",),
    ),  # fmt: skip
    Case(
        "-Infinity literal",
        422,
        "validation_error",
        _raw(json.dumps(customer(tenure=0)).replace('"tenure": 0', '"tenure": -Infinity')),
        detail_field="tenure",
    ),  # fmt: skip
    Case(
        "customerID not a string",
        422,
        "validation_error",
        _json(customer(customerID=7590)),
        detail_field="customerID",
    ),  # fmt: skip
    Case(
        "customerID of 500 chars",
        422,
        "validation_error",
        _json(customer(customerID="x" * 500)),
        detail_field="customerID",
        words=("at most",),
    ),  # fmt: skip
    Case(
        "several problems at once",
        422,
        "validation_error",
        _json(customer(tenure=-3, gender="X", Contract=None)),
        detail_field="gender",
        words=("3 problems",),
    ),  # fmt: skip
    # --- batches
    Case(
        "batch over the limit",
        422,
        "batch_too_large",
        _batch([GOOD] * (MAX_BATCH + 1)),
        path="/predict/batch",
        detail_field="instances",
        words=(str(MAX_BATCH),),
    ),  # fmt: skip
    Case(
        "empty batch",
        422,
        "validation_error",
        _batch([]),
        path="/predict/batch",
        detail_field="instances",
        words=("at least 1",),
    ),  # fmt: skip
    Case(
        "instances not an array",
        422,
        "validation_error",
        _batch(GOOD),
        path="/predict/batch",
        detail_field="instances",
        words=("array",),
    ),  # fmt: skip
    Case(
        "batch without instances",
        422,
        "validation_error",
        _json(GOOD),
        path="/predict/batch",
        detail_field="instances",
        words=("missing",),
    ),  # fmt: skip
    Case(
        "one bad record in a batch",
        422,
        "validation_error",
        _batch([GOOD, GOOD, GOOD, customer(tenure="n/a")]),
        path="/predict/batch",
        detail_field="instances[3].tenure",
    ),  # fmt: skip
    Case(
        "batch as a bare array",
        422,
        "validation_error",
        _json([GOOD]),
        path="/predict/batch",
        detail_field="body",
    ),  # fmt: skip
    # --- size limits
    Case(
        "body over the limit",
        413,
        "payload_too_large",
        _raw('{"customerID": "' + "x" * MAX_BODY + '"}'),
        words=(str(MAX_BODY),),
    ),  # fmt: skip
    # --- model versions, methods, paths, headers
    Case(
        "unknown model version",
        404,
        "unknown_model",
        _json(GOOD),
        path="/predict?model=v9",
        detail_field="model",
        words=("v9", "v1, v2"),
    ),  # fmt: skip
    Case(
        "model version of 5,000 chars",
        404,
        "unknown_model",
        _json(GOOD),
        path="/predict?model=" + "v" * 5000,
        detail_field="model",
    ),  # fmt: skip
    Case(
        "model version with URL escapes",
        404,
        "unknown_model",
        _json(GOOD),
        path="/predict?model=%00%27%22%3Cscript%3E",
        detail_field="model",
    ),  # fmt: skip
    Case(
        "GET /predict",
        405,
        "method_not_allowed",
        None,
        method="GET",
        headers={},
        words=("POST",),
    ),  # fmt: skip
    Case(
        "PUT /predict/batch",
        405,
        "method_not_allowed",
        _batch([GOOD]),
        method="PUT",
        path="/predict/batch",
        words=("POST",),
    ),  # fmt: skip
    Case(
        "DELETE /health",
        405,
        "method_not_allowed",
        None,
        method="DELETE",
        path="/health",
        headers={},
        words=("GET",),
    ),  # fmt: skip
    Case(
        "POST /models",
        405,
        "method_not_allowed",
        _json(GOOD),
        path="/models",
        words=("GET",),
    ),  # fmt: skip
    Case("unknown path", 404, "not_found", None, method="GET", path="/predictions", headers={}),
    Case(
        "path traversal",
        404,
        "not_found",
        None,
        method="GET",
        path="/static/../../../../etc/passwd",
        headers={},
    ),  # fmt: skip
    Case(
        "encoded path traversal",
        404,
        "not_found",
        None,
        method="GET",
        path="/static/..%2f..%2f..%2fetc%2fpasswd",
        headers={},
    ),  # fmt: skip
    Case("NUL in the path", 404, "not_found", None, method="GET", path="/%00", headers={}),
    Case(
        "path of 8,000 chars",
        404,
        "not_found",
        None,
        method="GET",
        path="/" + "a" * 8000,
        headers={},
    ),  # fmt: skip
    Case(
        "headers over Waitress's limit",
        431,
        "headers_too_large",
        _json(GOOD),
        headers={"Content-Type": "application/json", "X-Filler": "f" * 300_000},
        words=("header",),
    ),  # fmt: skip
]

#: Answers the contract expects for inputs that look odd but are valid (controls).
ACCEPTED: list[tuple[str, dict[str, object]]] = [
    ("blank TotalCharges, as the raw file has", customer(tenure=0, TotalCharges=" ")),
    ("empty TotalCharges", customer(tenure=0, TotalCharges="")),
    ("null TotalCharges", customer(tenure=0, TotalCharges=None)),
    ("numeric strings, as CSV exports write them", customer(MonthlyCharges="29.85", tenure="1")),
    ("whole number written as 5.0", customer(tenure=5.0)),
]


def send(
    stack: Stack, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send one request exactly as given on a fresh connection; return status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def check_error(status: int, headers: dict[str, str], raw: bytes, case: Case) -> dict:
    """Check the contract's error shape; return the error object."""
    assert status == case.status, f"{case.name}: {status} {raw[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == case.code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], list), error
    for detail in error["details"]:
        assert set(detail) == {"field", "problem"}, detail
        assert all(isinstance(v, str) and v for v in detail.values()), detail
    if case.detail_field is not None:
        fields = [d["field"] for d in error["details"]]
        assert case.detail_field in fields, f"{case.name}: {case.detail_field} not in {fields}"
    text = " ".join([error["message"], *(d["problem"] for d in error["details"])]).lower()
    for word in case.words:
        assert word.lower() in text, f"{case.name}: {word!r} not in {text[:500]!r}"
    assert "traceback" not in raw.decode("utf-8", "replace").lower()
    return error


def test_the_catalogue_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_json_4xx_naming_the_problem(stack: Stack, case: Case) -> None:
    status, headers, raw = send(stack, case.method, case.path, case.body, case.headers)
    check_error(status, headers, raw, case)
    if case.status == 405:
        assert headers.get("allow"), "a 405 must say which methods are allowed"


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(stack: Stack) -> None:
    """Content-Length of 50 MB: the answer is a 413 at once, without reading the body."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        conn.putrequest("POST", "/predict/batch")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(50 * 1024 * 1024))
        conn.endheaders()
        conn.send(b'{"instances": [')
        response = conn.getresponse()
        case = Case("declared 50 MB", 413, "payload_too_large", words=("large",))
        headers = {k.lower(): v for k, v in response.getheaders()}
        check_error(response.status, headers, response.read(), case)
    finally:
        conn.close()


def test_malformed_http_gets_a_json_400(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    headers = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (line.decode().partition(":") for line in head.split(b"\r\n")[1:])
    )
    check_error(status, headers, body, Case("bad Content-Length", 400, "bad_request"))


def test_a_very_long_request_id_is_not_echoed(stack: Stack) -> None:
    r = requests.post(
        f"{stack.api_url}/predict", json=GOOD, headers={"X-Request-ID": "r" * 10_000}, timeout=30
    )
    assert r.status_code == 200, r.text
    assert len(r.headers["X-Request-ID"]) <= 128
    assert r.json()["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.parametrize("record", [r for _, r in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_odd_but_valid_input_is_accepted(stack: Stack, record: dict[str, object]) -> None:
    r = requests.post(f"{stack.api_url}/predict", json=record, timeout=30)
    assert r.status_code == 200, r.text
    assert 0.0 <= r.json()["churn_probability"] <= 1.0


def test_the_service_is_healthy_afterwards_and_answered_no_5xx(stack: Stack) -> None:
    assert requests.get(f"{stack.api_url}/health", timeout=10).json() == {"status": "ok"}
    ready = stack.ready()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["models"]["status"] == "ok"
    metrics = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    statuses = {}
    for line in re.finditer(r"^churn_api_requests_total\{(.*)\} (\S+)$", metrics, re.M):
        status = re.search(r'status="(\d+)"', line.group(1))
        assert status, line.group(0)
        statuses[status.group(1)] = statuses.get(status.group(1), 0.0) + float(line.group(2))
    assert statuses, "no request counted in /metrics"
    server_errors = {s: n for s, n in statuses.items() if s.startswith("5")}
    assert not server_errors, f"5xx answers counted in /metrics: {server_errors}"
    figure(
        "bad-input catalogue",
        f"{len(CASES) + 2} bad requests, each a JSON 4xx naming the problem; "
        f"{len(ACCEPTED)} odd-but-valid ones answered 200; 0 5xx in /metrics",
    )
