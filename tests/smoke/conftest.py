"""Fixtures for the smoke tests: they run against a live stack (`nox -s up`), as a client would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import requests

from churn.api.contract import EXAMPLE_CUSTOMER


@pytest.fixture(scope="session")
def api_url() -> str:
    """Base URL of the running API (API_URL, default http://127.0.0.1:5000)."""
    return os.environ.get("API_URL", "http://127.0.0.1:5000").rstrip("/")


@pytest.fixture(scope="session")
def mlflow_url() -> str:
    """Base URL of the running MLflow server (MLFLOW_URL, default http://127.0.0.1:5001)."""
    return os.environ.get("MLFLOW_URL", "http://127.0.0.1:5001").rstrip("/")


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """One HTTP session for all smoke tests."""
    with requests.Session() as session:
        yield session


@pytest.fixture()
def customer() -> dict[str, object]:
    """The first row of the public Telco file (without Churn): a month-to-month DSL customer."""
    return {"customerID": "7590-VHVEG", **EXAMPLE_CUSTOMER}


@pytest.fixture()
def loyal_customer(customer: dict[str, object]) -> dict[str, object]:
    """A long-standing two-year-contract customer paying by card: low churn risk."""
    return {
        **customer,
        "customerID": "0000-LOYAL",
        "tenure": 70,
        "Contract": "Two year",
        "PaymentMethod": "Credit card (automatic)",
        "OnlineSecurity": "Yes",
        "TechSupport": "Yes",
        "MonthlyCharges": 60.0,
        "TotalCharges": 4200.0,
    }


@pytest.fixture(scope="session")
def mlflow_container(mlflow_url: str) -> str:
    """Id of the local container that publishes MLFLOW_URL's port (skips when there is none)."""
    port = urlsplit(mlflow_url).port
    if port is None or shutil.which("docker") is None:
        pytest.skip(f"no local Docker container to inspect behind {mlflow_url}")
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"publish={port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    ids = found.stdout.split()
    if found.returncode or len(ids) != 1:
        pytest.skip(f"not exactly one local container publishes port {port}: {ids}")
    return ids[0]


@pytest.fixture(scope="session")
def mlflow_python(mlflow_container: str) -> Callable[[str], str]:
    """Run Python code in the MLflow server's container (its packages); return its stdout."""

    def run(code: str) -> str:
        done = subprocess.run(
            ["docker", "exec", mlflow_container, "python3", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run
