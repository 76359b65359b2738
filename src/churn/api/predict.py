"""``POST /predict`` and ``POST /predict/batch``: request -> validate -> model -> response."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from flask import Blueprint, Request, Response, jsonify

from churn.api.errors import ApiError, field_error
from churn.api.explanations import explain, explanation_items, wants_explanation
from churn.api.observe import Exchange
from churn.api.scoring import answered, observed, score, served_and_requested
from churn.api.state import ApiState
from churn.api.validation import parse_json_body, read_body, summarize
from churn.schema import ID_COLUMN

if TYPE_CHECKING:
    from collections.abc import Sequence

    from churn.registry import ServingSet
    from churn.serving.prediction import Prediction

__all__ = ["batch_answer", "bp", "explanations", "scored_one", "single_answer"]

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@observed
def predict_one(state: ApiState, req: Request, exchange: Exchange) -> Response:
    """Score one customer object."""
    serving, requested, explaining, data = _read_request(state, req, exchange)
    result, answer = scored_one(state, exchange, serving, requested, explaining, data)
    return answered(state, exchange, serving, result, jsonify(answer), routed=requested is None)


def scored_one(
    state: ApiState,
    exchange: Exchange,
    serving: ServingSet,
    requested: str | None,
    explaining: bool,
    data: bytes,
) -> tuple[Prediction, dict[str, Any]]:
    """Check and score one customer's JSON body; return the prediction and the answer.

    Raises:
        ApiError: 400 for a body that is not JSON, 422 for an invalid customer or a version
            without explanations, 503 when no models are loaded.

    """
    exchange.batch_size = 1
    record, customer_id, problems = state.validator.validate(parse_json_body(data))
    if problems:
        message, details = summarize(problems, "the customer")
        raise ApiError(422, "validation_error", message, details)
    version, alias = state.router.route(serving, requested, customer_id, single=True)
    # Explained first: a refusal (422, no explanation for this model) counts no drift.
    why = explanations(serving, version, [record]) if explaining else None  # type: ignore[list-item]
    result = score(state, serving, version, alias, [record])  # type: ignore[list-item]
    answer = single_answer(result, exchange.request_id, customer_id)
    if why is not None:
        answer["explanation"] = why[0]
    return result, answer


def single_answer(result: Prediction, request_id: str, customer_id: str | None) -> dict[str, Any]:
    """Return the ``/predict`` answer of one scored customer (before any explanation)."""
    answer: dict[str, Any] = {
        "model": result.version,
        "alias": result.alias,
        "churn": bool(result.churn[0]),
        "churn_probability": float(result.probabilities[0]),
        "request_id": request_id,
    }
    if customer_id is not None:
        answer[ID_COLUMN] = customer_id
    return answer


@bp.post("/predict/batch")
@observed
def predict_batch(state: ApiState, req: Request, exchange: Exchange) -> Response:
    """Score ``{"instances": [customer, ...]}``, answering in input order."""
    serving, requested, explaining, data = _read_request(state, req, exchange)
    records, ids = _checked_batch(state, exchange, data)
    version, alias = state.router.route(serving, requested, None, single=False)
    why = explanations(serving, version, records) if explaining else None
    result = score(state, serving, version, alias, records)
    answer = batch_answer(result, ids, exchange.request_id, why)
    # Written as the app's JSON provider writes it, without Flask's context (the fast path).
    response = Response(orjson.dumps(answer), mimetype="application/json")
    return answered(state, exchange, serving, result, response, routed=requested is None)


def batch_answer(
    result: Prediction,
    ids: Sequence[str | None],
    request_id: str,
    why: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return the ``/predict/batch`` answer: one prediction per record, in order."""
    predictions: list[dict[str, Any]] = [
        {"churn": churn, "churn_probability": probability}
        if customer_id is None
        else {"churn": churn, "churn_probability": probability, ID_COLUMN: customer_id}
        for probability, churn, customer_id in zip(
            result.probabilities.tolist(), result.churn.tolist(), ids, strict=True
        )
    ]
    if why is not None:
        for item, explanation in zip(predictions, why, strict=True):
            item["explanation"] = explanation
    return {
        "model": result.version,
        "alias": result.alias,
        "predictions": predictions,
        "request_id": request_id,
    }


def explanations(
    serving: ServingSet, version: str, records: list[dict[str, object]]
) -> list[dict[str, Any]] | None:
    """Return each record's explanation; None without models (`score` then answers 503).

    Raises:
        ApiError: 422 when the version has no explanation.

    """
    if serving.models is None:
        return None
    return explanation_items(explain(serving.models, version, records))


def _read_request(
    state: ApiState, req: Request, exchange: Exchange
) -> tuple[ServingSet, str | None, bool, bytes]:
    """Return what both handlers start from, checked in this order (the first error answers).

    The served set and the version ``?model=`` names (`served_and_requested`; 404 when not
    served), whether ``?explain=`` asks for explanations, and the JSON body (`read_body`;
    413, 415, 400 when empty), not parsed yet.
    """
    serving, requested = served_and_requested(state, req, exchange)
    explaining = wants_explanation(req.args)
    return serving, requested, explaining, read_body(req, state.settings.max_body_bytes)


def _checked_batch(
    state: ApiState, exchange: Exchange, data: bytes
) -> tuple[list[dict[str, object]], list[str | None]]:
    """Return the records and customerIDs of a batch body, or raise the error naming the field.

    A well-typed batch is decoded and checked in one pass (`BatchDecoder`); any other body
    is parsed and checked the general way, which accepts the other forms the contract allows
    and words every refusal: 400 for malformed JSON, 422 for the body's shape or a record.
    """
    decoded = state.batch_decoder.decode(data)
    if decoded is not None:
        records, ids = decoded
        exchange.batch_size = len(records)
        return records, ids  # type: ignore[return-value]
    instances = _instances(parse_json_body(data), state.settings.max_batch)
    exchange.batch_size = len(instances)
    checked, ids, problems = state.validator.validate_many(instances)
    if problems:
        message, details = summarize(problems, f"the batch of {len(instances)} instances")
        raise ApiError(422, "validation_error", message, details)
    return checked, ids


def _instances(body: object, max_batch: int) -> list[object]:
    """Return the ``instances`` list of a batch body, or raise 422."""
    if not isinstance(body, dict):
        raise field_error(
            422,
            "validation_error",
            'the body must be a JSON object {"instances": [customer, ...]}',
            "body",
            "must be a JSON object",
        )
    problems = [
        {"field": str(key)[:100], "problem": "unknown field; the body holds only 'instances'"}
        for key in body
        if key != "instances"
    ]
    instances = body.get("instances")
    if "instances" not in body:
        problems.insert(0, {"field": "instances", "problem": "required field is missing"})
    elif not isinstance(instances, list):
        problems.insert(0, {"field": "instances", "problem": "must be an array of customers"})
    elif not instances:
        problems.insert(0, {"field": "instances", "problem": "must hold at least 1 customer"})
    if problems:
        message, details = summarize(problems, "the batch body")
        raise ApiError(422, "validation_error", message, details)
    assert isinstance(instances, list)  # noqa: S101 - narrowed above
    if len(instances) > max_batch:  # 422, not 413: the body is well-formed, the batch too long
        raise field_error(
            422,
            "batch_too_large",
            f"{len(instances)} instances; at most {max_batch} are accepted per request",
            "instances",
            f"must hold at most {max_batch} customers",
        )
    return instances
