"""``GET /metrics``: the Prometheus text exposition of the app's metrics (`churn.api.metrics`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from churn.api.state import get_state

__all__ = ["bp"]

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of this app's registry, every sample labelled by replica."""
    body = generate_latest(get_state(current_app).metrics.exposed)  # type: ignore[arg-type]
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)
