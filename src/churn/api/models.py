"""``GET /models``: the versions served and their metadata; ``POST /registry/refresh``.

The ``/models`` document is kept by the router (`churn.api.routing`), computed each time a
served set is published; the refresh asks the registry watcher to look at the aliases now.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from churn.api.errors import ApiError, field_error
from churn.api.state import get_state

__all__ = ["bp"]

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models() -> Response:
    """Return the versions served, the default one, and for each its metadata."""
    router = get_state(current_app).router
    return jsonify({**router.models_document, **router.describe()})


@bp.post("/registry/refresh")
def refresh() -> tuple[Response, int]:
    """Look at the registry aliases now (``Authorization: Bearer <CHURN_REGISTRY_TOKEN>``)."""
    state = get_state(current_app)
    router = state.router
    token = state.settings.registry_token
    if router.watcher is None or not token:
        raise ApiError(
            404,
            "not_found",
            "registry notifications are off (CHURN_MODEL_SOURCE=registry and "
            "CHURN_REGISTRY_TOKEN turn them on)",
        )
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise field_error(
            401,
            "unauthorized",
            "missing token: send 'Authorization: Bearer <CHURN_REGISTRY_TOKEN>'",
            "Authorization",
            "required bearer token is missing",
        )
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise field_error(
            403,
            "forbidden",
            "wrong token",
            "Authorization",
            "the bearer token is not the configured one",
        )
    router.watcher.wake()
    return jsonify({"status": "accepted", "registry": router.watcher.status()}), 202
