"""Open Inference Protocol V2 (REST), as KServe, Seldon MLServer and Triton clients speak it.

One model, ``churn``, in the served versions (``v1``, ``v2``; the default one when none is
named). Its inputs are one tensor per Telco column, shape ``[n]``: ``BYTES`` for the
categorical columns, ``INT64`` for ``SeniorCitizen`` and ``tenure``, ``FP64`` for
``MonthlyCharges`` and ``TotalCharges`` (any integer or float type is accepted for the numeric
columns; a ``null`` or NaN ``TotalCharges`` means unknown). Its outputs:

* ``churn_probability`` (``FP64``, ``[n]``) and ``churn`` (``BOOL``, ``[n]``), by default;
* ``contributions`` (``FP64``, ``[n, 19]``, the columns in the order of the model's inputs)
  and ``base_value`` (``FP64``, ``[n]``): each column's contribution to the churn log-odds,
  when asked for by name in ``outputs``, by the request parameter ``"explain": true`` or by
  ``?explain=true``.

The binary tensor data extension is supported both ways (``Inference-Header-Content-Length``;
``binary_data``, ``binary_data_output``, ``binary_data_size``): it is what ``tritonclient``
sends by default. Errors are ``{"error": "<message>"}`` with a 4xx status; a bad value names
the input and the row, with the same checks as ``/predict``.
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from flask import Blueprint, Request, Response
from flask.blueprints import BlueprintSetupState

import churn
from churn.api.errors import ApiError, protocol_error_handlers, register_error_shape
from churn.api.explanations import explain, wants_explanation
from churn.api.jsonio import loads as json_loads
from churn.api.observe import Exchange
from churn.api.scoring import answered, observed, score
from churn.api.state import ApiState, request_objects
from churn.api.tabular import checked_batch
from churn.registry import ServingSet
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, NUMERIC

if TYPE_CHECKING:
    from churn.serving.prediction import Prediction

__all__ = [
    "HEADER_LENGTH",
    "INPUT_TYPES",
    "MODEL_NAME",
    "V2Error",
    "bp",
    "inferred",
    "model_metadata",
    "served_version",
]

bp = Blueprint("v2", __name__, url_prefix="/v2")

#: The model's name in the protocol.
MODEL_NAME = "churn"
#: Request header giving the size of the JSON part of a binary request or response.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: The declared datatype of each input, in the order of FEATURE_COLUMNS.
INPUT_TYPES: dict[str, str] = {
    c: "BYTES" if c in CATEGORICAL else ("INT64" if NUMERIC[c].integer else "FP64")
    for c in FEATURE_COLUMNS
}
_INPUT_POSITION = {c: i for i, c in enumerate(FEATURE_COLUMNS)}
#: Little-endian numpy types of the numeric tensor types (binary data).
NUMERIC_DTYPES: dict[str, str] = {
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "churn_probability": ("FP64", [-1]),
    "churn": ("BOOL", [-1]),
    "contributions": ("FP64", [-1, len(FEATURE_COLUMNS)]),
    "base_value": ("FP64", [-1]),
}
_DEFAULT_OUTPUTS = ("churn_probability", "churn")
_EXPLAIN_OUTPUTS = ("contributions", "base_value")


class V2Error(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> Response:
    response = Response(json.dumps({"error": message}), status, mimetype="application/json")
    return response


@bp.errorhandler(V2Error)
def _v2_error(exc: V2Error) -> Response:
    return _error(exc.status, exc.message)


protocol_error_handlers(bp, _error)


@bp.record_once
def _shape(setup: BlueprintSetupState) -> None:
    register_error_shape(setup.app, "/v2", _error)


# -- health and metadata -------------------------------------------------------------------


@bp.get("")
def server_metadata() -> Response:
    """Server metadata: name, version, extensions."""
    document = {
        "name": "churn-prediction",
        "version": churn.__version__,
        "extensions": ["binary_tensor_data"],
    }
    return Response(json.dumps(document), mimetype="application/json")


@bp.get("/health/live")
def live() -> Response:
    """200 while the server answers (empty body, as the protocol says)."""
    return Response(b"", 200)


@bp.get("/health/ready")
def ready() -> Response:
    """200 when the models are loaded, 400 otherwise (empty body)."""
    state, _, _ = request_objects()
    return Response(b"", 200 if state.models is not None else 400)


def _version(state: ApiState, name: str, version: str | None) -> tuple[ServingSet, str, str | None]:
    """Return the served set, the version asked for (else the champion) and its alias.

    Raises:
        V2Error: 404 for a model other than ``churn`` or a version not served.

    """
    if name != MODEL_NAME:
        raise V2Error(404, f"unknown model {name[:40]!r}; served: {MODEL_NAME!r}")
    router = state.router
    serving = router.snapshot()
    available = router.available(serving)
    if version is not None and version not in available:
        raise V2Error(
            404,
            f"unknown version {version[:40]!r} of model {MODEL_NAME!r}; "
            f"available: {', '.join(available)}",
        )
    served, alias = router.route(serving, version, None, single=False)
    return serving, served, alias


def _loaded(serving: ServingSet, version: str) -> bool:
    return serving.models is not None and version in serving.models.versions


def model_metadata(versions: list[str]) -> dict[str, Any]:
    """Return the model metadata document for ``versions``."""
    return {
        "name": MODEL_NAME,
        "versions": versions,
        "platform": "scikit-learn",
        "inputs": [{"name": c, "datatype": INPUT_TYPES[c], "shape": [-1]} for c in FEATURE_COLUMNS],
        "outputs": [
            {"name": name, "datatype": datatype, "shape": shape}
            for name, (datatype, shape) in OUTPUTS.items()
        ],
    }


@bp.get("/models/<name>")
def metadata(name: str) -> Response:
    """Model metadata: every served version."""
    state, _, _ = request_objects()
    serving, _, _ = _version(state, name, None)
    document = model_metadata(list(state.router.available(serving)))
    return Response(json.dumps(document), mimetype="application/json")


@bp.get("/models/<name>/versions/<version>")
def version_metadata(name: str, version: str) -> Response:
    """Model metadata of one version."""
    state, _, _ = request_objects()
    _, served, _ = _version(state, name, version)
    document = model_metadata([served])
    return Response(json.dumps(document), mimetype="application/json")


@bp.get("/models/<name>/ready")
def model_ready(name: str) -> Response:
    """200 when the default version is loaded, 400 otherwise."""
    state, _, _ = request_objects()
    serving, served, _ = _version(state, name, None)
    return Response(b"", 200 if _loaded(serving, served) else 400)


@bp.get("/models/<name>/versions/<version>/ready")
def version_ready(name: str, version: str) -> Response:
    """200 when that version is loaded, 400 otherwise."""
    state, _, _ = request_objects()
    serving, served, _ = _version(state, name, version)
    return Response(b"", 200 if _loaded(serving, served) else 400)


# -- inference ----------------------------------------------------------------------------


@bp.post("/models/<name>/infer")
@observed
def infer(state: ApiState, req: Request, exchange: Exchange, name: str) -> Response:
    """Inference with the default version."""
    return _infer(state, req, exchange, name, None)


@bp.post("/models/<name>/versions/<version>/infer")
@observed
def infer_version(
    state: ApiState, req: Request, exchange: Exchange, name: str, version: str
) -> Response:
    """Inference with one version."""
    return _infer(state, req, exchange, name, version)


def _infer(
    state: ApiState, req: Request, exchange: Exchange, name: str, version: str | None
) -> Response:
    target = served_version(state, exchange, name, version)
    text, binary = _read_body(req, state.settings.max_body_bytes)
    result, body, header_length = inferred(
        state, exchange, target, text, binary, wants_explanation(req.args)
    )
    if header_length is not None:
        response = Response(body, mimetype="application/octet-stream")
        response.headers[HEADER_LENGTH] = str(header_length)
    else:
        response = Response(body, mimetype="application/json")
    return answered(state, exchange, target[0], result, response, routed=version is None)


def served_version(
    state: ApiState, exchange: Exchange, name: str, version: str | None
) -> tuple[ServingSet, str, str | None]:
    """Return the served set, the version answering and its alias; label the exchange with it.

    Raises:
        V2Error: 404 for a model other than ``churn`` or a version not served.

    """
    target = _version(state, name, version)
    exchange.model = target[1]
    return target


def inferred(
    state: ApiState,
    exchange: Exchange,
    target: tuple[ServingSet, str, str | None],
    text: bytes,
    binary: bytes,
    explain_query: bool,
) -> tuple[Prediction, bytes, int | None]:
    """Answer an inference request: its prediction, the answer's body, its JSON part's length.

    ``text`` is the request's JSON part, ``binary`` the binary data after it; the length is
    None for an answer all in JSON (else the answer's binary outputs follow the JSON part).
    A request all in JSON in the common form is decoded in one pass (`InferDecoder`).

    Raises:
        V2Error: 400 for a bad request; 404 is `served_version`'s.
        ApiError: 503 when no models are loaded.

    """
    serving, served, alias = target
    decoded = None if binary else state.infer_decoder.decode(text)
    request, rows = (_parse_request(text), None) if decoded is None else decoded
    parameters = _object(request.get("parameters", {}), "parameters")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(400, "'id' must be a string")
    outputs = _requested_outputs(request, parameters, explain_query)
    if rows is None:
        rows = _rows(request.get("inputs"), binary, state.settings.max_batch)
    records = checked_batch(state, exchange, rows, V2Error)
    explanation = None
    # Explained before scoring: a refusal (no explanation for this model) counts no drift.
    if serving.models is not None and any(o in _EXPLAIN_OUTPUTS for o, _ in outputs):
        try:
            explanation = explain(serving.models, served, records)
        except ApiError as exc:
            raise V2Error(400, exc.message) from None
    result = score(state, serving, served, alias, records)
    values: dict[str, np.ndarray] = {
        "churn_probability": result.probabilities,
        "churn": result.churn,
    }
    if explanation is not None:
        values["contributions"] = explanation.contributions
        values["base_value"] = np.full(len(records), explanation.base_value)
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": served}
    if request_id is not None:
        answer["id"] = request_id
    if alias is not None:
        answer["parameters"] = {"alias": alias}
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output, as_binary in outputs:
        datatype, _shape = OUTPUTS[output]
        array = values[output]
        tensor: dict[str, Any] = {"name": output, "datatype": datatype, "shape": list(array.shape)}
        if as_binary:
            raw = array.astype("?" if datatype == "BOOL" else "<f8").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    answer["outputs"] = tensors
    header = orjson.dumps(answer)
    if chunks:
        return result, b"".join([header, *chunks]), len(header)
    return result, header, None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise V2Error(400, f"'{what}' must be a JSON object")
    return value


def _read_body(req: Request, max_bytes: int) -> tuple[bytes, bytes]:
    """Return the JSON part of the body (not empty) and the binary data after it."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise V2Error(413, f"the request body is larger than the limit of {max_bytes} bytes")
    data = req.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise V2Error(413, f"the request body is larger than the limit of {max_bytes} bytes")
    declared = req.headers.get(HEADER_LENGTH)
    split = len(data)
    if declared is not None:
        if not declared.strip().isdigit() or int(declared) > len(data):
            raise V2Error(
                400, f"{HEADER_LENGTH} must be a byte count within the body; got {declared[:40]!r}"
            )
        split = int(declared)
    if not data[:split].strip():
        raise V2Error(400, "the request body is empty; expected an inference request")
    return data[:split], data[split:]


def _parse_request(text: bytes) -> dict[str, Any]:
    """Return the request's JSON object (400 when it is not JSON or not an object)."""
    try:
        request = json_loads(text)
    except RecursionError:
        raise V2Error(400, "the JSON request is nested too deeply") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0][:200]
        raise V2Error(400, f"the request is not valid JSON: {reason}") from None
    return _object(request, "request")


