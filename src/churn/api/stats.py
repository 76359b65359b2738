"""Serving statistics sent to MLflow over its REST API, off the request path.

Request handlers call `MlflowStats.record_prediction` / `record_rejection`, which only update
counters under a lock. A daemon thread wakes every ``interval`` seconds, turns what happened
since the last wake into metric points and sends them with ``urllib`` (short timeouts) to the
experiment ``churn-serving``, one run per API process, named and tagged with its replica:

* ``requests``, ``rejected_requests``: prediction requests answered 200 / 4xx;
* ``requests_<model>``, ``predictions_<model>``: requests and scored records per model;
* ``mean_churn_probability_<model>``, ``churn_rate_<model>``: over that interval's records;
* ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``: of the successful requests.

When MLflow cannot be reached the points wait in a bounded buffer, the health turns
``degraded`` (shown by ``/ready``), and sending resumes when the server is back. Nothing here
ever raises into a request.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np

__all__ = ["EXPERIMENT", "MlflowStats", "redact_uri"]

log = logging.getLogger("churn.api.stats")

EXPERIMENT = "churn-serving"
#: MLflow accepts at most 1000 metrics per log-batch call.
BATCH_LIMIT = 1000
#: Metric points kept while MLflow is unreachable (older ones are dropped first).
MAX_PENDING = 20_000
#: Latencies kept per interval (a uniform sample beyond that).
MAX_LATENCIES = 10_000


class MlflowUnavailable(Exception):
    """MLflow could not be reached or answered with an error."""


class _HttpError(MlflowUnavailable):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_code}: {message}".strip())
        self.status = status
        self.error_code = error_code


def redact_uri(uri: str) -> str:
    """Return ``uri`` without any user:password part."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class _ModelTally:
    requests: int = 0
    records: int = 0
    probability_sum: float = 0.0
    churned: int = 0


@dataclass
class _Interval:
    tallies: dict[str, _ModelTally] = field(default_factory=dict)
    rejected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seen_latencies: int = 0


