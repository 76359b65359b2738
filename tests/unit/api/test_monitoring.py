"""``/monitoring/drift`` and the drift series of ``/metrics``: counts only, from served records."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flask import Flask

from churn.drift import build_reference, reference_path, write_reference
from churn.schema import FEATURE_COLUMNS


def _write_references(root: Path, records: list[dict[str, object]]) -> None:
    columns = {c: [r[c] for r in records] for c in FEATURE_COLUMNS}
    for version in ("v1", "v2"):
        scores = np.linspace(0.01, 0.99, len(records)).tolist()
        write_reference(
            reference_path(root / "models", version), build_reference(version, columns, scores)
        )


def test_served_records_are_counted_and_exported_as_psi(
    artifact_copy: Path, make_app: Callable[..., Flask], make_records: Callable[..., list]
) -> None:
    _write_references(artifact_copy, make_records(500, seed=1))
    app = make_app(root=str(artifact_copy), drift_window_records=20)
    client = app.test_client()
    for record in make_records(25, seed=2):
        assert client.post("/predict?model=v1", json=record).status_code == 200

    answer = client.get("/monitoring/drift?model=v1")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["windows_closed"] == 1
    assert body["last_window"]["records"] == 20
    assert body["current_window"]["records"] == 5
    assert sum(body["last_window"]["columns"]["Contract"]["counts"]) == 20
    assert "customerID" not in answer.get_data(as_text=True)

    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'churn_api_drift_psi{column="tenure",model="v1",replica="' in metrics
    assert re.search(r'churn_api_drift_window_records\{model="v1",replica="[^"]+"\} 20\.0', metrics)
    assert re.search(
        r'churn_api_drift_current_window_records\{model="v2",replica="[^"]+"\} 0\.0', metrics
    )


def test_an_unmonitored_version_is_a_clear_404(
    artifact_copy: Path, make_app: Callable[..., Flask], make_records: Callable[..., list]
) -> None:
    _write_references(artifact_copy, make_records(200, seed=1))
    client = make_app(root=str(artifact_copy)).test_client()
    answer = client.get("/monitoring/drift?model=v9")
    assert answer.status_code == 404
    assert answer.get_json()["error"]["details"][0]["field"] == "model"


def test_without_references_the_api_serves_and_says_drift_is_off(
    make_app: Callable[..., Flask], make_records: Callable[..., list]
) -> None:
    client = make_app().test_client()
    assert client.post("/predict", json=make_records(1)[0]).status_code == 200
    answer = client.get("/monitoring/drift")
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "drift_unavailable"
    assert "churn_api_drift_psi" not in client.get("/metrics").get_data(as_text=True)
