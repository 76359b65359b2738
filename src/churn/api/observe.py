"""Observing each request once: Prometheus metrics, MLflow serving statistics, the log line.

The before-request hook opens an `Exchange` per request (request id, start time). Then exactly
one of these observes the request, counts it, and writes its log line:

* `Observer.answered`: a prediction answered, called by the handler with its `Prediction`
  (through `churn.api.scoring.answered`): request and prediction metrics, the serving
  statistics of ``version.alias``, the line with the model version and batch size;
* `Observer.refused`: a prediction request answered with an error (`churn.api.scoring.observed`),
  labelled with the version it asked for and the batch size when known;
* `Observer.finished`: every other request, from the after-request hook, which reads nothing
  from the exchange but its id, start time and whether it was observed already.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from flask import Request

    from churn.api.metrics import ApiMetrics
    from churn.api.stats import MlflowStats
    from churn.serving.prediction import Prediction

__all__ = ["Exchange", "Observer"]

log = logging.getLogger("churn.api")

#: The endpoints whose refusals (4xx) the serving statistics count.
_PREDICT_ENDPOINTS = frozenset({"/predict", "/predict/batch"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Exchange:
    """One request while it is served: opened before its handler runs, observed once.

    The before-request hook opens it from Flask's request (`Exchange.of`); the prediction
    fast path (`churn.api.fastpath`) from the WSGI environment.
    """

    __slots__ = (
        "batch_size",
        "endpoint",
        "method",
        "model",
        "observed",
        "path",
        "request_id",
        "started",
    )

    def __init__(
        self, method: str, path: str, endpoint: str, request_id: str, started: float
    ) -> None:
        #: The method (`Observer` labels an unusual one ``OTHER``) and the path.
        self.method = method
        self.path = path
        #: The route pattern that matched (``<unmatched>`` when none did): the metrics label.
        self.endpoint = endpoint
        self.request_id = request_id
        #: `time.perf_counter` when the app first saw the request.
        self.started = started
        #: For a refused prediction request: the version it asked for, and its record count.
        self.model: str | None = None
        self.batch_size: int | None = None
        #: True once `Observer` counted and logged it (the after-request hook then does not).
        self.observed = False

    @classmethod
    def of(cls, request: Request, request_id: str, started: float) -> Exchange:
        """Open the exchange of a request Flask has matched to a route (or to none)."""
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "<unmatched>"
        return cls(request.method, request.path, endpoint, request_id, started)


class Observer:
    """Feeds the metrics, the serving statistics and the request log from one call per request."""

    def __init__(self, metrics: ApiMetrics, stats: MlflowStats | None) -> None:
        self._metrics = metrics
        self._stats = stats

    def answered(self, exchange: Exchange, result: Prediction) -> None:
        """Observe a prediction request answered 200 with ``result``."""
        exchange.observed = True
        seconds = time.perf_counter() - exchange.started
        self._count(exchange, 200, seconds)
        total = len(result.probabilities)
        churned = int(np.count_nonzero(result.churn))
        self._metrics.observe_predictions(result.version, churned, total)
        if self._stats is not None:
            self._stats.record_prediction(result.label, result.probabilities, churned, seconds)
        self._log(exchange, 200, seconds, result.version, total)

    def refused(self, exchange: Exchange, status: int) -> None:
        """Observe a prediction request answered with the error ``status``."""
        exchange.observed = True
        self._finish(exchange, status, exchange.model, exchange.batch_size)

    def finished(self, exchange: Exchange, status: int) -> None:
        """Observe any other request (no model served), unless it was observed already."""
        if not exchange.observed:
            exchange.observed = True
            self._finish(exchange, status, None, None)

    def _finish(
        self, exchange: Exchange, status: int, model: str | None, batch_size: int | None
    ) -> None:
        seconds = time.perf_counter() - exchange.started
        endpoint = self._count(exchange, status, seconds)
        if self._stats is not None and 400 <= status < 500 and endpoint in _PREDICT_ENDPOINTS:
            self._stats.record_rejection()
        self._log(exchange, status, seconds, model, batch_size)

    def _count(self, exchange: Exchange, status: int, seconds: float) -> str:
        """Count the request and its latency; return its endpoint label (the route pattern)."""
        endpoint = exchange.endpoint
        method = exchange.method
        self._metrics.observe_request(
            endpoint, method if method in _METHODS else "OTHER", status, seconds
        )
        return endpoint

    @staticmethod
    def _log(
        exchange: Exchange,
        status: int,
        seconds: float,
        model: str | None,
        batch_size: int | None,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": exchange.request_id,
            "method": exchange.method[:16],
            "path": exchange.path[:200],
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "model": model[:40] if isinstance(model, str) else None,
            "batch_size": batch_size,
        }
        log.log(logging.ERROR if status >= 500 else logging.INFO, "request", extra=fields)
