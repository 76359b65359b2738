"""Fixtures of the real-browser tests: headless Chromium (Debian's package) driven by Selenium.

They run against a live stack (`nox -s up`), like the smoke tests:

* ``API_URL`` / ``MLFLOW_URL``: where the stack answers (default http://127.0.0.1:5000 / :5001);
* ``CHROMIUM`` / ``CHROMEDRIVER``: the browser and its driver (default: ``chromium`` and
  ``chromedriver`` on PATH). Both are given to Selenium explicitly, so Selenium Manager (its
  driver downloader) is never started;
* ``SCREENSHOTS_DIR``: where each test saves its screenshots (default results/screenshots/).

The browsers reach nothing but the stack: every other host name fails to resolve.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from forwarding_proxy import ForwardingProxy, self_signed_certificate

from churn_ops.stack import unanswered

ROOT = Path(__file__).resolve().parents[2]
#: A host name Codespaces could give the API: "<codespace>-<port>.app.github.dev".
CODESPACE = "fluffy-space-robot"
FORWARDING_DOMAIN = "app.github.dev"

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

Screenshot = Callable[[WebDriver, str], Path]


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
    """Plain HTTP to compare the page's answers with the API's."""
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="session", autouse=True)
def stack_is_up(api_url: str, mlflow_url: str) -> None:
    """Fail early, with what to do, when the stack does not answer."""
    silent = unanswered({"API_URL": api_url}, "/ready") + unanswered({"MLFLOW_URL": mlflow_url})
    if silent:
        pytest.fail(f"Nothing answers at {', '.join(silent)}: start the stack (nox -s up)")


def _executable(env_var: str, name: str, hint: str) -> str:
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found (set {env_var} or install it: {hint})")
    return path


def _make_driver(resolver_rules: str, extra_args: tuple[str, ...] = ()) -> WebDriver:
    from selenium.webdriver.chrome.service import Service

    hint = "apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("CHROMIUM", "chromium", hint)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace to sandbox with
        "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MB
        "--disable-gpu",
        "--window-size=1280,1600",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Only the stack is reachable: any other name fails to resolve (IP literals need none).
        f"--host-resolver-rules={resolver_rules}",
        *extra_args,
    ):
        options.add_argument(arg)
    service = Service(executable_path=_executable("CHROMEDRIVER", "chromedriver", hint))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    return driver


def _stack_hosts(*urls: str) -> list[str]:
    return sorted({urlsplit(u).hostname or "localhost" for u in urls} | {"localhost"})


@pytest.fixture(scope="session")
def driver(api_url: str, mlflow_url: str) -> Iterator[WebDriver]:
    """One headless Chromium for the session; it can reach the stack's hosts only."""
    excluded = ", ".join(f"EXCLUDE {h}" for h in _stack_hosts(api_url, mlflow_url))
    browser = _make_driver(f"{excluded}, MAP * ~NOTFOUND")
    yield browser
    browser.quit()


@dataclass(frozen=True)
class Forwarded:
    """A browser that reaches the stack the way Codespaces users do, by forwarded host names.

    ``api_host`` is ``<codespace>-<API port>.app.github.dev`` (likewise ``mlflow_host``); the
    browser resolves every ``*.app.github.dev`` name to 127.0.0.1, where a
    :class:`~forwarding_proxy.ForwardingProxy` per service terminates HTTPS and passes the
    request on with its ``Host`` header.
    """

    driver: WebDriver
    api_host: str
    mlflow_host: str
    api_proxy_port: int
    mlflow_proxy_port: int

    @property
    def api_url(self) -> str:
        """The API's page as the forwarded browser opens it."""
        return f"https://{self.api_host}:{self.api_proxy_port}"

    def url_via_proxy(self, host: str) -> str:
        """``https://<host>:<the proxy port of that service>``."""
        port = {self.api_host: self.api_proxy_port, self.mlflow_host: self.mlflow_proxy_port}
        return f"https://{host}:{port[host]}"


@pytest.fixture(scope="session")
def forwarded(
    api_url: str, mlflow_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Forwarded]:
    """A Chromium and two HTTPS forwarding proxies standing in for Codespaces (see Forwarded)."""
    api, mlflow = urlsplit(api_url), urlsplit(mlflow_url)
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"), FORWARDING_DOMAIN)
    with (
        ForwardingProxy(api.hostname or "127.0.0.1", api.port or 80, cert, key) as api_proxy,
        ForwardingProxy(mlflow.hostname or "127.0.0.1", mlflow.port or 80, cert, key) as ml_proxy,
    ):
        excluded = ", ".join(f"EXCLUDE {h}" for h in _stack_hosts(api_url, mlflow_url))
        browser = _make_driver(
            f"MAP *.{FORWARDING_DOMAIN} 127.0.0.1, {excluded}, MAP * ~NOTFOUND",
            ("--ignore-certificate-errors",),  # the proxies' certificate is self-signed
        )
        try:
            yield Forwarded(
                driver=browser,
                api_host=f"{CODESPACE}-{api.port}.{FORWARDING_DOMAIN}",
                mlflow_host=f"{CODESPACE}-{mlflow.port}.{FORWARDING_DOMAIN}",
                api_proxy_port=api_proxy.port,
                mlflow_proxy_port=ml_proxy.port,
            )
        finally:
            browser.quit()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    """Where screenshots go (SCREENSHOTS_DIR, default results/screenshots/)."""
    path = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / "results" / "screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def screenshot(screenshots_dir: Path) -> Screenshot:
    """``screenshot(driver, name)`` saves the browser's viewport as ``<name>.png``."""

    def save(browser: WebDriver, name: str) -> Path:
        path = screenshots_dir / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"could not write {path}"
        return path

    return save
