"""Shadow scoring: the challenger scores the champion's answers after they were given.

`ShadowScorer.submit` queues an answer's records and verdicts; they are scored later, gathered,
in one vectorised call per served set and version, and counted: records scored, decisions
that differ from the answer's, work dropped because the queue was full, and the CPU time the
scoring took (shadow mode's own cost). Two runners, chosen by the server:

* **inline**, with the default one-thread server (`churn.api.serve.InlineDispatcher`): the
  server's loop calls `ShadowScorer.run_pending` between two polls, right after the previous
  answers were written. Nothing else competes for the interpreter lock. A background thread
  did: NumPy releases the lock inside its loops, so each gathered batch made the lock change
  hands dozens of times with the request thread (about 750 context switches a second at
  2,500 requests/s), and the request thread spent about 50 µs more CPU per request, three
  times what the scoring itself costs (docs/lifecycle.md).
* **a background thread** otherwise (Waitress worker threads, an app used without
  `churn.api.serve`): started at the first submit; it sleeps `GATHER_S` once work arrives,
  then scores what gathered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from churn.records import concat

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from churn.registry import ServingSet

__all__ = ["GATHER_S", "MAX_BATCH", "MAX_QUEUED", "MIN_BATCH", "ShadowScorer", "ShadowWork"]

log = logging.getLogger("churn.api")

#: Answers waiting for shadow scoring; past this, shadow work is dropped (and counted).
MAX_QUEUED = 1000
#: Work waits at most this long to be gathered with more (one call for fifty records costs a
#: fraction of fifty single ones).
GATHER_S = 0.05
#: The inline runner scores as soon as this many records wait (or the oldest waited GATHER_S).
MIN_BATCH = 64
#: At most this many records in one scoring call: the longest the request loop waits for it.
MAX_BATCH = 256


class ShadowWork(NamedTuple):
    """One answer to score in shadow: by ``version`` of ``serving``; ``churn``, the verdicts."""

    serving: ServingSet
    version: str
    records: Sequence[Mapping[str, object]]
    churn: np.ndarray


class ShadowScorer:
    """Queue answers for the challenger and score them gathered; count what it finds."""

    def __init__(self, registry: CollectorRegistry, threshold: float) -> None:
        self.threshold = threshold
        self.scored = Counter(
            "churn_api_shadow_records",
            "Records scored in shadow, by shadow version and alias.",
            ["version", "alias"],
            registry=registry,
        )
        self.disagreements = Counter(
            "churn_api_shadow_disagreements",
            "Shadow-scored records whose churn decision differs from the answer's.",
            ["version", "alias"],
            registry=registry,
        )
        self.dropped = Counter(
            "churn_api_shadow_dropped",
            "Shadow work dropped because the shadow queue was full.",
            registry=registry,
        )
        self.cpu = Counter(
            "churn_api_shadow_cpu_seconds",
            "CPU time spent scoring in shadow (shadow mode's own cost).",
            registry=registry,
        )
        self._pending: deque[ShadowWork] = deque()
        self._pending_records = 0  # inline runner only (one thread submits and scores)
        self._oldest = 0.0
        #: held while scoring, so that `drain` from another thread waits for a batch in hand
        self._scoring = threading.Lock()
        self._inline = False
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._wake = threading.Event()

    @property
    def runner(self) -> str:
        """Who scores: "inline" (the server's loop), "thread", or "none" yet."""
        if self._inline:
            return "inline"
        return "thread" if self._thread is not None else "none"

    def run_inline(self) -> None:
        """Be run by the server's loop (`run_pending`): no background thread is started."""
        self._inline = True

    def submit(self, work: ShadowWork) -> None:
        """Queue ``work``; drop it (counted) when `MAX_QUEUED` answers already wait."""
        pending = self._pending
        if len(pending) >= MAX_QUEUED:
            self.dropped.inc()
            return
        if not pending:
            self._oldest = time.monotonic()
        pending.append(work)
        if self._inline:
            self._pending_records += len(work.records)
        elif not self._wake.is_set():
            if self._thread is None:
                self._start_thread()
            self._wake.set()

    def run_pending(self) -> None:
        """Score what waits once `MIN_BATCH` records or `GATHER_S` gathered (inline runner)."""
        if not self._pending or (
            self._pending_records < MIN_BATCH and time.monotonic() - self._oldest < GATHER_S
        ):
            return
        with self._scoring:
            self.score(self._take())
        self._oldest = time.monotonic()

    def drain(self) -> None:
        """Score everything still waiting, and wait for a batch in hand (tests, shutdown)."""
        while True:
            with self._scoring:  # also waits for a batch the thread has in hand
                if not self._pending:
                    return
                self.score(self._take())

    def score(self, items: Sequence[ShadowWork]) -> None:
        """Score ``items``: one call per served set and version; count records and disagreements.

        The CPU time it takes is added to ``churn_api_shadow_cpu_seconds_total``. A failure is
        logged and never reaches serving.
        """
        started = time.thread_time()
        groups: dict[tuple[int, str], list[ShadowWork]] = {}
        for item in items:
            groups.setdefault((id(item.serving), item.version), []).append(item)
        for (_, version), group in groups.items():
            serving = group[0].serving
            try:
                # One answer's batch keeps its columns (and is not copied).
                records = concat([item.records for item in group])
                answered = np.concatenate([item.churn for item in group])
                assert serving.models is not None  # noqa: S101 - only served sets are shadowed
                shadow = serving.models.predict_proba(version, records)
                label = serving.alias_of(version) or "none"
                differ = int(np.count_nonzero((shadow >= self.threshold) != answered))
                self.scored.labels(version, label).inc(len(records))
                if differ:
                    self.disagreements.labels(version, label).inc(differ)
            except Exception:  # the shadow never affects serving
                log.exception("shadow scoring of %s failed", version)
        self.cpu.inc(time.thread_time() - started)

    def _take(self) -> list[ShadowWork]:
        """Pop waiting work, up to `MAX_BATCH` records (at least one answer)."""
        pending = self._pending
        items = [pending.popleft()]
        taken = len(items[0].records)
        while pending and taken + len(pending[0].records) <= MAX_BATCH:
            items.append(pending.popleft())
            taken += len(items[-1].records)
        if self._inline:
            self._pending_records -= taken
        return items

    def _start_thread(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="shadow", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(GATHER_S)  # let more gather; a sleeping thread is not woken per answer
            self._wake.clear()
            while self._pending:
                with self._scoring:
                    if self._pending:
                        self.score(self._take())
