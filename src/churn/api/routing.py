"""Which model version answers a prediction, and how the served set changes while serving.

* The served set (`churn.registry.ServingSet`) is read once per request (`Router.snapshot`)
  and replaced whole by `Router.publish`, so a request never mixes two sets.
* ``?model=<version>`` picks a served version; otherwise single-customer traffic goes to the
  ``champion`` alias, except a share ``CHURN_CANARY_WEIGHT`` of customers, chosen by a stable
  hash of their ``customerID`` (sticky), that goes to the ``challenger``. A request without a
  customerID is drawn at random with the same weight. A batch goes to the champion.
* With ``CHURN_SHADOW=true`` the other aliased version scores the same records in a
  background thread after the answer; disagreements on the churn decision are counted.
* Every answer names the version and alias that served it (body ``model``/``alias``,
  headers `VERSION_HEADER`/`ALIAS_HEADER`); metrics are labelled by both.
* ``POST /registry/refresh`` (``Authorization: Bearer $CHURN_REGISTRY_TOKEN``) makes the
  registry watcher look at the aliases at once instead of at its next poll.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import random
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Blueprint, Flask, Request, Response, current_app, jsonify
from flask.ctx import _AppCtxGlobals
from prometheus_client import Counter, Gauge

from churn.api.errors import ApiError
from churn.api.models import describe_models
from churn.api.state import get_state
from churn.registry import RegistryClient, RegistryWatcher, ServingSet
from churn.registry_names import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from churn.api.state import ApiState
    from churn.config import ApiSettings

__all__ = ["ALIAS_HEADER", "VERSION_HEADER", "Router", "bp", "bucket", "install"]

log = logging.getLogger("churn.api")

VERSION_HEADER = "X-Model-Version"
ALIAS_HEADER = "X-Model-Alias"
#: Records waiting for shadow scoring; past this, shadow work is dropped (and counted).
SHADOW_QUEUE = 1000

bp = Blueprint("routing", __name__)


def bucket(customer_id: str) -> float:
    """Return a stable number in [0, 1) for a customer id (same id, same number, any process)."""
    digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Router:
    """The served set, the traffic rules, shadow scoring and their metrics."""

    def __init__(self, state: ApiState, initial: ServingSet) -> None:
        self._state = state
        settings = state.settings
        self.weight = settings.canary_weight
        self.threshold = settings.threshold
        self.current = initial
        self.watcher: RegistryWatcher | None = None
        registry = state.metrics.registry
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
        self.shadow_scored = Counter(
            "churn_api_shadow_records",
            "Records scored in shadow, by shadow version and alias.",
            ["version", "alias"],
            registry=registry,
        )
        self.shadow_disagreements = Counter(
            "churn_api_shadow_disagreements",
            "Shadow-scored records whose churn decision differs from the answer's.",
            ["version", "alias"],
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "churn_api_shadow_dropped",
            "Shadow work dropped because the shadow queue was full.",
            registry=registry,
        )
        self._shadow: queue.Queue[tuple[Any, ...]] | None = None
        if settings.shadow:
            self._shadow = queue.Queue(SHADOW_QUEUE)
            threading.Thread(target=self._shadow_loop, name="shadow", daemon=True).start()
        self._label_aliases(initial)

    # -- the served set ----------------------------------------------------------------------

    def snapshot(self) -> ServingSet:
        """Return the set to use for the whole of one request."""
        return self.current

    def publish(self, serving: ServingSet) -> None:
        """Serve ``serving`` from now on (one assignment) and update what describes it."""
        state = self._state
        self.current = serving
        state.models = serving.models
        state.load_error = None if serving.models is not None else state.load_error
        state.models_document = describe_models(serving.models, state.settings, state.load_error)
        state.metrics.models_loaded.set(1 if serving.models is not None else 0)
        if serving.models is not None:
            state.metrics.model_info.clear()
            for version in serving.models.versions:
                metadata = serving.models.info(version).metadata
                state.metrics.model_info.labels(
                    version,
                    str(metadata.get("algorithm", "unknown")),
                    str(metadata["artifacts"]["model"]["sha256"]),
                ).set(1)
        self._label_aliases(serving)
        self.swaps.inc()

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
            "shadow": self._shadow is not None,
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
        return tuple(self._state.settings.model_versions)

    def requested(self, serving: ServingSet, req: Request, ctx: _AppCtxGlobals) -> str | None:
        """Return the version ``?model=`` names (None when absent), or raise 404."""
        return self.named(serving, req.args.get("model"), ctx)

    def named(self, serving: ServingSet, version: str | None, ctx: _AppCtxGlobals) -> str | None:
        """Return ``version`` when ``serving`` serves it (None stays None), or raise 404.

        ``ctx.model`` is set at once (to the champion for None), so that even a request
        refused later is counted under the version it asked for.
        """
        if version is None:
            ctx.model = serving.aliases.get(CHAMPION, self._state.settings.default_model)
            return None
        ctx.model = version
        available = self.available(serving)
        if version not in available:
            listing = ", ".join(available) or "none loaded"
            shown = version if len(version) <= 40 else version[:40] + "..."
            raise ApiError(
                404,
                "unknown_model",
                f"unknown model version {shown!r}; available: {listing}",
                [{"field": "model", "problem": f"must be one of: {listing}"}],
            )
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
            champion = self._state.settings.default_model
        challenger = aliases.get(CHALLENGER)
        if single and challenger is not None and self.weight > 0.0:
            draw = (
                bucket(str(customer_id)) if customer_id is not None else random.random()  # noqa: S311 - traffic split, not security
            )
            if draw < self.weight:
                return challenger, CHALLENGER
        return champion, (CHAMPION if CHAMPION in aliases else None)

    def answered(
        self,
        serving: ServingSet,
        version: str,
        alias: str | None,
        records: Sequence[Mapping[str, object]],
        probabilities: np.ndarray,
        response: Response,
        *,
        routed: bool,
    ) -> Response:
        """Label an answer with its version and alias, count it, and queue shadow scoring.

        Only default traffic the champion answered (``routed``, not ``?model=``) is shadowed,
        by the challenger.
        """
        label = alias or "none"
        response.headers[VERSION_HEADER] = version
        response.headers[ALIAS_HEADER] = label
        self.served.labels(version, label).inc()
        if self._shadow is not None and routed and alias == CHAMPION:
            other = serving.aliases.get(CHALLENGER)
            if other is not None and other != version:
                try:
                    self._shadow.put_nowait((serving, other, records, probabilities))
                except queue.Full:
                    self.shadow_dropped.inc()
        return response

    def _shadow_loop(self) -> None:
        assert self._shadow is not None  # noqa: S101 - started only with a queue
        while True:
            serving, version, records, primary = self._shadow.get()
            try:
                shadow = serving.models.predict_proba(version, records)
                label = serving.alias_of(version) or "none"
                differ = int(
                    np.count_nonzero((shadow >= self.threshold) != (primary >= self.threshold))
                )
                self.shadow_scored.labels(version, label).inc(len(records))
                if differ:
                    self.shadow_disagreements.labels(version, label).inc(differ)
            except Exception:  # the shadow never affects serving
                log.exception("shadow scoring of %s failed", version)
            finally:
                self._shadow.task_done()

    def drain(self) -> None:
        """Wait until every queued shadow scoring is done (tests, shutdown)."""
        if self._shadow is not None:
            self._shadow.join()


def _baked_set(state: ApiState) -> ServingSet:
    """Return the image's models: no aliases (default traffic goes to the configured default)."""
    return ServingSet(state.models, {}, "baked")


