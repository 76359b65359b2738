"""Request ids, the JSON request log (no customer values at INFO) and Prometheus metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.request_log import flush_logs
from churn.api.state import get_state


def test_request_id_is_generated_and_returned(client: FlaskClient) -> None:
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_sane_request_id_is_kept_and_echoed_in_the_body(client: FlaskClient) -> None:
    response = client.post(
        "/predict", json=EXAMPLE_CUSTOMER, headers={"X-Request-ID": "trace-42.abc:7"}
    )
    assert response.headers["X-Request-ID"] == "trace-42.abc:7"
    assert response.get_json()["request_id"] == "trace-42.abc:7"


@pytest.mark.parametrize("bad", ["x" * 129, "has space", 'quote"d', "<script>", "é"])
def test_insane_request_ids_are_replaced(client: FlaskClient, bad: str) -> None:
    returned = client.get("/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
    assert returned != bad and re.fullmatch(r"[0-9a-f]{32}", returned)


def _log_lines(log_dir: Path) -> list[dict]:
    flush_logs()  # INFO lines are written in batches
    return [json.loads(line) for line in next(log_dir.glob("api-*.log")).read_text().splitlines()]


def test_one_json_line_per_request_without_customer_values(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    client = make_app(log_dir=str(log_dir)).test_client()
    secret_id = "CUST-secret-7731"
    client.post(
        "/predict/batch?model=v1",
        json={"instances": [{**EXAMPLE_CUSTOMER, "customerID": secret_id}] * 3},
        headers={"X-Request-ID": "req-1"},
    )
    client.post("/predict", json={**EXAMPLE_CUSTOMER, "PaymentMethod": "Bitcoin-unique-value"})
    client.get("/nope")

    requests = [line for line in _log_lines(log_dir) if line["message"] == "request"]
    assert len(requests) == 3
    first = requests[0]
    assert first["request_id"] == "req-1" and first["method"] == "POST"
    assert first["path"] == "/predict/batch" and first["status"] == 200
    assert first["model"] == "v1" and first["batch_size"] == 3
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert requests[1]["status"] == 422 and requests[1]["model"] == "v2"
    assert requests[2]["status"] == 404 and requests[2]["model"] is None
    text = next(log_dir.glob("api-*.log")).read_text()
    assert secret_id not in text and "Bitcoin-unique-value" not in text
    assert "Fiber optic" not in text and "Electronic check" not in text


def test_unwritable_log_dir_fails_fast(make_settings: Callable, tmp_path: Path) -> None:
    from churn.api import create_app
    from churn.config import SettingsError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SettingsError, match="CHURN_LOG_DIR"):
        create_app(make_settings(log_dir=str(blocker / "logs")))


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_count_requests_predictions_and_model_info(client: FlaskClient, app: Flask) -> None:
    records = [EXAMPLE_CUSTOMER] * 4
    body = client.post("/predict/batch?model=v1", json={"instances": records}).get_json()
    churned = sum(p["churn"] for p in body["predictions"])
    client.post("/predict", json={})
    client.get("/nope-1")
    client.get("/nope-2")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)

    assert _sample(text, "churn_api_requests_total", endpoint="/predict/batch", status="200") == 1
    assert _sample(text, "churn_api_requests_total", endpoint="/predict", status="422") == 1
    assert _sample(text, "churn_api_requests_total", endpoint="<unmatched>", status="404") == 2
    assert _sample(text, "churn_api_request_latency_seconds_count", endpoint="/predict/batch") == 1
    predicted_true = _sample(text, "churn_api_predictions_total", model="v1", churn="true")
    assert predicted_true == churned
    if churned < 4:
        assert (
            _sample(text, "churn_api_predictions_total", model="v1", churn="false") == 4 - churned
        )
    assert _sample(text, "churn_api_batch_size_sum", model="v1") == 4
    models = get_state(app).models
    assert models is not None
    for version in ("v1", "v2"):
        metadata = models.info(version).metadata
        assert (
            _sample(
                text,
                "churn_api_model_info",
                version=version,
                algorithm=metadata["algorithm"],
                sha256=metadata["artifacts"]["model"]["sha256"],
            )
            == 1
        )
    assert _sample(text, "churn_api_models_loaded") == 1


def test_two_apps_keep_separate_metrics(make_app: Callable[..., Flask]) -> None:
    one, two = make_app().test_client(), make_app().test_client()
    one.get("/health")
    one.get("/health")
    two.get("/health")
    count = {"endpoint": "/health", "status": "200"}
    assert (
        _sample(one.get("/metrics").get_data(as_text=True), "churn_api_requests_total", **count)
        == 2
    )
    assert (
        _sample(two.get("/metrics").get_data(as_text=True), "churn_api_requests_total", **count)
        == 1
    )


def test_each_replica_labels_its_metrics_and_writes_its_own_log_file(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    for replica in ("api-1", "api-2"):
        client = make_app(env={"CHURN_REPLICA": replica}, log_dir=str(log_dir)).test_client()
        client.get("/health")
        text = client.get("/metrics").get_data(as_text=True)
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert samples and all(f'replica="{replica}"' in line for line in samples)
        assert _sample(text, "churn_api_requests_total", endpoint="/health", replica=replica) == 1
    flush_logs()
    assert sorted(p.name for p in log_dir.iterdir()) == ["api-api-1.log", "api-api-2.log"]
    first = (log_dir / "api-api-1.log").read_text()
    assert '"path": "/health"' in first and "api-api-2" not in first


def test_prediction_values_never_travel_through_flask_g(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    seen: list[set[str]] = []

    @app.after_request
    def _look(response):  # runs before the app's own hook (registered later runs first)
        from flask import g

        seen.append(set(vars(g)))
        return response

    client = app.test_client()
    client.post("/predict", json=EXAMPLE_CUSTOMER)
    client.post("/predict/batch", json={"instances": [EXAMPLE_CUSTOMER] * 2})
    client.post("/predict", json={})
    client.post("/v2/models/churn/infer", json={"inputs": []})
    client.get("/health")
    assert seen and all(names == {"exchange"} for names in seen), seen


def test_refusals_of_every_protocol_are_logged_once_with_the_version_asked_for(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    client = make_app(log_dir=str(log_dir)).test_client()
    client.post("/predict?model=v1", json={})
    client.post("/predict?model=v9", json=EXAMPLE_CUSTOMER)
    client.post("/v2/models/churn/versions/v1/infer", json={"inputs": "nope"})
    client.post("/invocations?model=v1", json={"dataframe_records": [{}, {}]})
    client.post("/invocations", data="x", content_type="text/plain")
    lines = [line for line in _log_lines(log_dir) if line["message"] == "request"]
    assert [(line["status"], line["model"], line["batch_size"]) for line in lines] == [
        (422, "v1", 1),
        (404, "v9", None),
        (400, "v1", None),
        (400, "v1", 2),
        (415, "v2", None),
    ]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "churn_api_requests_total", endpoint="/predict", status="422") == 1
    assert _sample(metrics, "churn_api_requests_total", endpoint="/invocations", status="400") == 1
