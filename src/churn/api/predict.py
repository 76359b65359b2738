"""``POST /predict`` and ``POST /predict/batch``: request -> validate -> model -> response."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify
from flask.ctx import _AppCtxGlobals

from churn.api.errors import ApiError
from churn.api.explanations import explain, explanation_items, wants_explanation
from churn.api.routing import Router
from churn.api.state import ApiState, request_objects
from churn.api.validation import read_json_body, summarize
from churn.registry import ServingSet
from churn.schema import ID_COLUMN

__all__ = ["bp"]

bp = Blueprint("predict", __name__)


def _router(state: ApiState) -> Router:
    """Return the app's router (`create_app` installs it)."""
    assert state.router is not None  # noqa: S101 - installed by create_app
    return state.router


def _score(
    state: ApiState,
    serving: ServingSet,
    ctx: _AppCtxGlobals,
    version: str,
    records: list[dict[str, object]],
) -> np.ndarray:
    """Return the churn probabilities of validated records, or raise 503 without models."""
    if serving.models is None:
        raise ApiError(
            503,
            "models_unavailable",
            "the models are not loaded; see /ready for the reason",
        )
    probabilities = serving.models.predict_proba(version, records)
    ctx.probabilities = probabilities
    if state.drift is not None:  # counts into bins only; the records are not kept
        state.drift.observe(version, records, probabilities.tolist())
    return probabilities


def _served_by(ctx: _AppCtxGlobals, version: str, alias: str | None) -> None:
    ctx.model = version
    ctx.model_label = f"{version}.{alias}" if alias else version


@bp.post("/predict")
def predict_one() -> Response:
    """Score one customer object."""
    state, req, ctx = request_objects()
    router = _router(state)
    serving = router.snapshot()
    requested = router.requested(serving, req, ctx)
    explaining = wants_explanation(req.args)
    body = read_json_body(req, state.settings.max_body_bytes)
    ctx.batch_size = 1
    record, customer_id, problems = state.validator.validate(body)
    if problems:
        message, details = summarize(problems, "the customer")
        raise ApiError(422, "validation_error", message, details)
    version, alias = router.route(serving, requested, customer_id, single=True)
    _served_by(ctx, version, alias)
    probabilities = _score(state, serving, ctx, version, [record])  # type: ignore[list-item]
    probability = float(probabilities[0])
    answer: dict[str, Any] = {
        "model": version,
        "alias": alias,
        "churn": probability >= state.settings.threshold,
        "churn_probability": probability,
        "request_id": ctx.request_id,
    }
    if customer_id is not None:
        answer[ID_COLUMN] = customer_id
    if explaining:
        assert serving.models is not None  # noqa: S101 - _score raised 503 otherwise
        answer["explanation"] = explanation_items(explain(serving.models, version, [record]))[0]
    return router.answered(
        serving,
        version,
        alias,
        [record],
        probabilities,
        jsonify(answer),
        routed=requested is None,
    )


@bp.post("/predict/batch")
def predict_batch() -> Response:
    """Score ``{"instances": [customer, ...]}``, answering in input order."""
    state, req, ctx = request_objects()
    router = _router(state)
    serving = router.snapshot()
    requested = router.requested(serving, req, ctx)
    explaining = wants_explanation(req.args)
    body = read_json_body(req, state.settings.max_body_bytes)
    instances = _instances(body, state.settings.max_batch)
    ctx.batch_size = len(instances)
    records, ids, problems = state.validator.validate_many(instances)
    if problems:
        message, details = summarize(problems, f"the batch of {len(instances)} instances")
        raise ApiError(422, "validation_error", message, details)
    version, alias = router.route(serving, requested, None, single=False)
    _served_by(ctx, version, alias)
    probabilities = _score(state, serving, ctx, version, records)
    threshold = state.settings.threshold
    predictions: list[dict[str, Any]] = []
    for probability, customer_id in zip(probabilities.tolist(), ids, strict=True):
        item: dict[str, Any] = {"churn": probability >= threshold, "churn_probability": probability}
        if customer_id is not None:
            item[ID_COLUMN] = customer_id
        predictions.append(item)
    if explaining:
        assert serving.models is not None  # noqa: S101 - _score raised 503 otherwise
        for item, why in zip(
            predictions, explanation_items(explain(serving.models, version, records)), strict=True
        ):
            item["explanation"] = why
    answer = {
        "model": version,
        "alias": alias,
        "predictions": predictions,
        "request_id": ctx.request_id,
    }
    return router.answered(
        serving,
        version,
        alias,
        records,
        probabilities,
        jsonify(answer),
        routed=requested is None,
    )


def _instances(body: object, max_batch: int) -> list[object]:
    """Return the ``instances`` list of a batch body, or raise 422."""
    if not isinstance(body, dict):
        raise ApiError(
            422,
            "validation_error",
            'the body must be a JSON object {"instances": [customer, ...]}',
            [{"field": "body", "problem": "must be a JSON object"}],
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
        raise ApiError(
            422,
            "batch_too_large",
            f"{len(instances)} instances; at most {max_batch} are accepted per request",
            [{"field": "instances", "problem": f"must hold at most {max_batch} customers"}],
        )
    return instances
