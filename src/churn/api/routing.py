"""Which model version answers a prediction, and how the served set changes while serving.

* The served set (`churn.registry.ServingSet`) is read once per request (`Router.snapshot`)
  and replaced whole by `Router.publish`, so a request never mixes two sets.
* ``?model=<version>`` picks a served version; otherwise single-customer traffic goes to the
  ``champion`` alias, except a share ``CHURN_CANARY_WEIGHT`` of customers, chosen by a stable
  hash of their ``customerID`` (sticky), that goes to the ``challenger``. A request without a
  customerID is drawn at random with the same weight. A batch goes to the champion.
* With ``CHURN_SHADOW=true`` the challenger scores the champion's answers after they were
  given (`churn.api.shadow`); disagreements on the churn decision are counted.
* Every answer names the version and alias that served it (body ``model``/``alias``,
  headers `VERSION_HEADER`/`ALIAS_HEADER`); metrics are labelled by both.
* ``POST /registry/refresh`` (`churn.api.models`) makes the registry watcher look at the
  aliases at once instead of at its next poll.
* The router also keeps what describes the served set: the ``/models`` document, the reason
  the models did not load, and the ``models_loaded``/``model_info`` metrics.
"""

from __future__ import annotations

import hashlib
import logging
import random
from typing import TYPE_CHECKING, Any

from flask import Request, Response
from prometheus_client import Counter, Gauge

from churn.api.errors import field_error
from churn.api.shadow import ShadowScorer, ShadowWork
from churn.registry import RegistryClient, RegistryWatcher, ServingSet
from churn.registry_names import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from churn.api.metrics import ApiMetrics
    from churn.api.observe import Exchange
    from churn.config import ApiSettings
    from churn.serving.prediction import Prediction, ServingModels

__all__ = [
    "ALIAS_HEADER",
    "VERSION_HEADER",
    "Router",
    "bucket",
    "describe_model",
    "describe_models",
]

log = logging.getLogger("churn.api")

VERSION_HEADER = "X-Model-Version"
ALIAS_HEADER = "X-Model-Alias"
#: Keys of the metadata's ``mlflow`` block shown publicly (the tracking URI is left out).
_MLFLOW_KEYS = ("experiment", "run_id", "registered_model", "registered_version")


