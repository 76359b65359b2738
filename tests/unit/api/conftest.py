"""Fixtures of the API tests: settings over the session's artifacts, an app, its client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api import create_app
from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.state import ApiState, get_state
from churn.config import ApiSettings, load_api_settings

SettingsFactory = Callable[..., ApiSettings]


@pytest.fixture
def make_settings(artifact_root: Path) -> SettingsFactory:
    """``make_settings(env=None, **overrides)``: settings over ``artifact_root``, no MLflow."""

    def factory(env: dict[str, str] | None = None, **overrides: Any) -> ApiSettings:
        overrides.setdefault("root", str(artifact_root))
        return load_api_settings(env=env or {}, yaml_path=None, **overrides)

    return factory


@pytest.fixture
def make_app(make_settings: SettingsFactory) -> Iterator[Callable[..., Flask]]:
    """``make_app(env=None, **overrides)``: a fresh app; its MLflow thread is stopped after."""
    apps: list[Flask] = []

    def factory(env: dict[str, str] | None = None, **overrides: Any) -> Flask:
        app = create_app(make_settings(env, **overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        stats = get_state(app).stats
        if stats is not None:
            stats.stop(timeout=1)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """An app serving the session's artifacts with default settings and no MLflow."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def state(app: Flask) -> ApiState:
    """The state of ``app``."""
    return get_state(app)


@pytest.fixture
def customer() -> dict[str, object]:
    """A valid customer object (a fresh copy each time)."""
    return dict(EXAMPLE_CUSTOMER)