def _requested_outputs(
    request: dict[str, Any], parameters: dict[str, Any], explain_query: bool
) -> list[tuple[str, bool]]:
    """Return the outputs to answer, each with whether it goes as binary data."""
    binary_default = parameters.get("binary_data_output", False)
    explaining = parameters.get("explain", False)
    if not isinstance(binary_default, bool) or not isinstance(explaining, bool):
        raise V2Error(400, "parameters 'binary_data_output' and 'explain' must be true or false")
    requested = request.get("outputs")
    if requested is None:
        names = list(_DEFAULT_OUTPUTS)
        if explaining or explain_query:
            names += _EXPLAIN_OUTPUTS
        return [(n, binary_default) for n in names]
    if not isinstance(requested, list) or not requested:
        raise V2Error(400, "'outputs' must be a non-empty array of {\"name\": ...} objects")
    chosen: list[tuple[str, bool]] = []
    for i, output in enumerate(requested):
        output = _object(output, f"outputs[{i}]")
        output_name = output.get("name")
        if not isinstance(output_name, str) or output_name not in OUTPUTS:
            raise V2Error(
                400,
                f"outputs[{i}]: unknown output {str(output_name)[:40]!r}; "
                f"available: {', '.join(OUTPUTS)}",
            )
        as_binary = _object(output.get("parameters", {}), f"outputs[{i}].parameters").get(
            "binary_data", binary_default
        )
        if not isinstance(as_binary, bool):
            raise V2Error(400, f"outputs[{i}].parameters.binary_data must be true or false")
        chosen.append((output_name, as_binary))
    return chosen