def bucket(customer_id: str) -> float:
    """Return a stable number in [0, 1) for a customer id (same id, same number, any process)."""
    digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Router:
    """The served set, what describes it, the traffic rules, shadow scoring and their metrics."""

    def __init__(
        self,
        settings: ApiSettings,
        metrics: ApiMetrics,
        initial: ServingSet,
        load_error: str | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.weight = settings.canary_weight
        self.threshold = settings.threshold
        self.current = initial
        #: Why the models did not load (None once a set with models is served).
        self.load_error = load_error if initial.models is None else None
        #: The ``/models`` answer of the current set (computed at each publish, not per request).
        self.models_document = describe_models(initial.models, settings, self.load_error)
        self.watcher: RegistryWatcher | None = None
        registry = metrics.registry
        self.served = Counter(
            "churn_api_served",
            "Prediction requests answered, by model version and alias.",
            ["version", "alias"],
            registry=registry,
        )
        self.alias_gauge = Gauge(
            "churn_api_model_alias",
            "1 for each alias and the version it serves.",
            ["alias", "version"],
            registry=registry,
        )
        self.swaps = Counter(
            "churn_api_model_swaps", "Served sets published while serving.", registry=registry
        )
        #: Shadow scoring by the challenger (``CHURN_SHADOW``); None when off.
        self.shadow = ShadowScorer(registry, settings.threshold) if settings.shadow else None
        self._label_models(initial.models)
        self._label_aliases(initial)

    # -- the served set ----------------------------------------------------------------------

    def snapshot(self) -> ServingSet:
        """Return the set to use for the whole of one request."""
        return self.current

    def publish(self, serving: ServingSet) -> None:
        """Serve ``serving`` from now on (one assignment) and update what describes it."""
        self.current = serving
        if serving.models is not None:
            self.load_error = None
        self.models_document = describe_models(serving.models, self._settings, self.load_error)
        self._label_models(serving.models)
        self._label_aliases(serving)
        self.swaps.inc()

    def follow_registry(self) -> None:
        """In registry mode, load from the registry now and follow its aliases from then on.

        The first look at the registry happens here (bounded by the request timeout); the
        baked models, when they loaded, serve until it succeeds.
        """
        settings = self._settings
        if settings.model_source != "registry":
            return
        assert settings.mlflow_tracking_uri is not None  # noqa: S101 - checked by the settings
        client = RegistryClient(
            settings.mlflow_tracking_uri,
            settings.registry_model,
            username=settings.mlflow_username,
            password=settings.mlflow_password,
        )
        self.watcher = RegistryWatcher(client, self.publish, interval=settings.registry_poll)
        self.watcher.poll_once()
        self.watcher.start()

    def _label_models(self, models: ServingModels | None) -> None:
        metrics = self._metrics
        metrics.models_loaded.set(1 if models is not None else 0)
        if models is not None:
            metrics.model_info.clear()
            for version in models.versions:
                metadata = models.info(version).metadata
                metrics.model_info.labels(
                    version,
                    str(metadata.get("algorithm", "unknown")),
                    str(metadata["artifacts"]["model"]["sha256"]),
                ).set(1)

    def _label_aliases(self, serving: ServingSet) -> None:
        self.alias_gauge.clear()
        for alias, version in serving.aliases.items():
            self.alias_gauge.labels(alias, version).set(1)

    def describe(self) -> dict[str, Any]:
        """Return what ``/models`` adds: source, aliases, each version's registry entry."""
        serving = self.current
        described: dict[str, Any] = {
            "source": serving.source,
            "aliases": dict(serving.aliases),
            "canary_weight": self.weight,
            "shadow": self.shadow is not None,
        }
        if CHAMPION in serving.aliases:
            described["default"] = serving.aliases[CHAMPION]
        if serving.registry:
            described["registry_versions"] = {k: dict(v) for k, v in serving.registry.items()}
        if self.watcher is not None:
            described["registry"] = self.watcher.status()
        return described

    # -- choosing ----------------------------------------------------------------------------

    def available(self, serving: ServingSet) -> tuple[str, ...]:
        """Return the versions ``serving`` can answer with (the configured ones before loading)."""
        if serving.models is not None:
            return tuple(serving.models.versions)
        return tuple(self._settings.model_versions)

    def requested(self, serving: ServingSet, req: Request, exchange: Exchange) -> str | None:
        """Return the version ``?model=`` names (None when absent), or raise 404."""
        return self.named(serving, req.args.get("model"), exchange)

    def named(self, serving: ServingSet, version: str | None, exchange: Exchange) -> str | None:
        """Return ``version`` when ``serving`` serves it (None stays None), or raise 404.

        The exchange is labelled at once (with the champion for None), so that even a request
        refused later is logged under the version it asked for.
        """
        if version is None:
            exchange.model = serving.aliases.get(CHAMPION, self._settings.default_model)
            return None
        exchange.model = version
        available = self.available(serving)
        if version not in available:
            listing = ", ".join(available) or "none loaded"
            shown = version if len(version) <= 40 else version[:40] + "..."
            message = f"unknown model version {shown!r}; available: {listing}"
            raise field_error(404, "unknown_model", message, "model", f"must be one of: {listing}")
        return version

    def route(
        self,
        serving: ServingSet,
        requested: str | None,
        customer_id: object,
        *,
        single: bool,
    ) -> tuple[str, str | None]:
        """Return the version and alias serving this request."""
        if requested is not None:
            return requested, serving.alias_of(requested)
        aliases = serving.aliases
        champion = aliases.get(CHAMPION)
        if champion is None:
            champion = self._settings.default_model
        challenger = aliases.get(CHALLENGER)
        if single and challenger is not None and self.weight > 0.0:
            draw = (
                bucket(str(customer_id)) if customer_id is not None else random.random()  # noqa: S311 - traffic split, not security
            )
            if draw < self.weight:
                return challenger, CHALLENGER
        return champion, (CHAMPION if CHAMPION in aliases else None)

    def answered(
        self, serving: ServingSet, result: Prediction, response: Response, *, routed: bool
    ) -> None:
        """Label an answer with its version and alias, count it, and queue shadow scoring."""
        headers = response.headers
        for name, value in self.count_answer(serving, result, routed=routed):
            headers[name] = value

    def count_answer(
        self, serving: ServingSet, result: Prediction, *, routed: bool
    ) -> tuple[tuple[str, str], tuple[str, str]]:
        """Count an answer, queue its shadow scoring; return its version and alias headers.

        Only default traffic the champion answered (``routed``, not ``?model=``) is shadowed,
        by the challenger.
        """
        version = result.version
        alias = result.alias
        label = alias or "none"
        self.served.labels(version, label).inc()
        if self.shadow is not None and routed and alias == CHAMPION:
            other = serving.aliases.get(CHALLENGER)
            if other is not None and other != version:
                self.shadow.submit(ShadowWork(serving, other, result.records, result.churn))
        return (VERSION_HEADER, version), (ALIAS_HEADER, label)

    def drain(self) -> None:
        """Wait until every queued shadow scoring is done (tests, shutdown)."""
        if self.shadow is not None:
            self.shadow.drain()


def describe_model(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return the public description of one model from its metadata record."""
    mlflow = _mapping(metadata.get("mlflow"))
    artifacts = {
        kind: {"path": str(entry.get("path")), "sha256": str(entry.get("sha256"))}
        for kind, entry in _mapping(metadata.get("artifacts")).items()
        if isinstance(entry, dict)
    }
    metrics = {
        name: value
        for name, value in _mapping(metadata.get("metrics")).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return {
        "version": str(metadata.get("version")),
        "algorithm": str(metadata.get("algorithm", "unknown")),
        "hyperparameters": _mapping(metadata.get("hyperparameters")),
        "metrics": metrics,
        "artifacts": artifacts,
        "training_data_sha256": _text(metadata.get("training_data_sha256")),
        "trained_at": _text(metadata.get("trained_at")),
        "mlflow_run_id": _text(mlflow.get("run_id")),
        "mlflow": {key: mlflow[key] for key in _MLFLOW_KEYS if key in mlflow},
        "library_versions": _mapping(metadata.get("library_versions")),
    }


def describe_models(
    models: ServingModels | None, settings: ApiSettings, load_error: str | None
) -> dict[str, Any]:
    """Return the ``/models`` answer of a served set (computed when the set is published)."""
    document: dict[str, Any] = {
        "default": settings.default_model,
        "versions": list(models.versions) if models is not None else [],
        "ready": models is not None,
        "threshold": settings.threshold,
        "models": [],
    }
    if models is None:
        document["reason"] = load_error or "models not loaded"
        return document
    document["models"] = [describe_model(models.info(v).metadata) for v in models.versions]
    return document


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