def install(app: Flask, state: ApiState) -> Router:
    """Attach a `Router` to ``state``; in registry mode, load from and follow the registry.

    The first look at the registry happens here (bounded by the request timeout); the
    baked models, when they loaded, serve until it succeeds.
    """
    router = Router(state, _baked_set(state))
    state.router = router
    app.register_blueprint(bp)
    settings: ApiSettings = state.settings
    if settings.model_source == "registry":
        assert settings.mlflow_tracking_uri is not None  # noqa: S101 - checked by the settings
        client = RegistryClient(
            settings.mlflow_tracking_uri,
            settings.registry_model,
            username=settings.mlflow_username,
            password=settings.mlflow_password,
        )
        router.watcher = RegistryWatcher(client, router.publish, interval=settings.registry_poll)
        router.watcher.poll_once()
        router.watcher.start()
    return router


@bp.post("/registry/refresh")
def refresh() -> tuple[Response, int]:
    """Look at the registry aliases now (``Authorization: Bearer <CHURN_REGISTRY_TOKEN>``)."""
    state = get_state(current_app)
    from flask import request

    router = state.router
    token = state.settings.registry_token
    if router is None or router.watcher is None or not token:
        raise ApiError(
            404,
            "not_found",
            "registry notifications are off (CHURN_MODEL_SOURCE=registry and "
            "CHURN_REGISTRY_TOKEN turn them on)",
        )
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(
            401,
            "unauthorized",
            "missing token: send 'Authorization: Bearer <CHURN_REGISTRY_TOKEN>'",
            [{"field": "Authorization", "problem": "required bearer token is missing"}],
        )
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise ApiError(
            403,
            "forbidden",
            "wrong token",
            [{"field": "Authorization", "problem": "the bearer token is not the configured one"}],
        )
    router.watcher.wake()
    return jsonify({"status": "accepted", "registry": router.watcher.status()}), 202
