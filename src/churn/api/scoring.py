"""Scoring validated records: one path for ``/predict``, ``/v2/.../infer`` and ``/invocations``.

Every protocol's handler is wrapped by `observed` (it gets the app state, the request and its
`Exchange`; an error it raises is answered and observed there), reads the served set once
(`Router.snapshot`), picks the version the request names or the one the traffic rules give
(`Router.requested`, `Router.route`; `served_and_requested` reads the set and ``?model=``),
scores with `score` (a `Prediction`: probabilities and verdicts at the threshold; the records
counted for drift) and ends with ONE call, `answered`: version and alias headers, served
counts and shadow (`Router.answered`), then metrics, serving statistics and the log line
(`Observer.answered`). Only the shape of the request and of the answer differs between
protocols. The same views also answer in front of Flask (`churn.api.fastpath`), called on a
request object over the WSGI environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flask import Response, current_app

from churn.api.errors import ApiError
from churn.api.state import ApiState, request_objects

if TYPE_CHECKING:
    from flask import Request

    from churn.api.observe import Exchange
    from churn.registry import ServingSet
    from churn.serving.prediction import Prediction

__all__ = ["answered", "observed", "score", "served_and_requested"]

#: A view function (its arguments are the state, the request, the exchange, the URL's values).
View = Callable[..., Response]


def observed(view: View) -> View:
    """Wrap a prediction view: call it as ``view(state, request, exchange, **url_values)``.

    An exception it raises is answered here, by the app's error handlers (the protocol's
    error shape included), and the refusal observed with the version and batch size the view
    had put on the exchange.
    """

    @functools.wraps(view)
    def run(**url_values: Any) -> Response:
        state, req, exchange = request_objects()
        try:
            return view(state, req, exchange, **url_values)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handlers, as Flask would
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            response = app.make_response(app.handle_user_exception(exc))
            state.observer.refused(exchange, response.status_code)
            return response  # type: ignore[no-any-return]

    return run


def served_and_requested(
    state: ApiState, req: Request, exchange: Exchange
) -> tuple[ServingSet, str | None]:
    """Return the served set, read once (`Router.snapshot`), and the version ``?model=`` names.

    The version is None when the request names none (the traffic rules then choose); the
    exchange is labelled with it at once (`Router.requested`).

    Raises:
        ApiError: 404 when the named version is not served.

    """
    serving = state.router.snapshot()
    return serving, state.router.requested(serving, req, exchange)


def score(
    state: ApiState,
    serving: ServingSet,
    version: str,
    alias: str | None,
    records: Sequence[Mapping[str, object]],
) -> Prediction:
    """Return the `Prediction` of validated ``records`` by ``version`` (answering as ``alias``).

    The records are counted into the drift bins (never stored or logged).

    Raises:
        ApiError: 503 when no models are loaded (``/ready`` says why).

    """
    if serving.models is None:
        raise ApiError(
            503,
            "models_unavailable",
            "the models are not loaded; see /ready for the reason",
        )
    result = serving.models.predict(version, records, state.settings.threshold, alias)
    if state.drift is not None:  # counts into bins only; no record is stored
        state.drift.observe(version, records, result.probabilities.tolist())
    return result


def answered(
    state: ApiState,
    exchange: Exchange,
    serving: ServingSet,
    result: Prediction,
    response: Response,
    *,
    routed: bool,
) -> Response:
    """Label, count, shadow and observe an answer: the one call a handler ends with.

    ``routed`` is True when the traffic rules chose the version (no version named).
    """
    state.router.answered(serving, result, response, routed=routed)
    state.observer.answered(exchange, result)
    return response
