"""The app factory: settings -> logging -> verified models -> blueprints, hooks and handlers."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flask import Flask, Response

from churn.api import (
    docs,
    health,
    invocations,
    metrics,
    models,
    monitoring,
    predict,
    routing,
    ui,
    v2,
)
from churn.api.errors import register_error_handlers
from churn.api.metrics import ApiMetrics
from churn.api.models import describe_models
from churn.api.openapi import build_openapi
from churn.api.request_log import REQUEST_ID_HEADER, configure_logging, request_id_from
from churn.api.state import EXTENSION_KEY, ApiState, request_objects
from churn.api.stats import MlflowStats
from churn.api.validation import CustomerValidator
from churn.config import ApiSettings, SettingsError, load_api_settings
from churn.predict import ArtifactError, ServingModels

__all__ = ["create_app"]

log = logging.getLogger("churn.api")

#: Security headers of the HTML pages: every script, style and image comes from the app.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_PREDICT_ENDPOINTS = frozenset({"/predict", "/predict/batch"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def create_app(settings: ApiSettings | None = None) -> Flask:
    """Build the API and verify and load the models once.

    Settings come from the environment when not given; logging is configured, then every
    blueprint, hook and error handler is registered.

    A model that fails verification does not stop the app: it starts, logs the reason in one
    line, answers ``/health`` and reports ``/ready`` 503 until restarted with good artifacts.
    MLflow serving statistics start here when an http(s) tracking URI is set.

    Raises:
        SettingsError: a setting is invalid or the log directory is not writable.

    """
    settings = settings if settings is not None else load_api_settings()
    try:
        configure_logging(settings.log_level, settings.log_dir, replica=settings.replica)
    except OSError as exc:
        raise SettingsError(
            f"CHURN_LOG_DIR: cannot write logs to {settings.log_dir} ({exc.strerror or exc})"
        ) from None

    app = Flask(__name__, static_folder="static", template_folder="templates")
    # Werkzeug cuts bodies at this size silently; one byte more lets read_json_body see it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]

    served, load_error = _load_models(settings)
    api_metrics = ApiMetrics(replica=settings.replica)
    api_metrics.models_loaded.set(1 if served is not None else 0)
    if served is not None:
        for version in served.versions:
            metadata = served.info(version).metadata
            api_metrics.model_info.labels(
                version,
                str(metadata.get("algorithm", "unknown")),
                str(metadata["artifacts"]["model"]["sha256"]),
            ).set(1)

    stats = None
    if settings.stats_enabled:
        assert settings.mlflow_tracking_uri is not None  # noqa: S101 - implied by stats_enabled
        stats = MlflowStats(
            settings.mlflow_tracking_uri,
            settings.stats_interval,
            run_params=_run_params(settings, served),
            username=settings.mlflow_username,
            password=settings.mlflow_password,
            replica=settings.replica,
        )
        api_metrics.watch_mlflow(lambda: stats.is_up)

    drift = monitoring.load_monitor(settings, served.versions) if served is not None else None
    if drift is not None:
        api_metrics.registry.register(drift)

    state = ApiState(
        settings=settings,
        metrics=api_metrics,
        validator=CustomerValidator(),
        models=served,
        load_error=load_error,
        stats=stats,
        models_document=describe_models(served, settings, load_error),
        openapi_document=build_openapi(settings),
        drift=drift,
    )
    app.extensions[EXTENSION_KEY] = state

    def count_internal_error() -> None:
        state.internal_errors += 1

    register_error_handlers(app, count_internal_error)
    blueprints = (ui.bp, health.bp, models.bp, predict.bp, docs.bp, metrics.bp, monitoring.bp)
    for blueprint in (*blueprints, v2.bp, invocations.bp):
        app.register_blueprint(blueprint)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    routing.install(app, state)

    log.info(
        "API configured",
        extra={
            "root": str(settings.root),
            "versions": list(settings.model_versions),
            "default_model": settings.default_model,
            "models_loaded": served is not None,
            "max_batch": settings.max_batch,
            "max_body_bytes": settings.max_body_bytes,
            "mlflow_stats": stats.tracking_uri if stats else None,
            "log_dir": str(settings.log_dir) if settings.log_dir else None,
        },
    )
    if stats is not None:
        stats.start()
    return app


def _load_models(settings: ApiSettings) -> tuple[ServingModels | None, str | None]:
    """Load and verify every version; on failure return the reason (logged in one line)."""
    started = time.perf_counter()
    try:
        served = ServingModels.load(settings.root, settings.model_versions)
    except ArtifactError as exc:
        reason = " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - whatever happens, start and report not ready
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    else:
        log.info(
            "models loaded",
            extra={
                "versions": list(served.versions),
                "sha256": {
                    v: served.info(v).metadata["artifacts"]["model"]["sha256"]
                    for v in served.versions
                },
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return served, None
    log.error(
        "models not loaded, the API will not be ready: %s",
        reason,
        extra={"event": "models_not_loaded"},
    )
    return None, reason


def _run_params(settings: ApiSettings, served: ServingModels | None) -> dict[str, str]:
    """Parameters recorded on the MLflow serving run."""
    params = {
        "model_versions": ",".join(settings.model_versions),
        "default_model": settings.default_model,
        "threshold": str(settings.threshold),
        "models_loaded": str(served is not None),
    }
    if served is not None:
        for version in served.versions:
            metadata = served.info(version).metadata
            params[f"algorithm_{version}"] = str(metadata.get("algorithm", "unknown"))
            params[f"model_sha256_{version}"] = str(metadata["artifacts"]["model"]["sha256"])
            mlflow = metadata.get("mlflow")
            if isinstance(mlflow, dict) and mlflow.get("run_id"):
                params[f"training_run_id_{version}"] = str(mlflow["run_id"])
    return params


def _start_request() -> None:
    _, req, ctx = request_objects()
    ctx.started = time.perf_counter()
    ctx.request_id = request_id_from(req.headers.get(REQUEST_ID_HEADER))
    ctx.model = None
    ctx.batch_size = None
    ctx.probabilities = None


def _finish_request(response: Response) -> Response:
    app_state, req, ctx = request_objects()
    started = ctx.get("started") or time.perf_counter()
    seconds = time.perf_counter() - started
    request_id = ctx.get("request_id") or request_id_from(None)
    status = response.status_code
    headers = response.headers
    headers[REQUEST_ID_HEADER] = request_id
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("Referrer-Policy", "same-origin")

    rule = req.url_rule
    endpoint = rule.rule if rule is not None else "<unmatched>"
    method = req.method
    app_state.metrics.observe_request(
        endpoint, method if method in _METHODS else "OTHER", status, seconds
    )
    model = ctx.get("model")
    probabilities = ctx.get("probabilities")
    if status == 200 and probabilities is not None and model is not None:
        churned = int(np.count_nonzero(probabilities >= app_state.settings.threshold))
        app_state.metrics.observe_predictions(model, churned, len(probabilities))
        if app_state.stats is not None:
            label = ctx.get("model_label") or model
            app_state.stats.record_prediction(label, probabilities, churned, seconds)
    elif app_state.stats is not None and endpoint in _PREDICT_ENDPOINTS and 400 <= status < 500:
        app_state.stats.record_rejection()

    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": method[:16],
        "path": req.path[:200],
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "model": model[:40] if isinstance(model, str) else None,
        "batch_size": ctx.get("batch_size"),
    }
    log.log(logging.ERROR if status >= 500 else logging.INFO, "request", extra=fields)
    return response
