"""Open Inference Protocol V2, MLflow's scoring protocol and ``?explain=true``, built by hand.

Requests follow the specifications (the OIP REST API and its binary tensor data extension;
MLflow's ``/invocations`` formats); every answer is checked against ``/predict`` on the same
customers, and every bad input gets a 4xx in the protocol's own error shape.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.state import get_state
from churn.config import ArtifactPaths
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, NUMERIC

V2_TYPES = {
    c: "BYTES" if c in CATEGORICAL else ("INT64" if NUMERIC[c].integer else "FP64")
    for c in FEATURE_COLUMNS
}


@pytest.fixture
def customers(make_records) -> list[dict[str, object]]:
    rows = make_records(6, seed=3)
    rows[1]["TotalCharges"] = None
    return rows


def predict(client: FlaskClient, rows: list[dict[str, object]], version: str) -> list[float]:
    answer = client.post(f"/predict/batch?model={version}", json={"instances": rows})
    assert answer.status_code == 200
    return [p["churn_probability"] for p in answer.get_json()["predictions"]]


def v2_inputs(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [
        {"name": c, "datatype": V2_TYPES[c], "shape": [len(rows)], "data": [r[c] for r in rows]}
        for c in FEATURE_COLUMNS
    ]


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


# -- ?explain=true ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_predict_explain_adds_contributions_that_sum_to_the_log_odds(
    client: FlaskClient, version: str
) -> None:
    answer = client.post(f"/predict?model={version}&explain=true", json=EXAMPLE_CUSTOMER)
    assert answer.status_code == 200
    body = answer.get_json()
    why = body["explanation"]
    assert list(why["contributions"]) == list(FEATURE_COLUMNS)
    total = why["base_value"] + sum(why["contributions"].values())
    assert total == pytest.approx(logit(body["churn_probability"]), abs=1e-6)
    assert why["log_odds"] == pytest.approx(total, abs=1e-9)
    plain = client.post(f"/predict?model={version}", json=EXAMPLE_CUSTOMER).get_json()
    assert "explanation" not in plain
    assert plain["churn_probability"] == body["churn_probability"]


def test_batch_explain_explains_each_prediction(client: FlaskClient, customers) -> None:
    answer = client.post("/predict/batch?explain=1", json={"instances": customers})
    assert answer.status_code == 200
    predictions = answer.get_json()["predictions"]
    assert len(predictions) == len(customers)
    sums = set()
    for item in predictions:
        why = item["explanation"]
        total = why["base_value"] + sum(why["contributions"].values())
        assert total == pytest.approx(logit(item["churn_probability"]), abs=1e-6)
        sums.add(round(total, 6))
    assert len(sums) > 1


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_bad_explain_flag_is_a_400_naming_it(client: FlaskClient, path: str) -> None:
    body = EXAMPLE_CUSTOMER if path == "/predict" else {"instances": [EXAMPLE_CUSTOMER]}
    answer = client.post(f"{path}?explain=perhaps", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["details"][0]["field"] == "explain"


# -- Open Inference Protocol V2 -------------------------------------------------------------


def test_v2_health_and_server_metadata(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/churn/ready").status_code == 200
    assert client.get("/v2/models/churn/versions/v1/ready").status_code == 200
    server = client.get("/v2").get_json()
    assert set(server) == {"name", "version", "extensions"}
    assert "binary_tensor_data" in server["extensions"]


def test_v2_health_ready_is_a_4xx_without_models(make_app, artifact_copy) -> None:
    ArtifactPaths(artifact_copy).compiled("v2").write_bytes(b"tampered")
    client = make_app(root=str(artifact_copy)).test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 400
    assert client.get("/v2/models/churn/ready").status_code == 400
    assert client.get("/ping").status_code == 404
    answer = client.post("/v2/models/churn/infer", json={"inputs": v2_inputs([EXAMPLE_CUSTOMER])})
    assert answer.status_code == 503
    assert "error" in answer.get_json()


def test_v2_model_metadata_lists_one_input_per_column(client: FlaskClient) -> None:
    meta = client.get("/v2/models/churn").get_json()
    assert meta["name"] == "churn"
    assert meta["versions"] == ["v1", "v2"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (c, V2_TYPES[c], [-1]) for c in FEATURE_COLUMNS
    ]
    assert {o["name"] for o in meta["outputs"]} >= {"churn_probability", "churn"}
    assert client.get("/v2/models/churn/versions/v1").get_json()["versions"] == ["v1"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_v2_infer_equals_predict(client: FlaskClient, customers, version: str) -> None:
    request = {"id": "req-42", "inputs": v2_inputs(customers)}
    answer = client.post(f"/v2/models/churn/versions/{version}/infer", json=request)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["model_name"] == "churn"
    assert body["model_version"] == version
    assert body["id"] == "req-42"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["churn_probability"]["datatype"] == "FP64"
    assert outputs["churn_probability"]["shape"] == [len(customers)]
    assert outputs["churn_probability"]["data"] == predict(client, customers, version)
    assert outputs["churn"]["data"] == [p >= 0.5 for p in outputs["churn_probability"]["data"]]


def test_v2_infer_without_a_version_uses_the_default(client: FlaskClient, customers) -> None:
    body = client.post("/v2/models/churn/infer", json={"inputs": v2_inputs(customers)}).get_json()
    assert body["model_version"] == "v2"
    assert "id" not in body


def test_v2_explain_outputs_sum_to_the_log_odds(client: FlaskClient, customers) -> None:
    request = {
        "inputs": v2_inputs(customers),
        "outputs": [
            {"name": "churn_probability"},
            {"name": "contributions"},
            {"name": "base_value"},
        ],
    }
    body = client.post("/v2/models/churn/versions/v1/infer", json=request).get_json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"churn_probability", "contributions", "base_value"}
    assert outputs["contributions"]["shape"] == [len(customers), 19]
    contributions = np.array(outputs["contributions"]["data"]).reshape(len(customers), 19)
    totals = contributions.sum(axis=1) + np.array(outputs["base_value"]["data"])
    expected = [logit(p) for p in outputs["churn_probability"]["data"]]
    assert np.abs(totals - expected).max() <= 1e-6
    by_parameter = client.post(
        "/v2/models/churn/versions/v1/infer",
        json={"inputs": v2_inputs(customers), "parameters": {"explain": True}},
    ).get_json()
    names = [o["name"] for o in by_parameter["outputs"]]
    assert names == ["churn_probability", "churn", "contributions", "base_value"]


def _bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def test_v2_binary_tensor_data_both_ways(client: FlaskClient, customers) -> None:
    customers[2]["TotalCharges"] = None
    inputs, chunks = [], []
    for c in FEATURE_COLUMNS:
        values = [r[c] for r in customers]
        if V2_TYPES[c] == "BYTES":
            raw = _bytes_tensor(values)  # type: ignore[arg-type]
        elif V2_TYPES[c] == "INT64":
            raw = np.array(values, dtype="<i8").tobytes()
        else:
            raw = np.array([np.nan if v is None else v for v in values], dtype="<f8").tobytes()
        chunks.append(raw)
        inputs.append(
            {
                "name": c,
                "datatype": V2_TYPES[c],
                "shape": [len(customers)],
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    answer = client.post(
        "/v2/models/churn/infer",
        data=header + b"".join(chunks),
        headers={"Inference-Header-Content-Length": str(len(header))},
        content_type="application/octet-stream",
    )
    assert answer.status_code == 200
    length = int(answer.headers["Inference-Header-Content-Length"])
    body = json.loads(answer.data[:length])
    outputs = body["outputs"]
    assert [o["name"] for o in outputs] == ["churn_probability", "churn"]
    size = outputs[0]["parameters"]["binary_data_size"]
    assert size == 8 * len(customers)
    probabilities = np.frombuffer(answer.data[length : length + size], dtype="<f8")
    verdicts = np.frombuffer(answer.data[length + size :], dtype=np.bool_)
    assert probabilities.tolist() == predict(client, customers, "v2")
    assert verdicts.tolist() == (probabilities >= 0.5).tolist()


def _v2_error(answer) -> str:
    body = answer.get_json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    return body["error"]


def _with(inputs: list[dict[str, object]], name: str, **changes: object) -> list[dict[str, object]]:
    return [{**t, **changes} if t["name"] == name else t for t in inputs]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad_value", "row 1: tenure"),
        ("bad_category", "row 0: Contract"),
        ("wrong_datatype", "'gender'"),
        ("numbers_as_text", "'tenure' row 0"),
        ("missing_input", "missing inputs: PaymentMethod"),
        ("unknown_input", "unknown input 'colour'"),
        ("shape_mismatch", "'MonthlyCharges'"),
        ("rows_differ", "'TotalCharges' has 1 rows"),
        ("no_inputs", "'inputs'"),
        ("unknown_output", "unknown output 'score'"),
        ("id_not_string", "'id'"),
        ("nan_tenure", "row 0: tenure"),
        ("object_names", "unknown output"),
        ("object_datatype", "datatype must be a string"),
        ("object_input_name", "unknown input"),
    ],
)
def test_v2_bad_requests_are_400_naming_the_input(
    client: FlaskClient, customers, case: str, expected: str
) -> None:
    rows = customers[:2]
    inputs = v2_inputs(rows)
    request: dict[str, object] = {"inputs": inputs}
    if case == "bad_value":
        request["inputs"] = _with(inputs, "tenure", data=[3, -1])
    elif case == "bad_category":
        request["inputs"] = _with(inputs, "Contract", data=["Forever", rows[1]["Contract"]])
    elif case == "wrong_datatype":
        request["inputs"] = _with(inputs, "gender", datatype="FP64")
    elif case == "numbers_as_text":
        request["inputs"] = _with(inputs, "tenure", data=["3", "4"])
    elif case == "missing_input":
        request["inputs"] = [t for t in inputs if t["name"] != "PaymentMethod"]
    elif case == "unknown_input":
        request["inputs"] = [*inputs, {"name": "colour", "datatype": "BYTES", "shape": [2]}]
    elif case == "shape_mismatch":
        request["inputs"] = _with(inputs, "MonthlyCharges", shape=[3])
    elif case == "rows_differ":
        request["inputs"] = _with(inputs, "TotalCharges", shape=[1], data=[1.0])
    elif case == "no_inputs":
        request["inputs"] = []
    elif case == "unknown_output":
        request["outputs"] = [{"name": "score"}]
    elif case == "id_not_string":
        request["id"] = 7
    elif case == "nan_tenure":
        request["inputs"] = _with(inputs, "tenure", datatype="FP64", data=[float("nan"), 1.0])
    elif case == "object_names":
        request["outputs"] = [{"name": {}}]
    elif case == "object_datatype":
        request["inputs"] = _with(inputs, "gender", datatype=["BYTES"])
    elif case == "object_input_name":
        request["inputs"] = [*inputs, {"name": {"a": 1}, "datatype": "BYTES", "shape": [2]}]
    data = json.dumps(request).encode()  # NaN is written as NaN, which Python's JSON reads
    answer = client.post("/v2/models/churn/infer", data=data, content_type="application/json")
    assert answer.status_code == 400
    assert expected in _v2_error(answer)


def test_v2_errors_keep_the_protocol_shape(client: FlaskClient, app: Flask) -> None:
    inputs = v2_inputs([EXAMPLE_CUSTOMER])
    cases = [
        (client.post("/v2/models/other/infer", json={"inputs": inputs}), 404),
        (client.post("/v2/models/churn/versions/v9/infer", json={"inputs": inputs}), 404),
        (client.get("/v2/models/churn/versions/v9"), 404),
        (client.get("/v2/nowhere"), 404),
        (client.get("/v2/models/churn/infer"), 405),
        (client.post("/v2/health/live"), 405),
        (client.post("/v2/models/churn/infer", data=b"{not json"), 400),
        (client.post("/v2/models/churn/infer", data=b""), 400),
        (client.post("/v2/models/churn/infer", json=[1, 2]), 400),
        (client.post("/v2/models/churn/infer?explain=maybe", json={"inputs": inputs}), 400),
        (
            client.post(
                "/v2/models/churn/infer",
                data=b"{}",
                headers={"Inference-Header-Content-Length": "99"},
            ),
            400,
        ),
        (
            client.post(
                "/v2/models/churn/infer",
                data=json.dumps(
                    {"inputs": _with(inputs, "gender", parameters={"binary_data_size": 5})}
                ).encode(),
                headers={"Inference-Header-Content-Length": "0"},
            ),
            400,
        ),
    ]
    for answer, status in cases:
        assert answer.status_code == status, answer.data
        _v2_error(answer)
    big = get_state(app).settings.max_body_bytes + 10
    answer = client.post("/v2/models/churn/infer", data=b" " * big)
    assert answer.status_code == 413
    _v2_error(answer)
    assert get_state(app).internal_errors == 0


# -- MLflow scoring protocol ----------------------------------------------------------------


def _csv(rows: list[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FEATURE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def mlflow_payloads(rows: list[dict[str, object]]) -> dict[str, tuple[str, str]]:
    """The same rows in every format MLflow's /invocations accepts: (content type, body)."""
    columns = list(FEATURE_COLUMNS)
    as_columns = {c: [r[c] for r in rows] for c in columns}
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    return {
        "dataframe_split": ("application/json", json.dumps({"dataframe_split": split})),
        "dataframe_records": ("application/json", json.dumps({"dataframe_records": rows})),
        "instances": ("application/json", json.dumps({"instances": rows})),
        "inputs": ("application/json", json.dumps({"inputs": as_columns})),
        "params": (
            "application/json",
            json.dumps({"dataframe_records": rows, "params": {"note": "ignored"}}),
        ),
        "csv": ("text/csv", _csv(rows)),
    }


