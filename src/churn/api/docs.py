"""``GET /openapi.json`` and ``GET /docs``: Swagger UI from the swagger-ui-bundle package.

The Swagger UI files are served by the app itself (no CDN), and its spec validator badge,
which would call an outside service, is turned off in ``static/docs.js``.
"""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    send_from_directory,
)

from churn.api.state import get_state

__all__ = ["SWAGGER_ASSETS", "bp", "swagger_ui_dir"]

bp = Blueprint("docs", __name__)

#: The Swagger UI files the docs page uses; nothing else of the package is served.
SWAGGER_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)


def swagger_ui_dir() -> Path:
    """Return the folder holding swagger-ui's static files (from swagger-ui-bundle)."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


@bp.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.0 document, built once at start."""
    return jsonify(get_state(current_app).openapi_document)


@bp.get("/docs")
def docs() -> str:
    """Render the interactive docs page."""
    return render_template("docs.html")


@bp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    """One of swagger-ui's static files."""
    if name not in SWAGGER_ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_dir(), name, max_age=86_400)
