"""The contract's JSON error shape, and the handlers that turn every failure into it.

``{"error": {"code": "...", "message": "...", "details": [{"field": "...", "problem": "..."}]}}``

HTTP errors raised by Flask or Werkzeug (404, 405, 413, ...) get the same shape. Anything
unexpected is logged with its traceback and answered with a bare JSON 500: no trace leaves
the process, and the count of such answers is kept so tests can assert it stays at zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

__all__ = [
    "ApiError",
    "error_response",
    "field_error",
    "register_error_handlers",
    "register_error_shape",
]

#: ``app.extensions`` key of the error renderers of protocols with their own error shape.
_SHAPES = "churn.error_shapes"

log = logging.getLogger("churn.api")

#: Error codes for HTTP errors raised outside our own code.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    431: "headers_too_large",
}


class ApiError(Exception):
    """An error answered with the contract's JSON shape and the given status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[dict[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)


def field_error(status: int, code: str, message: str, field: str, problem: str) -> ApiError:
    """Return an `ApiError` whose one detail says what is wrong with one ``field``."""
    return ApiError(status, code, message, [{"field": field, "problem": problem}])


def error_response(
    status: int, code: str, message: str, details: Sequence[dict[str, str]] = ()
) -> Response:
    """Build the JSON error response."""
    response = jsonify({"error": {"code": code, "message": message, "details": list(details)}})
    response.status_code = status
    return response


def register_error_shape(app: Flask, prefix: str, render: Callable[[int, str], Response]) -> None:
    """Answer HTTP errors (404, 405, ...) under ``prefix`` with ``render(status, message)``.

    For the protocols served beside the API (``/v2``, ``/invocations``) whose clients expect
    their own error shape even for a path or method that does not exist.
    """
    app.extensions.setdefault(_SHAPES, {})[prefix] = render


def protocol_error_handlers(bp: Blueprint, render: Callable[[int, str], Response]) -> None:
    """Answer validation (`ApiError`) and HTTP errors of ``bp``'s routes with ``render``.

    A 5xx is re-raised, so that the app's own handler logs it and answers 500.
    """

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return render(exc.status, exc.message)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 400
        if status >= 500:
            raise exc
        return render(status, (exc.description or exc.name or "error").strip())


def register_error_handlers(
    app: Flask, on_internal_error: Callable[[], None] | None = None
) -> None:
    """Install the handlers for `ApiError`, HTTP errors and anything else.

    Args:
        app: the app to install them on.
        on_internal_error: a callable run (with no argument) each time the catch-all answers.

    """

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status >= 500:
            return _internal(exc)
        code = HTTP_CODES.get(status, "http_error")
        message = (exc.description or exc.name or "error").strip()
        if status == 404:
            message = "no such endpoint; see /openapi.json for the API's paths"
        elif status == 405:
            allowed = ", ".join(getattr(exc, "valid_methods", None) or ())
            message = f"method not allowed for this endpoint; allowed: {allowed}"
        path = request.path
        render = next(
            (
                shape
                for prefix, shape in app.extensions.get(_SHAPES, {}).items()
                if path == prefix or path.startswith(prefix + "/")
            ),
            None,
        )
        response = render(status, message) if render else error_response(status, code, message)
        for name, value in exc.get_headers():
            if name.lower() == "allow":  # 405 answers must say which methods are allowed
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def _internal(exc: BaseException) -> Response:
        log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        if on_internal_error is not None:
            on_internal_error()
        return error_response(500, "internal_error", "internal server error")
