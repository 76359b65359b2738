"""The app factory: settings -> logging -> verified models -> blueprints, hooks and handlers."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request

from churn.api.decoders import BatchDecoder, InferDecoder
from churn.api.docs import bp as docs_bp
from churn.api.errors import register_error_handlers
from churn.api.fastpath import PredictFastPath
from churn.api.health import bp as health_bp
from churn.api.invocations import bp as invocations_bp
from churn.api.jsonio import FastJSONProvider
from churn.api.metrics import ApiMetrics
from churn.api.models import bp as models_bp
from churn.api.monitoring import bp as monitoring_bp
from churn.api.monitoring import load_monitor
from churn.api.observe import Exchange, Observer
from churn.api.openapi import build_openapi
from churn.api.predict import bp as predict_bp
from churn.api.prometheus import bp as metrics_bp
from churn.api.request_log import REQUEST_ID_HEADER, configure_logging, request_id_from
from churn.api.routing import Router
from churn.api.state import EXTENSION_KEY, ApiState, get_state
from churn.api.stats import MlflowStats
from churn.api.ui import bp as ui_bp
from churn.api.v2 import INPUT_TYPES
from churn.api.v2 import bp as v2_bp
from churn.api.validation import CustomerValidator
from churn.config import ApiSettings, SettingsError, load_api_settings
from churn.registry import ServingSet
from churn.serving.prediction import ArtifactError, ServingModels

__all__ = ["create_app"]

log = logging.getLogger("churn.api")

#: Security headers of the HTML pages: every script, style and image comes from the app.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: The blueprints, one per concern, in the order they are registered.
BLUEPRINTS = (
    ui_bp,
    health_bp,
    models_bp,
    predict_bp,
    docs_bp,
    metrics_bp,
    monitoring_bp,
    v2_bp,
    invocations_bp,
)


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
    app.json = FastJSONProvider(app)  # keys in the order the code gives them
    # Werkzeug cuts bodies at this size silently; one byte more lets read_body see it.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1

    served, load_error = _load_models(settings)
    api_metrics = ApiMetrics(replica=settings.replica)
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

    drift = load_monitor(settings, served.versions) if served is not None else None
    if drift is not None:
        api_metrics.registry.register(drift)

    # The baked models (no aliases: default traffic goes to the configured default version).
    router = Router(settings, api_metrics, ServingSet(served, {}, "baked"), load_error)
    state = ApiState(
        settings=settings,
        metrics=api_metrics,
        validator=CustomerValidator(),
        batch_decoder=BatchDecoder(settings.max_batch),
        infer_decoder=InferDecoder(INPUT_TYPES, settings.max_batch),
        router=router,
        observer=Observer(api_metrics, stats),
        stats=stats,
        openapi_document=build_openapi(settings),
        drift=drift,
    )
    app.extensions[EXTENSION_KEY] = state

    def count_internal_error() -> None:
        state.internal_errors += 1

    register_error_handlers(app, count_internal_error)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    # Prediction requests are answered in front of Flask's machinery (the same answers).
    app.wsgi_app = PredictFastPath(app.wsgi_app, state)  # type: ignore[method-assign]
    router.follow_registry()

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
    """Open the request's `Exchange`: its id (the caller's when sane) and start time."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    g.exchange = Exchange.of(
        req, request_id_from(req.headers.get(REQUEST_ID_HEADER)), time.perf_counter()
    )


def _finish_request(response: Response) -> Response:
    """Add the request id and security headers; observe a request no handler observed."""
    exchange: Exchange | None = g.get("exchange")
    if exchange is None:  # a before-request hook failed before ours ran
        req = request._get_current_object()  # type: ignore[attr-defined]
        exchange = Exchange.of(req, request_id_from(None), time.perf_counter())
    headers = response.headers
    headers[REQUEST_ID_HEADER] = exchange.request_id
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("Referrer-Policy", "same-origin")
    if not exchange.observed:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        get_state(app).observer.finished(exchange, response.status_code)
    return response
