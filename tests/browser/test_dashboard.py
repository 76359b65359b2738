"""The monitoring dashboard (Prometheus console ``/consoles/churn.html``) in a real browser.

Runs against a stack started with ``nox -s up -- --monitoring``; ``PROMETHEUS_URL`` says where
Prometheus answers (skipped when it is not set). Predictions are sent first: single ones of
both versions, so that every graph has a series to draw once Prometheus has scraped them, and
one batch of generator customers as large as the drift window
(``CHURN_DRIFT_WINDOW_RECORDS``, 1,000 by default), so that a window closes and the PSI table
has a row per column.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from test_pages import RISKY

from churn import dataset
from churn.features import features
from churn.schema import FEATURE_COLUMNS
from conftest import Screenshot

GRAPHS = ("g-rate", "g-latency", "g-errors", "g-versions", "g-psi", "g-score")
#: One PSI series per input column, and one for the predicted probability.
PSI_SERIES = (*FEATURE_COLUMNS, "churn_probability")
WINDOW = int(os.environ.get("CHURN_DRIFT_WINDOW_RECORDS", "1000"))


def _generator_customers(count: int) -> list[dict[str, object]]:
    """``count`` customers drawn from the training data's generator, as JSON-ready objects."""
    frame = features(dataset.to_typed(dataset.generate(n_rows=count, seed=20261201)))
    rows = json.loads(frame.to_json(orient="records"))  # NaN (unknown TotalCharges) -> null
    return [{k: v for k, v in row.items() if k in FEATURE_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def prometheus_url() -> str:
    url = os.environ.get("PROMETHEUS_URL", "").rstrip("/")
    if not url:
        pytest.skip("PROMETHEUS_URL is not set: start the stack with `nox -s up -- --monitoring`")
    return url


def _wait_for_scrape(http: requests.Session, prometheus_url: str) -> None:
    """Wait until Prometheus holds predictions of both versions and a recorded rate.

    A rate needs two scrapes of the counter and then a rule evaluation (15 s each), so the
    page's "Prediction requests" row has a value (0 or more per second) only then (bounded:
    150 s).
    """
    deadline = time.monotonic() + 150
    queries = (
        "count(churn_api_predictions_total) >= 2",
        "churn:predict_requests:rate5m",
        f"count(churn_api_drift_psi{{model='v2'}}) >= {len(PSI_SERIES)}",
    )
    while time.monotonic() < deadline:
        answers = [
            http.get(f"{prometheus_url}/api/v1/query", params={"query": q}, timeout=5)
            for q in queries
        ]
        if all(a.ok and a.json()["data"]["result"] for a in answers):
            return
        time.sleep(3)
    pytest.fail("Prometheus did not record the API's prediction rate within 150 s")


def test_the_dashboard_draws_every_figure(
    driver: WebDriver,
    api_url: str,
    prometheus_url: str,
    http: requests.Session,
    screenshot: Screenshot,
) -> None:
    for version in ("v1", "v2"):
        for _ in range(20):
            answer = http.post(f"{api_url}/predict?model={version}", json=RISKY, timeout=10)
            assert answer.status_code == 200
    window = {"instances": _generator_customers(WINDOW)}
    answer = http.post(f"{api_url}/predict/batch?model=v2", json=window, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    _wait_for_scrape(http, prometheus_url)

    driver.set_window_size(1400, 1800)
    driver.get(f"{prometheus_url}/consoles/churn.html")
    assert "Churn API" in driver.title
    rows = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in driver.find_elements(By.CSS_SELECTOR, "#now tr")
    }
    assert rows["API instances up"].startswith(("1 of", "2 of", "3 of", "4 of"))
    assert rows["Prediction requests"].endswith("/s")

    def drawn(browser: WebDriver) -> bool:
        return all(browser.find_elements(By.CSS_SELECTOR, f"#{graph} svg path") for graph in GRAPHS)

    WebDriverWait(driver, 30).until(drawn)
    psi = {
        cells[0].text: cells[1].text
        for row in driver.find_elements(By.CSS_SELECTOR, "#psi tr")
        if len(cells := row.find_elements(By.TAG_NAME, "td")) == 2
    }
    assert set(psi) >= set(PSI_SERIES), f"PSI rows: {sorted(psi)}"
    assert all(float(value) >= 0.0 for value in psi.values())
    screenshot(driver, "dashboard")
