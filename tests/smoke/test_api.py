"""Smoke tests of the API as deployed: every endpoint of the contract, real predictions."""

from __future__ import annotations

import re

import pytest
import requests

VERSIONS = ("v1", "v2")


def test_health_answers_ok(http: requests.Session, api_url: str) -> None:
    r = http.get(f"{api_url}/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_reports_models_and_mlflow_ok(http: requests.Session, api_url: str) -> None:
    r = http.get(f"{api_url}/ready", timeout=10)
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["models"]["status"] == "ok"
    assert checks["mlflow"]["status"] == "ok"


def test_models_lists_both_versions_with_provenance(http: requests.Session, api_url: str) -> None:
    body = http.get(f"{api_url}/models", timeout=10).json()
    served = {m["version"]: m for m in body["models"]}
    assert set(VERSIONS) <= set(served)
    assert body["default"] in served
    for model in served.values():
        assert model["algorithm"]
        assert 0.5 < model["metrics"]["roc_auc"] <= 1.0
        assert re.fullmatch(r"[0-9a-f]{64}", model["artifacts"]["model"]["sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", model["training_data_sha256"])
        assert model["mlflow_run_id"]


@pytest.mark.parametrize("version", VERSIONS)
def test_predict_with_each_version_gives_a_probability(
    http: requests.Session, api_url: str, customer: dict, version: str
) -> None:
    r = http.post(f"{api_url}/predict", params={"model": version}, json=customer, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == version
    assert 0.0 < body["churn_probability"] < 1.0
    assert body["churn"] is (body["churn_probability"] >= 0.5)
    assert body["customerID"] == customer["customerID"]
    assert body["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.parametrize("version", VERSIONS)
def test_predictions_follow_the_customer(
    http: requests.Session, api_url: str, customer: dict, loyal_customer: dict, version: str
) -> None:
    """A new month-to-month customer is riskier than a loyal two-year one, for both models."""
    risky = http.post(f"{api_url}/predict?model={version}", json=customer, timeout=10).json()
    loyal = http.post(f"{api_url}/predict?model={version}", json=loyal_customer, timeout=10).json()
    assert risky["churn_probability"] > loyal["churn_probability"]


def test_batch_keeps_input_order_and_matches_single_predictions(
    http: requests.Session, api_url: str, customer: dict, loyal_customer: dict
) -> None:
    instances = [customer, loyal_customer, customer]
    r = http.post(f"{api_url}/predict/batch?model=v2", json={"instances": instances}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "v2"
    single = [
        http.post(f"{api_url}/predict?model=v2", json=c, timeout=10).json()["churn_probability"]
        for c in instances
    ]
    assert [p["churn_probability"] for p in body["predictions"]] == pytest.approx(single, abs=1e-12)


def test_default_model_is_used_without_query(
    http: requests.Session, api_url: str, customer: dict
) -> None:
    default = http.get(f"{api_url}/models", timeout=10).json()["default"]
    assert http.post(f"{api_url}/predict", json=customer, timeout=10).json()["model"] == default


def test_bad_field_gets_422_naming_it(http: requests.Session, api_url: str, customer: dict) -> None:
    r = http.post(f"{api_url}/predict", json={**customer, "Contract": "Monthly"}, timeout=10)
    assert r.status_code == 422
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert "Contract" in fields


def test_unknown_version_gets_404_listing_versions(
    http: requests.Session, api_url: str, customer: dict
) -> None:
    r = http.post(f"{api_url}/predict?model=v9", json=customer, timeout=10)
    assert r.status_code == 404
    assert "v1" in r.text and "v2" in r.text


def test_openapi_describes_every_endpoint(http: requests.Session, api_url: str) -> None:
    spec = http.get(f"{api_url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    for path in ("/", "/health", "/ready", "/models", "/predict", "/predict/batch", "/metrics"):
        assert path in spec["paths"], path


def test_docs_page_and_its_assets_are_served_locally(http: requests.Session, api_url: str) -> None:
    r = http.get(f"{api_url}/docs", timeout=10)
    assert r.status_code == 200
    assert "text/html" in r.headers["Content-Type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets, "the docs page loads no assets"
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), f"external asset {asset}"
        if asset.endswith((".js", ".css")):
            url = asset if asset.startswith("/") else f"/{asset}"
            assert http.get(f"{api_url}{url}", timeout=10).status_code == 200, asset


def test_home_page_has_the_form_and_links(http: requests.Session, api_url: str) -> None:
    r = http.get(f"{api_url}/", timeout=10)
    assert r.status_code == 200
    assert "<form" in r.text
    assert 'href="/docs"' in r.text
    assert "5001" in r.text or "mlflow" in r.text.lower()


def test_metrics_exposes_prometheus_series(
    http: requests.Session, api_url: str, customer: dict
) -> None:
    http.post(f"{api_url}/predict?model=v1", json=customer, timeout=10)
    r = http.get(f"{api_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in r.text
    assert 'version="v1"' in r.text


def test_api_answers_a_forwarded_host(http: requests.Session, api_url: str) -> None:
    """GitHub Codespaces forwards with Host: <codespace>-5000.app.github.dev over HTTPS."""
    headers = {"Host": "fluffy-space-robot-5000.app.github.dev", "X-Forwarded-Proto": "https"}
    r = http.get(f"{api_url}/", headers=headers, timeout=10)
    assert r.status_code == 200
    assert "<form" in r.text
