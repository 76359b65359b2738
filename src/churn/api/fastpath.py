"""Prediction requests answered without Flask's request machinery, with Flask's own answers.

Through Flask, a single-customer prediction costs about twice what scoring and observing it
cost: a request context, URL matching, two hooks, a Response object. `PredictFastPath`, WSGI
middleware in front of the app, answers the prediction requests it recognises from the WSGI
environment, with the same steps and the same bytes and headers (tests compare both paths,
answer for answer):

* ``POST /predict`` with ``Content-Type: application/json`` exactly, no query but ``model=``
  (a plainly spelled version) and ``explain=`` (a flag): the handler's own steps (route,
  explain, `score`, `Router.count_answer`, `Observer.answered`);
* ``POST /invocations`` the same way, with no query but ``model=``: its view's steps on the
  body (`json_rows`, `scored_rows`), no request or response object;
* the V2 ``.../infer`` paths the same way, with no query but ``explain=`` and no binary data:
  its view's steps on the body (`served_version`, `inferred`);
* ``POST /predict/batch``, and the other forms of the two protocols (CSV, a charset, binary
  data): their own view functions, called with a request object over the environment
  instead of Flask's context.

A request whose declared length is missing or over the limit goes to Flask untouched; any
other is read once and, when the fast path declines it, given to Flask with its body as read.
It declines whatever it does not answer with a 200: an invalid body, an unknown version, a
refusal of any kind (Flask then answers with the error that names the field), and anything it
did not expect (logged once). In-process, a ``/predict`` costs 56-74 µs instead of 197-260 µs;
a one-customer ``/invocations`` 43 µs, and a V2 infer 63 µs, instead of about 105 and 135
through their views on a request object.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from flask import Request
from werkzeug.exceptions import HTTPException

from churn.api.errors import ApiError
from churn.api.explanations import FLAG_VALUES
from churn.api.invocations import MlflowError, invocations, json_rows, scored_rows
from churn.api.observe import Exchange
from churn.api.predict import predict_batch, scored_one
from churn.api.request_log import REQUEST_ID_HEADER, request_id_from
from churn.api.v2 import HEADER_LENGTH, V2Error, infer, infer_version, inferred, served_version

if TYPE_CHECKING:
    from flask import Response

    from churn.api.state import ApiState
    from churn.registry import ServingSet
    from churn.serving.prediction import Prediction

__all__ = ["PredictFastPath"]

log = logging.getLogger("churn.api")

#: A WSGI application, and the ``start_response`` it is given.
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: What the fast path answers: status line, headers, body.
Answer = tuple[str, list[tuple[str, str]], bytes]

_PREDICT = "/predict"
_INVOCATIONS = "/invocations"
#: The WSGI key of V2's binary-data header: such a request is left to its view.
_BINARY_INPUT = "HTTP_" + HEADER_LENGTH.upper().replace("-", "_")
_JSON = "application/json"
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
#: A version or model name spelled plainly (anything else is Flask's to decode and judge).
_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,40}")
#: The refusals the views raise: Flask answers them with the protocol's error shape.
_REFUSALS = (ApiError, MlflowError, V2Error, HTTPException)


def _view(view: Callable[..., Response]) -> Callable[..., Response]:
    """Return the view function under `churn.api.scoring.observed` (to call without Flask)."""
    return view.__wrapped__  # type: ignore[attr-defined,no-any-return]


class PredictFastPath:
    """WSGI middleware in front of the Flask app: answers the prediction requests it knows."""

    def __init__(self, app: WsgiApp, state: ApiState) -> None:
        #: The Flask app's own WSGI callable: everything the fast path declines goes there.
        self.app = app
        self._state = state
        self._max_body = state.settings.max_body_bytes
        self._failed_before = False
        self._invocations = _view(invocations)
        self._batch = _view(predict_batch)
        self._infer = _view(infer)
        self._infer_version = _view(infer_version)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer ``environ`` if it is a prediction request the fast path knows, else pass it."""
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO") or ""
        route = self._route(path, environ)
        if route is None:
            return self.app(environ, start_response)
        endpoint, answer_with = route

        declared = environ.get("CONTENT_LENGTH") or ""
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if (
            not (declared.isascii() and declared.isdigit())
            or not 0 < int(declared) <= self._max_body
        ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        body = environ["wsgi.input"].read(int(declared))
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        exchange = Exchange("POST", path, endpoint, request_id, started)
        try:
            answer = answer_with(body, exchange)
        except _REFUSALS:
            answer = None
        except Exception:  # noqa: BLE001 - Flask answers it, with its error handlers if need be
            if not self._failed_before:
                self._failed_before = True
                log.warning("the prediction fast path failed; Flask answers", exc_info=True)
            answer = None
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, headers, payload = answer
        start_response(status, headers)
        return [payload]

    def _predict(
        self, requested: str | None, explaining: bool, body: bytes, exchange: Exchange
    ) -> Answer:
        """``POST /predict`` with the handler's own steps (a refusal: Flask answers)."""
        state = self._state
        serving = state.router.snapshot()
        requested = state.router.named(serving, requested, exchange)  # 404: Flask answers
        result, answer = scored_one(state, exchange, serving, requested, explaining, body)
        return self._answered(serving, result, orjson.dumps(answer), exchange, requested)

    def _invocations_json(
        self, requested: str | None, body: bytes, exchange: Exchange
    ) -> Answer | None:
        """``POST /invocations`` with a JSON body, as its view answers; None to let Flask."""
        state = self._state
        serving = state.router.snapshot()
        requested = state.router.named(serving, requested, exchange)  # 404: Flask answers
        try:
            rows = json_rows(body.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        result, payload = scored_rows(state, exchange, serving, requested, rows)
        return self._answered(serving, result, payload, exchange, requested)

    def _infer_json(
        self, url_values: Mapping[str, str], explaining: bool, body: bytes, exchange: Exchange
    ) -> Answer | None:
        """Answer a V2 infer request all in JSON as its view does; None to let Flask answer."""
        state = self._state
        version = url_values.get("version")
        target = served_version(state, exchange, url_values["name"], version)  # 404: Flask
        result, payload, header_length = inferred(state, exchange, target, body, b"", explaining)
        if header_length is None:
            return self._answered(target[0], result, payload, exchange, version)
        binary = ("application/octet-stream", (HEADER_LENGTH, str(header_length)))
        return self._answered(target[0], result, payload, exchange, version, binary)

    def _answered(
        self,
        serving: ServingSet,
        result: Prediction,
        payload: bytes,
        exchange: Exchange,
        requested: str | None,
        binary: tuple[str, tuple[str, str]] | None = None,
    ) -> Answer:
        """Count, label and observe an answer as `churn.api.scoring.answered` does.

        ``binary``: the content type and V2's length header of an answer with binary data.
        """
        state = self._state
        labels = state.router.count_answer(serving, result, routed=requested is None)
        exchange.model = result.version
        state.observer.answered(exchange, result)
        content_type, extra = (_JSON, ()) if binary is None else (binary[0], (binary[1],))
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            *extra,
            *labels,
            (REQUEST_ID_HEADER, exchange.request_id),
            _NOSNIFF,
        ]
        return "200 OK", headers, payload

    def _route(
        self, path: str, environ: dict[str, Any]
    ) -> tuple[str, Callable[[bytes, Exchange], Answer | None]] | None:
        """Return the route pattern of a request and what answers it, as ``(body, exchange)``.

        None for a request the fast path leaves to Flask. Requests in plain JSON with a query
        the fast path reads take the views' own steps on the body; the other forms of the
        protocols their views, on a request object.
        """
        plain_json = environ.get("CONTENT_TYPE") == _JSON
        query = _prediction_query(environ.get("QUERY_STRING") or "")
        if path == _PREDICT:
            if query is None or not plain_json:
                return None
            return path, functools.partial(self._predict, *query)
        table = self._table_route(path)
        if table is None:
            return None
        view, endpoint, url_values = table
        if plain_json and query is not None:
            requested, explaining = query
            if view is self._invocations and not explaining:
                return endpoint, functools.partial(self._invocations_json, requested)
            # ?model= is not V2's (its view ignores it); binary data is left to the view.
            is_infer = view is self._infer or view is self._infer_version
            if is_infer and requested is None and _BINARY_INPUT not in environ:
                return endpoint, functools.partial(self._infer_json, url_values, explaining)
        return endpoint, functools.partial(self._table, view, url_values, environ)

    def _table_route(self, path: str) -> tuple[Callable[..., Response], str, dict[str, str]] | None:
        """Return the view, route pattern and URL values of a path answered by its view.

        ``/predict/batch``, ``/invocations`` and the V2 infer paths; None for any other.
        """
        if path == "/predict/batch":
            return self._batch, path, {}
        if path == _INVOCATIONS:
            return self._invocations, path, {}
        parts = path.split("/")
        if len(parts) < 5 or parts[1:3] != ["v2", "models"] or parts[-1] != "infer":
            return None
        if not all(map(_PLAIN.fullmatch, parts[3:-1])):
            return None
        if len(parts) == 5:
            return self._infer, "/v2/models/<name>/infer", {"name": parts[3]}
        if len(parts) == 7 and parts[4] == "versions":
            url_values = {"name": parts[3], "version": parts[5]}
            return self._infer_version, "/v2/models/<name>/versions/<version>/infer", url_values
        return None

    def _table(
        self,
        view: Callable[..., Response],
        url_values: Mapping[str, str],
        environ: dict[str, Any],
        body: bytes,
        exchange: Exchange,
    ) -> Answer:
        """Call a protocol's view on a request over ``environ`` (it answers, or raises)."""
        environ["wsgi.input"] = io.BytesIO(body)
        response = view(self._state, Request(environ), exchange, **url_values)
        headers = response.headers
        headers[REQUEST_ID_HEADER] = exchange.request_id
        headers.setdefault(*_NOSNIFF)
        return response.status, headers.to_wsgi_list(), response.get_data()


def _prediction_query(query: str) -> tuple[str | None, bool] | None:
    """Return the version and explain flag of a prediction request's query (None: not read).

    Only ``model=<plain version>`` and ``explain=<true|false|1|0>``, each at most once.
    """
    requested: str | None = None
    explaining: bool | None = None
    for part in query.split("&") if query else ():
        key, sep, value = part.partition("=")
        if key == "model" and sep and requested is None and _PLAIN.fullmatch(value):
            requested = value
        elif key == "explain" and sep and explaining is None and value in FLAG_VALUES:
            explaining = value in ("true", "1")
        else:
            return None
    return requested, bool(explaining)
