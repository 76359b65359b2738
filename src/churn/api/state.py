"""What an app holds for its lifetime: settings, the router of the served models, metrics.

`ApiState` holds plain objects built by `create_app`; it imports only their types, and none
of them imports it, so the request path reads downwards: blueprint -> state -> its parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, current_app, g, request

if TYPE_CHECKING:
    from churn.api.decoders import BatchDecoder, InferDecoder
    from churn.api.metrics import ApiMetrics
    from churn.api.observe import Exchange, Observer
    from churn.api.routing import Router
    from churn.api.stats import MlflowStats
    from churn.api.validation import CustomerValidator
    from churn.config import ApiSettings
    from churn.drift import DriftMonitor
    from churn.serving.prediction import ServingModels

__all__ = ["ApiState", "get_state", "request_objects"]

EXTENSION_KEY = "churn"


@dataclass
class ApiState:
    """Built once by `create_app`; request handlers only read it (counters aside)."""

    settings: ApiSettings
    metrics: ApiMetrics
    validator: CustomerValidator
    #: Well-typed ``/predict/batch`` bodies decoded and checked in one pass (the common case).
    batch_decoder: BatchDecoder
    #: V2 infer requests all in JSON, in their common form, decoded and checked in one pass.
    infer_decoder: InferDecoder
    #: The served set and traffic rules (`churn.api.routing`).
    router: Router
    #: Metrics, serving statistics and the log line of each request (`churn.api.observe`).
    observer: Observer
    #: MLflow serving statistics, or None when disabled.
    stats: MlflowStats | None
    #: The OpenAPI document, computed once.
    openapi_document: dict[str, Any] = field(default_factory=dict)
    #: Served-input counts for drift, or None when no model has a reference (churn.drift).
    drift: DriftMonitor | None = None
    #: How often the catch-all error handler answered (tests assert it stays 0).
    internal_errors: int = 0

    @property
    def models(self) -> ServingModels | None:
        """The verified models served now, or None when loading failed (`load_error` says why)."""
        return self.router.current.models

    @property
    def load_error(self) -> str | None:
        """Why the models are not loaded, or None."""
        return self.router.load_error

    @property
    def models_document(self) -> dict[str, Any]:
        """The ``/models`` document of the served set (without the router's description)."""
        return self.router.models_document


def get_state(app: Flask) -> ApiState:
    """Return the state `create_app` attached to ``app``."""
    return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def request_objects() -> tuple[ApiState, Request, Exchange]:
    """Return the current app's state, the request and its `Exchange`: the objects behind proxies.

    Every attribute read through a proxy costs a context lookup; code on the request path
    resolves them once with this and works on the objects.
    """
    return (
        get_state(current_app._get_current_object()),  # type: ignore[attr-defined]
        request._get_current_object(),  # type: ignore[attr-defined]
        g.exchange,
    )
