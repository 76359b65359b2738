"""The stack behind a forwarding proxy such as GitHub Codespaces': what a browser sends there.

Codespaces serves ``https://<codespace>-<port>.app.github.dev`` and passes requests on with
that ``Host`` and ``X-Forwarded-Proto: https``; a browser adds ``Origin`` to every POST, even
to its own page's server. test_api.py and test_mlflow.py check that the pages answer such a
``Host``; these check the rest of a browser's traffic: assets, POSTs from the page's own
origin, and that other origins are still refused.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

CODESPACE = "fluffy-space-robot"
DOMAIN = "app.github.dev"


def _forwarded(url: str) -> tuple[dict[str, str], str]:
    """Headers of a browser on the forwarded name of ``url``'s port, and that origin."""
    host = f"{CODESPACE}-{urlsplit(url).port}.{DOMAIN}"
    origin = f"https://{host}"
    return {"Host": host, "X-Forwarded-Proto": "https", "X-Forwarded-Host": host}, origin


def _assets(html: str) -> list[str]:
    return [a for a in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)]


def test_api_page_and_its_assets_load_under_a_forwarded_host(
    http: requests.Session, api_url: str
) -> None:
    headers, _ = _forwarded(api_url)
    page = http.get(f"{api_url}/", headers=headers, timeout=10)
    assert page.status_code == 200
    assets = _assets(page.text)
    assert assets, "the page loads no script or style sheet"
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), f"absolute asset URL {asset}"
        url = f"{api_url}/{asset.lstrip('/')}"
        assert http.get(url, headers=headers, timeout=10).status_code == 200, asset


def test_api_accepts_a_post_from_its_forwarded_origin(
    http: requests.Session, api_url: str, customer: dict
) -> None:
    headers, origin = _forwarded(api_url)
    r = http.post(
        f"{api_url}/predict?model=v1",
        json=customer,
        headers={**headers, "Origin": origin},
        timeout=10,
    )
    assert r.status_code == 200, r.text[:300]
    assert 0.0 < r.json()["churn_probability"] < 1.0


def test_mlflow_ui_assets_load_under_a_forwarded_host(
    http: requests.Session, mlflow_url: str
) -> None:
    headers, _ = _forwarded(mlflow_url)
    page = http.get(f"{mlflow_url}/", headers=headers, timeout=10)
    assert page.status_code == 200, page.text[:200]
    assets = _assets(page.text)
    assert assets, "the MLflow UI page loads no script or style sheet"
    for asset in assets[:5]:
        url = asset if asset.startswith("http") else f"{mlflow_url}/{asset.lstrip('./')}"
        assert http.get(url, headers=headers, timeout=10).status_code == 200, asset


def _search_runs(
    http: requests.Session, mlflow_url: str, headers: dict[str, str]
) -> requests.Response:
    """The POST the MLflow UI's runs table makes (through its ajax-api prefix)."""
    return http.post(
        f"{mlflow_url}/ajax-api/2.0/mlflow/runs/search",
        json={"experiment_ids": ["0"], "max_results": 1},
        headers=headers,
        timeout=10,
    )


def test_mlflow_accepts_the_uis_posts_from_its_forwarded_origin(
    http: requests.Session, mlflow_url: str
) -> None:
    """Without this, the runs table in a codespace shows "Request error": MLflow refuses
    state-changing requests whose Origin is not a localhost one or in
    MLFLOW_SERVER_CORS_ALLOWED_ORIGINS.
    """
    headers, origin = _forwarded(mlflow_url)
    r = _search_runs(http, mlflow_url, {**headers, "Origin": origin})
    assert r.status_code == 200, (
        f"{r.status_code} {r.text[:200]!r}: the MLflow server refuses POSTs from its own "
        f"forwarded origin {origin}; allow it with MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"
    )


@pytest.mark.parametrize("origin", ["https://evil.example", f"https://other.{DOMAIN}.evil"])
def test_mlflow_still_refuses_posts_from_other_origins(
    http: requests.Session, mlflow_url: str, origin: str
) -> None:
    headers, _ = _forwarded(mlflow_url)
    r = _search_runs(http, mlflow_url, {**headers, "Origin": origin})
    assert r.status_code == 403, f"{origin} got {r.status_code}"
