"""``GET /health`` (liveness) and ``GET /ready`` (models usable; MLflow reachable)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from churn.api.state import ApiState, get_state

__all__ = ["bp", "readiness"]

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """Liveness: the process answers. Says nothing about the models."""
    return jsonify({"status": "ok"})


def readiness(state: ApiState) -> tuple[dict[str, Any], int]:
    """Return the ``/ready`` body and status code for ``state``."""
    settings = state.settings
    if state.models is not None:
        models: dict[str, Any] = {
            "status": "ok",
            "versions": list(state.models.versions),
            "default": settings.default_model,
        }
    else:
        models = {"status": "error", "reason": state.load_error or "models not loaded"}
    if state.stats is not None:
        mlflow = state.stats.health()
    elif settings.mlflow_tracking_uri:
        mlflow = {
            "status": "disabled",
            "reason": "MLFLOW_TRACKING_URI is not an http(s) URL; no serving statistics",
        }
    else:
        mlflow = {"status": "disabled", "reason": "MLFLOW_TRACKING_URI is not set"}
    checks = {"models": models, "mlflow": mlflow}
    degraded = mlflow["status"] == "degraded"
    router = state.router
    if router.watcher is not None:
        if models["status"] == "ok":  # registry mode: what serves, and from where
            serving = router.current
            models.update(source=serving.source, aliases=dict(serving.aliases))
            models["default"] = serving.aliases.get("champion", settings.default_model)
        checks["registry"] = registry = router.watcher.status()
        degraded = degraded or registry["status"] != "ok"
    if models["status"] != "ok":
        status, code = "not_ready", 503
    elif degraded:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return {"status": status, "checks": checks}, code


@bp.get("/ready")
def ready() -> tuple[Response, int]:
    """Readiness: 200 when the models are served (even with MLflow degraded), else 503."""
    body, code = readiness(get_state(current_app))
    return jsonify(body), code
