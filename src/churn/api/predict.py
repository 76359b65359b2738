"""``POST /predict`` and ``POST /predict/batch``: request -> validate -> model -> response."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Request, Response, jsonify

from churn.api.errors import ApiError, field_error
from churn.api.explanations import explain, explanation_items, wants_explanation
from churn.api.observe import Exchange
from churn.api.scoring import answered, observed, score, served_and_requested
from churn.api.state import ApiState
from churn.api.validation import read_json_body, summarize
from churn.schema import ID_COLUMN

if TYPE_CHECKING:
    from churn.registry import ServingSet
    from churn.serving.prediction import Prediction

__all__ = ["bp", "explanations", "single_answer"]

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@observed
def predict_one(state: ApiState, req: Request, exchange: Exchange) -> Response:
    """Score one customer object."""
    serving, requested, explaining, body = _read_request(state, req, exchange)
    exchange.batch_size = 1
    record, customer_id, problems = state.validator.validate(body)
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
    return answered(state, exchange, serving, result, jsonify(answer), routed=requested is None)


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
    serving, requested, explaining, body = _read_request(state, req, exchange)
    instances = _instances(body, state.settings.max_batch)
    exchange.batch_size = len(instances)
    records, ids, problems = state.validator.validate_many(instances)
    if problems:
        message, details = summarize(problems, f"the batch of {len(instances)} instances")
        raise ApiError(422, "validation_error", message, details)
    version, alias = state.router.route(serving, requested, None, single=False)
    why = explanations(serving, version, records) if explaining else None
    result = score(state, serving, version, alias, records)
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
    answer = {
        "model": version,
        "alias": alias,
        "predictions": predictions,
        "request_id": exchange.request_id,
    }
    return answered(state, exchange, serving, result, jsonify(answer), routed=requested is None)


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
) -> tuple[ServingSet, str | None, bool, Any]:
    """Return what both handlers start from, checked in this order (the first error answers).

    The served set and the version ``?model=`` names (`served_and_requested`; 404 when not
    served), whether ``?explain=`` asks for explanations, and the parsed JSON body.
    """
    serving, requested = served_and_requested(state, req, exchange)
    explaining = wants_explanation(req.args)
    return serving, requested, explaining, read_json_body(req, state.settings.max_body_bytes)


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
