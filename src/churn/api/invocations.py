"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``GET /version``.

What ``mlflow models serve`` answers for the project's MLflow-logged models (a scikit-learn
pipeline logged with ``pyfunc_predict_fn="predict_proba"``), from the compiled models:
``{"predictions": [[P(No), P(Yes)], ...]}``, one pair per row, in input order. The model is
the default version, or ``?model=vN``.

Accepted bodies, as MLflow accepts them:

* ``application/json`` with exactly one of ``dataframe_split`` (``{"columns": [...],
  "data": [[...], ...]}``, ``index`` allowed), ``dataframe_records`` (``[{column: value}, ...]``),
  ``instances`` or ``inputs`` (rows ``[{...}, ...]`` or columns ``{column: [...]}``), and
  optionally ``params`` (an object; MLflow ignores params the model's signature does not
  declare, and so does this);
* ``text/csv``: a header row with the column names, then one row per customer (an empty
  ``TotalCharges`` means unknown).

Values are checked as ``/predict`` checks them. Errors use MLflow's shape:
``{"error_code": "BAD_REQUEST", "message": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

import orjson
from flask import Blueprint, Request, Response
from flask.blueprints import BlueprintSetupState

from churn.api.errors import protocol_error_handlers, register_error_shape
from churn.api.jsonio import loads as json_loads
from churn.api.observe import Exchange
from churn.api.scoring import answered, observed, score, served_and_requested
from churn.api.state import ApiState, request_objects
from churn.api.tabular import TableError, checked_batch, columns_to_rows

if TYPE_CHECKING:
    from churn.registry import ServingSet
    from churn.serving.prediction import Prediction

__all__ = ["MlflowError", "bp", "invocations", "json_rows", "scored_rows"]

bp = Blueprint("invocations", __name__)

#: The request keys MLflow accepts, exactly one of which a JSON body holds.
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_CONTENT_TYPES = ("application/json", "text/csv")


class MlflowError(Exception):
    """An error answered in MLflow's shape."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: MLflow's error code for a status when the error does not name one.
_CODES = {404: "RESOURCE_DOES_NOT_EXIST", 503: "TEMPORARILY_UNAVAILABLE"}


def _error(status: int, message: str, code: str | None = None) -> Response:
    code = code or _CODES.get(status, "BAD_REQUEST")
    body = json.dumps({"error_code": code, "message": message})
    return Response(body, status, mimetype="application/json")


@bp.record_once
def _shape(setup: BlueprintSetupState) -> None:
    for prefix in ("/invocations", "/ping", "/version"):
        register_error_shape(setup.app, prefix, _error)


@bp.errorhandler(MlflowError)
def _mlflow_error(exc: MlflowError) -> Response:
    return _error(exc.status, exc.message, exc.code)


protocol_error_handlers(bp, _error)


@bp.get("/ping")
def ping() -> Response:
    """200 (body a newline) when the models are loaded, 404 otherwise, as MLflow answers."""
    state, _, _ = request_objects()
    return Response("\n", 200 if state.models is not None else 404, mimetype="application/json")


@bp.get("/version")
def version() -> Response:
    """Answer the MLflow version the served models were logged with (MLflow: its own)."""
    state, _, _ = request_objects()
    router = state.router
    serving = router.snapshot()
    text = "unknown"
    if serving.models is not None:
        champion, _ = router.route(serving, None, None, single=False)
        metadata = serving.models.info(champion).metadata
        versions = metadata.get("library_versions")
        if isinstance(versions, dict) and versions.get("mlflow"):
            text = str(versions["mlflow"])
    return Response(text, 200, mimetype="text/plain")


@bp.post("/invocations")
@observed
def invocations(state: ApiState, req: Request, exchange: Exchange) -> Response:
    """Score a table of customers; answer ``{"predictions": [[P(No), P(Yes)], ...]}``."""
    serving, requested = served_and_requested(state, req, exchange)
    rows = _rows(req, state.settings.max_body_bytes)
    result, body = scored_rows(state, exchange, serving, requested, rows)
    response = Response(body, mimetype="application/json")
    return answered(state, exchange, serving, result, response, routed=requested is None)


def scored_rows(
    state: ApiState,
    exchange: Exchange,
    serving: ServingSet,
    requested: str | None,
    rows: list[Any],
) -> tuple[Prediction, bytes]:
    """Check and score a table's rows; return the prediction and the answer's JSON.

    Raises:
        MlflowError: 400 for a bad table (`checked_batch`).
        ApiError: 503 when no models are loaded.

    """
    version, alias = state.router.route(serving, requested, None, single=False)
    exchange.model = version
    records = checked_batch(state, exchange, rows, MlflowError)
    result = score(state, serving, version, alias, records)
    pairs = [[1.0 - p, p] for p in result.probabilities.tolist()]
    return result, orjson.dumps({"predictions": pairs})


def _rows(req: Request, max_bytes: int) -> list[Any]:
    """Read the body (JSON or CSV) into rows of customer objects, values not yet checked."""
    mimetype = req.mimetype
    if mimetype not in _CONTENT_TYPES:
        raise MlflowError(
            415,
            f"This predictor only supports the following content types: {list(_CONTENT_TYPES)}. "
            f"Got {(req.content_type or 'none')[:60]!r}.",
        )
    charset = req.mimetype_params.get("charset", "utf-8").lower()
    if charset != "utf-8":
        raise MlflowError(415, "The scoring server only supports UTF-8")
    if req.content_length is not None and req.content_length > max_bytes:
        raise MlflowError(413, f"the request body is larger than the limit of {max_bytes} bytes")
    data = req.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MlflowError(413, f"the request body is larger than the limit of {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MlflowError(400, "the body is not valid UTF-8") from None
    if mimetype == "text/csv":
        return _csv_rows(text)
    return json_rows(text)


def _csv_rows(text: str) -> list[dict[str, str]]:
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not lines[0]:
        raise MlflowError(400, "the CSV body is empty; expected a header row, then customers")
    header, body = lines[0], [line for line in lines[1:] if line]
    for i, line in enumerate(body):
        if len(line) != len(header):
            raise MlflowError(
                400, f"CSV row {i}: {len(line)} cells under a header of {len(header)} columns"
            )
    return [dict(zip(header, line, strict=True)) for line in body]


def json_rows(text: str) -> list[Any]:
    """Return the rows of a JSON body in any of MLflow's forms (`FORMATS`), values unchecked.

    Raises:
        MlflowError: 400 for a body that is not one of them.

    """
    try:
        body = json_loads(text)
    except RecursionError:
        raise MlflowError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise MlflowError(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise MlflowError(400, f"the body must be a JSON object with one of: {', '.join(FORMATS)}")
    keys = [k for k in body if k in FORMATS]
    unknown = [str(k)[:40] for k in body if k not in FORMATS and k != "params"]
    if len(keys) != 1 or unknown:
        raise MlflowError(
            400,
            f"the body must hold exactly one of {', '.join(FORMATS)} (and optionally params); "
            f"got fields {[str(k)[:40] for k in body][:10]}",
        )
    if not isinstance(body.get("params", {}), dict):
        raise MlflowError(400, "params must be a JSON object")
    key = keys[0]
    payload = body[key]
    try:
        if key == "dataframe_split":
            return _split_rows(payload)
        if key == "dataframe_records":
            if not isinstance(payload, list):
                raise MlflowError(400, "dataframe_records must be an array of row objects")
            return payload
        if isinstance(payload, dict):  # columnar instances / inputs
            if not all(isinstance(v, list) for v in payload.values()):
                raise MlflowError(400, f"{key} as columns must map each column to an array")
            return columns_to_rows(payload, f"{key} column")
        if isinstance(payload, list):
            return payload
    except TableError as exc:
        raise MlflowError(400, exc.message) from None
    raise MlflowError(400, f"{key} must be an array of row objects or an object of columns")


def _split_rows(payload: object) -> list[dict[str, object]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise MlflowError(400, 'dataframe_split must be {"columns": [...], "data": [[...], ...]}')
    columns = payload.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise MlflowError(400, "dataframe_split.columns must be an array of column names")
    extra = [str(k)[:40] for k in payload if k not in ("columns", "data", "index")]
    if extra:
        raise MlflowError(400, f"dataframe_split holds unknown fields: {', '.join(extra)}")
    rows = []
    for i, line in enumerate(payload["data"]):
        if not isinstance(line, list) or len(line) != len(columns):
            raise MlflowError(
                400, f"dataframe_split.data[{i}] must be an array of {len(columns)} values"
            )
        rows.append(dict(zip(columns, line, strict=True)))
    return rows
