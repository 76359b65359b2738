"""Prometheus metrics of one app, in its own registry (served by `churn.api.prometheus`).

Each app gets a private `CollectorRegistry`, so several apps in one process (tests) never
collide. Every series carries a ``replica`` label (``CHURN_REPLICA``, default the host name),
added when scraped, so that series of replicas behind one address stay apart. Series (all
prefixed ``churn_api_``):

* ``requests_total{endpoint, method, status}``: answered requests; ``endpoint`` is the
  route pattern (``<unmatched>`` for unknown paths, to keep label values bounded);
* ``request_latency_seconds{endpoint}``: latency histogram;
* ``predictions_total{model, churn}``: predictions by model version and predicted class;
* ``batch_size{model}``: histogram of records per prediction request;
* ``model_info{version, algorithm, sha256}``: 1 for each served model (sha256 of its file);
* ``models_loaded``: 1 when the models passed verification and are served, else 0;
* ``mlflow_up``: 1 while serving statistics reach MLflow, 0 when not (absent when disabled);
* ``waitress_queue_depth``, ``waitress_busy_threads``: requests waiting for a worker thread and
  threads running a request, at scrape time (present when served by `churn.api.serve`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

__all__ = ["ApiMetrics"]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Waitress's gauges, in the order `ApiMetrics.watch_waitress` takes their readers.
WAITRESS_GAUGES = (
    (
        "churn_api_waitress_queue_depth",
        "Requests read and waiting for a free Waitress worker thread.",
    ),
    ("churn_api_waitress_busy_threads", "Waitress worker threads running a request."),
)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class _ReplicaLabelled:
    """A view of a registry whose samples all carry ``replica="<name>"`` (built per scrape)."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self._registry = registry
        self._replica = replica

    def collect(self) -> Iterator[Metric]:
        """Yield the registry's metric families with the replica label added to each sample."""
        for family in self._registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, "replica": self._replica})
                for sample in family.samples
            ]
            yield labelled


class ApiMetrics:
    """The app's metric objects and their registry."""

    def __init__(self, replica: str = "api") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: What `/metrics` exposes: the registry, every sample labelled with the replica.
        self.exposed = _ReplicaLabelled(self.registry, replica)
        self.requests = Counter(
            "churn_api_requests",
            "Answered HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "churn_api_request_latency_seconds",
            "Request latency from the first byte seen by the app to the response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "churn_api_predictions",
            "Predictions by model version and predicted class.",
            ["model", "churn"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "churn_api_batch_size",
            "Customer records per prediction request.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "churn_api_model_info",
            "Served model versions: algorithm and sha256 of the model file (value 1).",
            ["version", "algorithm", "sha256"],
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "churn_api_models_loaded",
            "1 when the model artifacts passed verification and are served, else 0.",
            registry=self.registry,
        )
        # The labelled children, looked up once: `labels()` takes a lock and builds a key on
        # every call, a measurable share of a request that costs well under a millisecond.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[str, tuple[Any, Any, Any]] = {}
        self._waitress_readers: tuple[Callable[[], int], Callable[[], int]] | None = None

    def watch_mlflow(self, is_up: Callable[[], bool]) -> None:
        """Export ``churn_api_mlflow_up``, read from ``is_up`` at each scrape."""
        gauge = Gauge(
            "churn_api_mlflow_up",
            "1 while serving statistics reach MLflow, else 0.",
            registry=self.registry,
        )
        gauge.set_function(lambda: 1.0 if is_up() else 0.0)

    def watch_waitress(self, queue_depth: Callable[[], int], busy: Callable[[], int]) -> None:
        """Export Waitress's task queue depth and busy worker threads, read at each scrape.

        Calling it again (the app served anew) points the gauges at the new server.
        """
        if self._waitress_readers is None:  # first call: register the gauges
            for index, (name, text) in enumerate(WAITRESS_GAUGES):
                Gauge(name, text, registry=self.registry).set_function(
                    lambda i=index: float(self._waitress_readers[i]())  # type: ignore[index]
                )
        self._waitress_readers = (queue_depth, busy)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:  # first time for these labels (a bounded set: routes, methods)
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_predictions(self, model: str, churn_count: int, total: int) -> None:
        """Count the predicted classes of one prediction request."""
        children = self._prediction_children.get(model)
        if children is None:  # one entry per served version
            children = (
                self.predictions.labels(model, "true"),
                self.predictions.labels(model, "false"),
                self.batch_size.labels(model),
            )
            self._prediction_children[model] = children
        if churn_count:
            children[0].inc(churn_count)
        if total - churn_count:
            children[1].inc(total - churn_count)
        children[2].observe(total)
