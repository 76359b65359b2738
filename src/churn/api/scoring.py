"""Scoring validated records: one path for ``/predict``, ``/v2/.../infer`` and ``/invocations``.

Every protocol reads the served set once (`Router.snapshot`), picks the version the request
names or the one the traffic rules give (`Router.named`, `Router.route`), scores with `score`
(probabilities kept for the request's log line and metrics, records counted for drift) and
labels its answer with `Router.answered` (version and alias headers, served counts, shadow).
Only the shape of the request and of the answer differs between protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from flask.ctx import _AppCtxGlobals

from churn.api.errors import ApiError

if TYPE_CHECKING:
    from churn.api.routing import Router
    from churn.api.state import ApiState
    from churn.registry import ServingSet

__all__ = ["router_of", "score", "served_by"]


def router_of(state: ApiState) -> Router:
    """Return the app's router (`create_app` installs it before serving)."""
    assert state.router is not None  # noqa: S101 - installed by create_app
    return state.router


def served_by(ctx: _AppCtxGlobals, version: str, alias: str | None) -> None:
    """Record on ``ctx`` the version and alias answering (the log line's and metrics' labels)."""
    ctx.model = version
    ctx.model_label = f"{version}.{alias}" if alias else version


def score(
    state: ApiState,
    serving: ServingSet,
    ctx: _AppCtxGlobals,
    version: str,
    records: Sequence[Mapping[str, object]],
) -> np.ndarray:
    """Return the churn probabilities of validated ``records`` scored by ``version``.

    The probabilities are kept on ``ctx`` for the request's log line and metrics, and the
    records are counted into the drift bins (never kept).

    Raises:
        ApiError: 503 when no models are loaded (``/ready`` says why).

    """
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