#: Python types of the JSON values of each input in the common case (see `_plain_rows`).
_PLAIN_TYPES: dict[str, frozenset[type]] = {
    c: frozenset({str})
    if t == "BYTES"
    else frozenset(
        {int} if t == "INT64" else {int, float, type(None)} if NUMERIC[c].nullable else {int, float}
    )
    for c, t in INPUT_TYPES.items()
}


def _plain_rows(inputs: object, max_rows: int) -> list[dict[str, object]] | None:
    """Accept the common case in one pass, or return None to let the full checks decide.

    The common case: the 19 inputs, each once, with its declared datatype, shape ``[n]``,
    ``data`` a flat JSON array of ``n`` values of the datatype's JSON type (no NaN), no
    parameters. The rows are then what the full checks give.
    """
    if type(inputs) is not list or len(inputs) != len(FEATURE_COLUMNS):
        return None
    columns: dict[str, list[object]] = {}
    n = -1
    for tensor in inputs:
        if type(tensor) is not dict or "parameters" in tensor:
            return None
        name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
        if type(name) is not str or name in columns or name not in INPUT_TYPES:
            return None
        if tensor.get("datatype") != INPUT_TYPES[name] or type(shape) is not list:
            return None
        if len(shape) != 1 or type(data) is not list or len(data) != shape[0]:
            return None
        if n < 0:
            n = len(data)
        if len(data) != n or not set(map(type, data)) <= _PLAIN_TYPES[name]:
            return None
        if float in _PLAIN_TYPES[name] and any(v != v for v in data):  # NaN: the full checks
            return None
        columns[name] = data
    if not 0 < n <= max_rows:
        return None
    return [dict(zip(columns, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]


def _rows(inputs: object, binary: bytes, max_rows: int) -> list[dict[str, object]]:
    """Turn the input tensors into customer rows (values still to be validated)."""
    if not binary:
        plain = _plain_rows(inputs, max_rows)
        if plain is not None:
            return plain
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(400, "'inputs' must be a non-empty array of input tensors")
    columns: dict[str, list[object]] = {}
    offset = 0
    n_rows: int | None = None
    for i, tensor in enumerate(inputs):
        tensor = _object(tensor, f"inputs[{i}]")
        name = tensor.get("name")
        if not isinstance(name, str) or name not in _INPUT_POSITION:
            shown = str(name)[:40]
            raise V2Error(
                400,
                f"inputs[{i}]: unknown input {shown!r}; the inputs are the 19 Telco columns "
                "(see GET /v2/models/churn)",
            )
        if name in columns:
            raise V2Error(400, f"input {name!r} is given twice")
        count = _element_count(tensor, name)
        if n_rows is None:
            n_rows = int(tensor["shape"][0])
        elif int(tensor["shape"][0]) != n_rows:
            raise V2Error(
                400, f"input {name!r} has {tensor['shape'][0]} rows; the other inputs {n_rows}"
            )
        if n_rows > max_rows:
            raise V2Error(400, f"{n_rows} rows; at most {max_rows} are accepted per request")
        size = _object(tensor.get("parameters", {}), f"input {name!r} parameters").get(
            "binary_data_size"
        )
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise V2Error(400, f"input {name!r}: binary_data_size must be a byte count")
            if offset + size > len(binary):
                raise V2Error(400, f"input {name!r}: the body holds too few bytes of binary data")
            values = _from_binary(name, tensor["datatype"], binary[offset : offset + size], count)
            offset += size
        else:
            values = _from_json(name, tensor, count)
        columns[name] = values
    missing = [c for c in FEATURE_COLUMNS if c not in columns]
    if missing:
        raise V2Error(400, f"missing inputs: {', '.join(missing)}")
    if offset != len(binary):
        raise V2Error(400, "the body holds more binary data than the inputs' binary_data_size")
    return [dict(zip(columns, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]


def _element_count(tensor: dict[str, Any], name: str) -> int:
    """Check the tensor's shape (``[n]`` or ``[n, 1]``) and datatype; return ``n``."""
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise V2Error(400, f"input {name!r}: shape must be [n] (one value per row); got {shape}")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise V2Error(400, f"input {name!r}: datatype must be a string such as {INPUT_TYPES[name]}")
    expected = INPUT_TYPES[name]
    if expected == "BYTES" and datatype != "BYTES":
        raise V2Error(400, f"input {name!r}: datatype must be BYTES; got {str(datatype)[:20]!r}")
    if expected != "BYTES" and datatype not in NUMERIC_DTYPES:
        raise V2Error(400, f"input {name!r}: datatype must be {expected} (or another numeric type)")
    return int(shape[0])


def _from_json(name: str, tensor: dict[str, Any], count: int) -> list[object]:
    data = tensor.get("data")
    if not isinstance(data, list):
        raise V2Error(400, f"input {name!r}: 'data' must be an array")
    flat: list[object] = []
    for item in data:
        if isinstance(item, list):  # the protocol allows row-major nested arrays
            flat += item
        else:
            flat.append(item)
    if len(flat) != count:
        raise V2Error(400, f"input {name!r}: shape says {count} values, 'data' holds {len(flat)}")
    is_bytes = tensor["datatype"] == "BYTES"
    for row, value in enumerate(flat):
        if is_bytes and not isinstance(value, str):
            raise V2Error(400, f"input {name!r} row {row}: BYTES data must be strings")
        if not is_bytes and isinstance(value, str | list | dict | bool):
            raise V2Error(400, f"input {name!r} row {row}: numeric data must be numbers")
    if name == "TotalCharges":  # null (JSON) or NaN: unknown
        flat = [None if isinstance(v, float) and math.isnan(v) else v for v in flat]
    return flat


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> list[object]:
    if datatype == "BYTES":
        values: list[object] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise V2Error(400, f"input {name!r}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, position)
            position += 4
            element = raw[position : position + length]
            if len(element) != length:
                raise V2Error(400, f"input {name!r}: truncated BYTES element")
            position += length
            try:
                values.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise V2Error(400, f"input {name!r} row {len(values)}: not UTF-8 text") from None
    else:
        dtype = np.dtype(NUMERIC_DTYPES[datatype])
        if len(raw) != count * dtype.itemsize:
            raise V2Error(
                400,
                f"input {name!r}: {len(raw)} bytes of binary data for {count} {datatype} values",
            )
        array = np.frombuffer(raw, dtype=dtype)
        values = array.astype(np.float64 if dtype.kind == "f" else np.int64).tolist()
        if name == "TotalCharges":
            values = [None if v != v else v for v in values]
    if len(values) != count:
        raise V2Error(
            400, f"input {name!r}: shape says {count} values, the data holds {len(values)}"
        )
    return values
