"""The stack's pages in a real browser: the API's form for both model versions, its MLflow link
(also when reached by a Codespaces-style forwarded host name), and the MLflow UI's experiment
and runs. Screenshots of each step are saved (see conftest.py).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from churn.schema import FEATURE_COLUMNS
from conftest import Forwarded, Screenshot

VERSIONS = ("v1", "v2")
EXPERIMENT = "churn-prediction"
#: A new month-to-month fibre customer paying by electronic check: high churn risk.
RISKY: dict[str, Any] = {
    "gender": "Female",
    "SeniorCitizen": 1,
    "Partner": "No",
    "Dependents": "No",
    "tenure": 2,
    "PhoneService": "Yes",
    "MultipleLines": "No",
    "InternetService": "Fiber optic",
    "OnlineSecurity": "No",
    "OnlineBackup": "No",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "Yes",
    "StreamingMovies": "Yes",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": 99.65,
    "TotalCharges": 199.3,
}
#: Six years on a two-year contract, paying by card, with support: low churn risk.
LOYAL: dict[str, Any] = {
    **RISKY,
    "SeniorCitizen": 0,
    "Partner": "Yes",
    "Dependents": "Yes",
    "tenure": 70,
    "InternetService": "DSL",
    "OnlineSecurity": "Yes",
    "TechSupport": "Yes",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Two year",
    "PaperlessBilling": "No",
    "PaymentMethod": "Credit card (automatic)",
    "MonthlyCharges": 60.0,
    "TotalCharges": 4200.0,
}
#: Fields whose change resets others on the page: set them first.
LEADING_FIELDS = ("PhoneService", "InternetService")


def _wait(driver: WebDriver, seconds: float = 20) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.2)


def _fill_form(driver: WebDriver, customer: dict[str, Any]) -> None:
    order = [*LEADING_FIELDS, *(c for c in customer if c not in LEADING_FIELDS)]
    for name in order:
        element = driver.find_element(By.ID, f"f-{name}")
        value = str(customer[name])
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    for name in order:  # nothing was reset by a later change
        assert driver.find_element(By.ID, f"f-{name}").get_attribute("value") == str(
            customer[name]
        ), name


def _predict_in_page(driver: WebDriver, version: str, customer: dict[str, Any]) -> dict[str, Any]:
    """Fill the form, submit it, wait for a new answer; return what the page shows."""
    Select(driver.find_element(By.ID, "model")).select_by_value(version)
    _fill_form(driver, customer)
    meta = driver.find_element(By.ID, "result-meta")
    before = meta.text if meta.is_displayed() else ""
    driver.find_element(By.ID, "submit").click()

    def answered(d: WebDriver) -> bool:
        if d.find_element(By.ID, "error").is_displayed():
            raise AssertionError("the page shows an error: " + d.find_element(By.ID, "error").text)
        shown = d.find_element(By.ID, "result-meta")
        return shown.is_displayed() and shown.text not in ("", before)

    _wait(driver).until(answered)
    text = driver.find_element(By.ID, "probability-text").text
    match = re.fullmatch(r"Churn probability: (\d+(?:\.\d+)?)%", text)
    assert match, f"unexpected probability text {text!r}"
    return {
        "percent": float(match.group(1)),
        "meter": float(driver.find_element(By.ID, "probability-meter").get_property("value")),
        "verdict": driver.find_element(By.ID, "verdict").text,
        "meta": driver.find_element(By.ID, "result-meta").text,
    }


def test_form_has_a_field_for_every_feature(driver: WebDriver, api_url: str) -> None:
    driver.get(f"{api_url}/")
    _wait(driver).until(ec.element_to_be_clickable((By.ID, "submit")))
    for column in FEATURE_COLUMNS:
        assert driver.find_elements(By.ID, f"f-{column}"), f"no form field for {column}"
    offered = [
        o.get_attribute("value") for o in Select(driver.find_element(By.ID, "model")).options
    ]
    assert set(VERSIONS) <= set(offered)


@pytest.mark.parametrize("version", VERSIONS)
def test_form_predicts_with_each_version(
    driver: WebDriver,
    api_url: str,
    http: requests.Session,
    screenshot: Screenshot,
    version: str,
) -> None:
    """The page shows a probability in (0, 1), the one the API gives for the same customer,
    higher for the risky customer than for the loyal one.
    """
    driver.get(f"{api_url}/")
    _wait(driver).until(ec.element_to_be_clickable((By.ID, "submit")))
    shown = {}
    for label, customer in (("risky", RISKY), ("loyal", LOYAL)):
        shown[label] = _predict_in_page(driver, version, customer)
        screenshot(driver, f"api-{version}-{label}")
        page = shown[label]
        assert f"Model {version}" in page["meta"]
        assert 0.0 < page["meter"] < 1.0
        assert page["percent"] == pytest.approx(100 * page["meter"], abs=0.05)
        api = http.post(f"{api_url}/predict?model={version}", json=customer, timeout=10).json()
        assert page["meter"] == pytest.approx(api["churn_probability"], abs=1e-12)
        assert page["verdict"] == ("Likely to churn" if api["churn"] else "Likely to stay")
    assert shown["risky"]["meter"] > shown["loyal"]["meter"]


def test_mlflow_link_points_at_the_mlflow_port(
    driver: WebDriver, api_url: str, mlflow_url: str
) -> None:
    driver.get(f"{api_url}/")
    link = _wait(driver).until(ec.presence_of_element_located((By.ID, "mlflow-link")))
    target = urlsplit(link.get_attribute("href"))
    assert target.port == urlsplit(mlflow_url).port, target.geturl()


def _experiment(http: requests.Session, mlflow_url: str) -> tuple[str, list[str]]:
    """The experiment's id and the names of its most recent runs, from the REST API."""
    got = http.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": EXPERIMENT},
        timeout=10,
    )
    assert got.status_code == 200, f"no experiment {EXPERIMENT!r} in MLflow: {got.text[:200]}"
    exp_id = got.json()["experiment"]["experiment_id"]
    runs = (
        http.post(
            f"{mlflow_url}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [exp_id], "max_results": 5, "order_by": ["start_time DESC"]},
            timeout=10,
        )
        .json()
        .get("runs", [])
    )
    names = [r["info"]["run_name"] for r in runs if r["info"].get("run_name")]
    assert names, f"experiment {EXPERIMENT!r} has no named runs"
    return exp_id, names