class MlflowStats:
    """Aggregates serving statistics and ships them to MLflow from a daemon thread."""

    def __init__(
        self,
        tracking_uri: str,
        interval: float,
        *,
        run_params: dict[str, str] | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 2.0,
        experiment: str = EXPERIMENT,
        replica: str | None = None,
    ) -> None:
        parts = urlsplit(tracking_uri)
        if parts.username or parts.password:
            username = username or parts.username
            password = password or parts.password
        self.tracking_uri = redact_uri(tracking_uri).rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.experiment = experiment
        self.replica = replica or socket.gethostname()
        self.run_params = dict(run_params or {})
        self._auth: str | None = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"

        self._lock = threading.Lock()  # guards the current interval only
        self._interval = _Interval()
        self._send_lock = threading.Lock()  # one flush at a time
        self._pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self._step = 0
        self._experiment_id: str | None = None
        self.run_id: str | None = None

        self._status = "pending"
        self._error: str | None = None
        self._last_success: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- request path: counters only --------------------------------------------------------

    def record_prediction(
        self, model: str, probabilities: np.ndarray, churned: int, latency_s: float
    ) -> None:
        """Count one answered prediction request (cheap; called on the request path)."""
        total = float(np.add.reduce(probabilities)) if len(probabilities) else 0.0
        with self._lock:
            tally = self._interval.tallies.get(model)
            if tally is None:
                tally = self._interval.tallies[model] = _ModelTally()
            tally.requests += 1
            tally.records += len(probabilities)
            tally.probability_sum += total
            tally.churned += churned
            self._add_latency(latency_s * 1000.0)

    def record_rejection(self) -> None:
        """Count one prediction request answered with a 4xx."""
        with self._lock:
            self._interval.rejected += 1

    def _add_latency(self, ms: float) -> None:
        interval = self._interval
        interval.seen_latencies += 1
        if len(interval.latencies_ms) < MAX_LATENCIES:
            interval.latencies_ms.append(ms)
        else:  # reservoir sampling keeps a uniform sample of the interval
            j = random.randrange(interval.seen_latencies)  # noqa: S311 - not cryptographic
            if j < MAX_LATENCIES:
                interval.latencies_ms[j] = ms

    # -- health -----------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        """True when the last contact with MLflow succeeded."""
        return self._status == "ok"

    def health(self) -> dict[str, Any]:
        """Return the ``mlflow`` check of ``/ready``: ok, degraded (with the reason) or pending."""
        report: dict[str, Any] = {
            "status": self._status,
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "interval_seconds": self.interval,
            "pending_points": len(self._pending),
        }
        if self._last_success is not None:
            report["last_success"] = _iso(self._last_success)
        if self._status == "degraded" and self._error:
            report["reason"] = self._error
        return report

    def _mark(self, ok: bool, error: str | None = None) -> None:
        before = self._status
        if ok:
            self._status, self._error, self._last_success = "ok", None, time.time()
            if before == "degraded":
                log.info(
                    "MLflow reachable again at %s; serving statistics resumed", self.tracking_uri
                )
        else:
            self._status, self._error = "degraded", error
            if before != "degraded":
                log.warning(
                    "MLflow unreachable at %s (%s); serving statistics are buffered",
                    self.tracking_uri,
                    error,
                )

    # -- background thread ------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon thread (connects at once, then flushes every ``interval``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mlflow-stats", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, send what is left and mark the run finished (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        if self.run_id is not None and self._status == "ok":
            try:
                self._call(
                    "runs/update",
                    {"run_id": self.run_id, "status": "FINISHED", "end_time": _now_ms()},
                )
            except Exception as exc:  # noqa: BLE001 - shutting down; never raise
                log.warning("could not mark the MLflow serving run finished: %s", exc)

    def _run(self) -> None:
        try:
            with self._send_lock:
                self._ensure_run()
            self._mark(True)
        except Exception as exc:  # noqa: BLE001 - health records it
            self._mark(False, _reason(exc))
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> bool:
        """Close the current interval and send every pending point; return True on success.

        Never raises: failures mark the health degraded and keep the points for later.
        """
        with self._send_lock:
            self._pending.extend(self._collect())
            try:
                self._ensure_run()
                while self._pending:
                    chunk = [self._pending[i] for i in range(min(BATCH_LIMIT, len(self._pending)))]
                    try:
                        self._call("runs/log-batch", {"run_id": self.run_id, "metrics": chunk})
                    except _HttpError as exc:
                        if exc.status >= 500 or exc.status == 429:
                            raise
                        # The run is gone (server store reset) or the points were refused:
                        # start a new run next time and drop this chunk rather than retry forever.
                        log.warning(
                            "MLflow refused serving statistics (%s); dropping %d points",
                            exc,
                            len(chunk),
                        )
                        self.run_id = self._experiment_id = None
                        for _ in chunk:
                            self._pending.popleft()
                        raise
                    for _ in chunk:
                        self._pending.popleft()
            except Exception as exc:  # noqa: BLE001 - never raise out of a flush
                self._mark(False, _reason(exc))
                return False
            self._mark(True)
            return True

    def _collect(self) -> list[dict[str, Any]]:
        with self._lock:
            interval, self._interval = self._interval, _Interval()
        step, self._step = self._step, self._step + 1
        stamp = _now_ms()

        def point(key: str, value: float) -> dict[str, Any]:
            return {"key": key, "value": float(value), "timestamp": stamp, "step": step}

        requests = sum(t.requests for t in interval.tallies.values())
        points = [point("requests", requests), point("rejected_requests", interval.rejected)]
        for model, tally in sorted(interval.tallies.items()):
            points.append(point(f"requests_{model}", tally.requests))
            points.append(point(f"predictions_{model}", tally.records))
            if tally.records:
                points.append(
                    point(f"mean_churn_probability_{model}", tally.probability_sum / tally.records)
                )
                points.append(point(f"churn_rate_{model}", tally.churned / tally.records))
        if interval.latencies_ms:
            p50, p95, p99 = np.percentile(np.asarray(interval.latencies_ms), [50, 95, 99])
            points += [
                point("latency_p50_ms", p50),
                point("latency_p95_ms", p95),
                point("latency_p99_ms", p99),
            ]
        return points

    # -- MLflow REST ------------------------------------------------------------------------

    def _ensure_run(self) -> None:
        if self.run_id is not None:
            return
        if self._experiment_id is None:
            self._experiment_id = self._get_or_create_experiment()
        started = _now_ms()
        name = f"api-{self.replica}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        answer = self._call(
            "runs/create",
            {
                "experiment_id": self._experiment_id,
                "start_time": started,
                "run_name": name,
                "tags": [
                    {"key": "mlflow.runName", "value": name},
                    {"key": "mlflow.source.name", "value": "churn.api"},
                    {"key": "service", "value": "churn-prediction-api"},
                    {"key": "replica", "value": self.replica},
                ],
            },
        )
        run_id = str(answer["run"]["info"]["run_id"])
        params = [{"key": k, "value": str(v)[:6000]} for k, v in sorted(self.run_params.items())]
        for i in range(0, len(params), 100):
            self._call("runs/log-batch", {"run_id": run_id, "params": params[i : i + 100]})
        self.run_id = run_id
        log.info("MLflow serving statistics: experiment %r, run %s", self.experiment, run_id)

    def _get_or_create_experiment(self) -> str:
        try:
            answer = self._call(
                f"experiments/get-by-name?experiment_name={quote(self.experiment)}", None
            )
            return str(answer["experiment"]["experiment_id"])
        except _HttpError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            answer = self._call("experiments/create", {"name": self.experiment})
            return str(answer["experiment_id"])
        except _HttpError as exc:  # created meanwhile by another API process
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            answer = self._call(
                f"experiments/get-by-name?experiment_name={quote(self.experiment)}", None
            )
            return str(answer["experiment"]["experiment_id"])

    def _call(self, endpoint: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self.tracking_uri}/api/2.0/mlflow/{endpoint}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()[:2000]
            exc.close()
            code, message = "", raw.decode("utf-8", "replace")
            try:
                parsed = json.loads(raw)
                code, message = str(parsed.get("error_code", "")), str(parsed.get("message", ""))
            except (ValueError, AttributeError):
                pass
            raise _HttpError(
                exc.code, code, message.splitlines()[0][:200] if message else ""
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise MlflowUnavailable(_reason(exc)) from None
        try:
            parsed = json.loads(body) if body.strip() else {}
        except ValueError:
            raise MlflowUnavailable(f"{endpoint}: the answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise MlflowUnavailable(f"{endpoint}: unexpected answer")
        return parsed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc_reason = exc.reason
        return f"cannot connect: {exc_reason}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
