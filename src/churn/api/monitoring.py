"""Drift monitoring in the API: the monitor built from the references, and ``/monitoring/drift``.

``GET /monitoring/drift?model=v2`` answers the reference shares and the counts and PSI of the
last closed and the open window of one model version (the default one when not given): bin
counts only, never a served record. The same figures reach ``/metrics`` through the monitor,
registered as a collector of the app's registry.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, jsonify

from churn.api.errors import ApiError, field_error
from churn.api.state import request_objects
from churn.config import ApiSettings, ArtifactPaths
from churn.drift import DriftMonitor, Reference

__all__ = ["bp", "load_monitor"]

log = logging.getLogger("churn.api")

bp = Blueprint("monitoring", __name__)


def load_monitor(settings: ApiSettings, versions: tuple[str, ...]) -> DriftMonitor | None:
    """Build the drift monitor of the served ``versions`` that have a reference document.

    A version without one (artifacts trained before drift monitoring) is served unmonitored,
    and the reason is logged once; None when no version has one.
    """
    references: dict[str, Reference] = {}
    for version in versions:
        path = ArtifactPaths(Path(settings.root)).model_files.reference(version)
        try:
            references[version] = Reference.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "no drift monitoring for model %s: %s",
                version,
                " ".join(str(exc).split()) or type(exc).__name__,
                extra={"event": "drift_reference_missing"},
            )
    if not references:
        return None
    return DriftMonitor(
        references,
        window_records=settings.drift_window_records,
        window_seconds=settings.drift_window_seconds,
    )


@bp.get("/monitoring/drift")
def drift() -> Response:
    """Answer the counts and PSI of one model version's drift windows against its reference."""
    state, req, _ = request_objects()
    monitor = state.drift
    if monitor is None:
        raise ApiError(
            404,
            "drift_unavailable",
            "drift monitoring is off: no served model has a reference document",
        )
    version = req.args.get("model", state.settings.default_model)
    if version not in monitor.versions:
        listing = ", ".join(monitor.versions)
        message = f"no drift monitoring for model {version[:40]!r}; monitored: {listing}"
        raise field_error(404, "unknown_model", message, "model", f"must be one of: {listing}")
    return jsonify(monitor.snapshot(version))