@pytest.mark.parametrize(
    "kind", ["dataframe_split", "dataframe_records", "instances", "inputs", "params", "csv"]
)
def test_invocations_answers_probability_pairs_for_every_format(
    client: FlaskClient, customers, kind: str
) -> None:
    content_type, body = mlflow_payloads(customers)[kind]
    answer = client.post("/invocations?model=v1", data=body, content_type=content_type)
    assert answer.status_code == 200, answer.data
    pairs = answer.get_json()["predictions"]
    expected = predict(client, customers, "v1")
    assert [p[1] for p in pairs] == expected
    assert all(abs(p[0] + p[1] - 1.0) <= 1e-12 for p in pairs)


def test_ping_and_version(client: FlaskClient) -> None:
    assert client.get("/ping").status_code == 200
    version = client.get("/version")
    assert version.status_code == 200
    assert version.data.decode() == "3.17.2"


def _mlflow_error(answer) -> str:
    body = answer.get_json()
    assert set(body) == {"error_code", "message"}, body
    return body["message"]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "expected"),
    [
        ("application/json", '{"dataframe_records": [{"tenure": 3}]}', 400, "row 0: gender"),
        ("application/json", '{"instances": [], "inputs": []}', 400, "exactly one of"),
        ("application/json", '{"dataframe_records": []}', 400, "no rows"),
        (
            "application/json",
            '{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}',
            400,
            "data[0]",
        ),
        ("application/json", '{"dataframe_split": [1]}', 400, "dataframe_split"),
        ("application/json", '{"inputs": {"gender": ["Male"], "tenure": []}}', 400, "same number"),
        ("application/json", '{"inputs": 3}', 400, "inputs must be"),
        ("application/json", '{"dataframe_records": [1], "params": 2}', 400, "params"),
        ("application/json", "[1]", 400, "JSON object"),
        ("application/json", "{oops", 400, "not valid JSON"),
        ("text/csv", "gender,tenure\nMale\n", 400, "CSV row 0"),
        ("text/csv", "", 400, "empty"),
        ("text/plain", "x", 415, "content types"),
        ("text/csv; charset=latin-1", "x", 415, "UTF-8"),
    ],
)
def test_invocations_bad_input_is_a_4xx_in_mlflow_shape(
    client: FlaskClient, app: Flask, content_type: str, body: str, status: int, expected: str
) -> None:
    answer = client.post("/invocations", data=body, content_type=content_type)
    assert answer.status_code == status, answer.data
    assert expected in _mlflow_error(answer)
    assert get_state(app).internal_errors == 0


def test_invocations_unknown_model_and_method(client: FlaskClient) -> None:
    _, body = mlflow_payloads([EXAMPLE_CUSTOMER])["dataframe_records"]
    answer = client.post("/invocations?model=v7", data=body, content_type="application/json")
    assert answer.status_code == 404
    _mlflow_error(answer)
    answer = client.get("/invocations")
    assert answer.status_code == 405
    assert "POST" in answer.headers["Allow"]
    _mlflow_error(answer)


def test_v2_fast_path_gives_the_rows_of_the_full_checks(customers) -> None:
    from churn.api.v2 import _plain_rows, _rows

    inputs = v2_inputs(customers)
    fast = _plain_rows(inputs, 1000)
    # A "parameters" object on each tensor sends them through the full checks.
    full = _rows([{**t, "parameters": {}} for t in inputs], b"", 1000)
    assert fast is not None
    assert fast == full
    assert _plain_rows(_with(inputs, "TotalCharges", data=[float("nan")] * 6), 1000) is None