def _show_runs(
    driver: WebDriver,
    base_url: str,
    exp_id: str,
    run_names: list[str],
    screenshot: Screenshot,
    name: str,
) -> None:
    """Open the experiment's runs table and wait until every run name is a link in it.

    The experiment page picks its opening tab by itself once it has loaded (overview, runs or
    traces, by what the experiment holds) and may move there after this navigation: whenever
    the address has left the runs table, go back to it. A table that has not listed the runs
    after 30 s is loaded again once, as a person would reload it.
    """
    runs_url = f"{base_url}/#/experiments/{exp_id}/runs"
    driver.get(runs_url)
    started = time.monotonic()
    reloaded = False

    def listed(d: WebDriver) -> bool:
        nonlocal reloaded
        route = urlsplit(d.current_url).fragment.split("?")[0].rstrip("/")
        if route != f"/experiments/{exp_id}/runs":
            d.get(runs_url)
        elif not reloaded and time.monotonic() - started > 30:
            reloaded = True
            d.refresh()
        links = d.find_elements(By.XPATH, "//a[contains(@href, '/runs/')]")
        return set(run_names) <= {a.text.strip() for a in links}

    try:
        _wait(driver, 60).until(listed)
    except TimeoutException:
        shot = screenshot(driver, f"{name}-missing")
        seen = driver.find_element(By.TAG_NAME, "body").text[:600].replace("\n", " | ")
        pytest.fail(
            f"runs {run_names} are not all links in the runs table at {driver.current_url} "
            f"(see {shot}); the page reads: {seen}"
        )
    time.sleep(0.5)  # let the table finish painting before the screenshot
    screenshot(driver, name)


def test_forwarded_page_predicts_and_links_to_the_forwarded_mlflow_ui(
    forwarded: Forwarded, http: requests.Session, mlflow_url: str, screenshot: Screenshot
) -> None:
    """Opened as ``https://<codespace>-5000.app.github.dev`` behind an HTTPS proxy, the page
    predicts, and its MLflow link is ``https://<codespace>-5001.app.github.dev/``, whose UI
    lists the experiment and its runs (the runs table is fetched with POST requests, which
    MLflow checks against its allowed CORS origins).
    """
    exp_id, run_names = _experiment(http, mlflow_url)
    browser = forwarded.driver
    browser.get(f"{forwarded.api_url}/")
    link = _wait(browser).until(ec.presence_of_element_located((By.ID, "mlflow-link")))
    href = urlsplit(link.get_attribute("href"))
    assert (href.scheme, href.hostname) == ("https", forwarded.mlflow_host), href.geturl()
    page = _predict_in_page(browser, "v2", RISKY)
    assert 0.0 < page["meter"] < 1.0
    screenshot(browser, "forwarded-api")

    mlflow_ui = forwarded.url_via_proxy(href.hostname)
    browser.get(f"{mlflow_ui}/#/experiments")
    _wait(browser, 60).until(
        ec.presence_of_element_located((By.XPATH, f"//a[normalize-space()='{EXPERIMENT}']"))
    )
    screenshot(browser, "forwarded-mlflow")
    _show_runs(browser, mlflow_ui, exp_id, run_names, screenshot, "forwarded-runs")


def test_mlflow_ui_shows_the_experiment_and_its_runs(
    driver: WebDriver, mlflow_url: str, http: requests.Session, screenshot: Screenshot
) -> None:
    exp_id, run_names = _experiment(http, mlflow_url)
    driver.get(f"{mlflow_url}/#/experiments")
    link = _wait(driver, 60).until(
        ec.element_to_be_clickable((By.XPATH, f"//a[normalize-space()='{EXPERIMENT}']"))
    )
    assert re.search(rf"/experiments/{exp_id}(\b|/|$)", link.get_attribute("href"))
    screenshot(driver, "mlflow-experiments")
    link.click()
    _wait(driver, 30).until(ec.url_contains(f"/experiments/{exp_id}"))
    # The runs table of the experiment (the UI opens on an overview tab first).
    _show_runs(driver, mlflow_url, exp_id, run_names, screenshot, "mlflow-runs")
