"""``GET /models``: the served versions, the default one, and each one's metadata."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from churn.api.state import get_state
from churn.config import ApiSettings
from churn.predict import ServingModels

__all__ = ["bp", "describe_models"]

bp = Blueprint("models", __name__)

#: Keys of the metadata's ``mlflow`` block shown publicly (the tracking URI is left out).
_MLFLOW_KEYS = ("experiment", "run_id", "registered_model", "registered_version")


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def describe_model(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return the public description of one model from its metadata record."""
    mlflow = _mapping(metadata.get("mlflow"))
    artifacts = {
        kind: {"path": str(entry.get("path")), "sha256": str(entry.get("sha256"))}
        for kind, entry in _mapping(metadata.get("artifacts")).items()
        if isinstance(entry, dict)
    }
    metrics = {
        name: value
        for name, value in _mapping(metadata.get("metrics")).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return {
        "version": str(metadata.get("version")),
        "algorithm": str(metadata.get("algorithm", "unknown")),
        "hyperparameters": _mapping(metadata.get("hyperparameters")),
        "metrics": metrics,
        "artifacts": artifacts,
        "training_data_sha256": _text(metadata.get("training_data_sha256")),
        "trained_at": _text(metadata.get("trained_at")),
        "mlflow_run_id": _text(mlflow.get("run_id")),
        "mlflow": {key: mlflow[key] for key in _MLFLOW_KEYS if key in mlflow},
        "library_versions": _mapping(metadata.get("library_versions")),
    }


def describe_models(
    models: ServingModels | None, settings: ApiSettings, load_error: str | None
) -> dict[str, Any]:
    """Return the ``/models`` answer (computed once at start)."""
    document: dict[str, Any] = {
        "default": settings.default_model,
        "versions": list(models.versions) if models is not None else [],
        "ready": models is not None,
        "threshold": settings.threshold,
        "models": [],
    }
    if models is None:
        document["reason"] = load_error or "models not loaded"
        return document
    document["models"] = [describe_model(models.info(v).metadata) for v in models.versions]
    return document


@bp.get("/models")
def list_models() -> Response:
    """Return the versions served, the default one, and for each its metadata."""
    state = get_state(current_app)
    if state.router is None:
        return jsonify(state.models_document)
    return jsonify({**state.models_document, **state.router.describe()})
