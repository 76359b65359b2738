"""What an app holds for its lifetime: settings, the served models, metrics, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, current_app, g, request
from flask.ctx import _AppCtxGlobals

if TYPE_CHECKING:
    from churn.api.metrics import ApiMetrics
    from churn.api.routing import Router
    from churn.api.stats import MlflowStats
    from churn.api.validation import CustomerValidator
    from churn.config import ApiSettings
    from churn.drift import DriftMonitor
    from churn.predict import ServingModels

__all__ = ["ApiState", "get_state", "request_objects"]

EXTENSION_KEY = "churn"


@dataclass
class ApiState:
    """Built once by `create_app`; request handlers only read it (counters aside)."""

    settings: ApiSettings
    metrics: ApiMetrics
    validator: CustomerValidator
    #: The verified models, or None when loading failed (then `load_error` says why).
    models: ServingModels | None
    load_error: str | None
    #: MLflow serving statistics, or None when disabled.
    stats: MlflowStats | None
    #: The /models answer and the OpenAPI document, computed once.
    models_document: dict[str, Any] = field(default_factory=dict)
    openapi_document: dict[str, Any] = field(default_factory=dict)
    #: Served-input counts for drift, or None when no model has a reference (churn.drift).
    drift: DriftMonitor | None = None
    #: How often the catch-all error handler answered (tests assert it stays 0).
    internal_errors: int = 0
    #: The served set and traffic rules (`churn.api.routing`); set by `create_app`.
    router: Router | None = None


def get_state(app: Flask) -> ApiState:
    """Return the state `create_app` attached to ``app``."""
    return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def request_objects() -> tuple[ApiState, Request, _AppCtxGlobals]:
    """Return the current app's state, the request and ``g``: the objects behind Flask's proxies.

    Every attribute read through a proxy costs a context lookup; code on the request path
    resolves them once with this and works on the objects.
    """
    return (
        get_state(current_app._get_current_object()),  # type: ignore[attr-defined]
        request._get_current_object(),  # type: ignore[attr-defined]
        g._get_current_object(),
    )
