"""The monitoring dashboard (Prometheus console ``/consoles/churn.html``) in a real browser.

Runs against a stack started with ``nox -s up -- --monitoring``; ``PROMETHEUS_URL`` says where
Prometheus answers (skipped when it is not set). Predictions are sent first, so that every
graph has a series to draw once Prometheus has scraped them.
"""

from __future__ import annotations

import os
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from test_pages import RISKY

from conftest import Screenshot

GRAPHS = ("g-rate", "g-latency", "g-errors", "g-versions", "g-psi", "g-score")


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
    queries = ("count(churn_api_predictions_total) >= 2", "churn:predict_requests:rate5m")
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
    psi_rows = driver.find_elements(By.CSS_SELECTOR, "#psi tr")
    assert len(psi_rows) >= 2  # a header, then 20 columns or the "no window yet" line
    screenshot(driver, "dashboard")
