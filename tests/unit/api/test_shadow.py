"""Shadow scoring: gathered, bounded, counted, and run by the server's own loop by default."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry

from churn.api import shadow as shadow_module
from churn.api.shadow import MAX_BATCH, MAX_QUEUED, MIN_BATCH, ShadowScorer, ShadowWork
from churn.api.state import get_state
from churn.config import ApiSettings
from churn.registry import ServingSet

from .test_serve import Running, free_port

CHALLENGER = {"version": "v1", "alias": "challenger"}


class Counting:
    """Models whose every probability is 0.9; the sizes of the scoring calls are kept."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def predict_proba(self, version: str, records: Any) -> np.ndarray:
        self.calls.append(len(records))
        if self.fail:
            raise RuntimeError("broken challenger")
        return np.full(len(records), 0.9)


def _work(models: Counting, count: int, churn: bool = True) -> list[ShadowWork]:
    serving = ServingSet(models, {"champion": "v2", "challenger": "v1"}, "registry")  # type: ignore[arg-type]
    return [ShadowWork(serving, "v1", [{"tenure": i}], np.array([churn])) for i in range(count)]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels or None) or 0.0


def test_inline_runner_waits_for_a_batch_then_scores_in_bounded_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry, models = CollectorRegistry(), Counting()
    scorer = ShadowScorer(registry, threshold=0.5)
    scorer.run_inline()
    work = _work(models, MIN_BATCH + 2 * MAX_BATCH)
    for item in work[: MIN_BATCH - 1]:
        scorer.submit(item)
    scorer.run_pending()
    assert models.calls == []  # too few, and not waited long enough: keep gathering
    scorer.submit(work[MIN_BATCH - 1])
    scorer.run_pending()
    assert models.calls == [MIN_BATCH]
    for item in work[MIN_BATCH:]:
        scorer.submit(item)
    scorer.run_pending()
    scorer.run_pending()
    assert models.calls == [MIN_BATCH, MAX_BATCH, MAX_BATCH]  # one bounded call per round
    scorer.submit(_work(models, 1)[0])
    scorer.run_pending()
    assert len(models.calls) == 3
    monkeypatch.setattr(shadow_module, "GATHER_S", 0.0)  # the oldest has waited long enough
    scorer.run_pending()
    assert models.calls[3:] == [1]
    assert scorer.runner == "inline"
    scored = MIN_BATCH + 2 * MAX_BATCH + 1
    assert _value(registry, "churn_api_shadow_records_total", **CHALLENGER) == (scored)
    assert _value(registry, "churn_api_shadow_disagreements_total", **CHALLENGER) == 0
    assert _value(registry, "churn_api_shadow_cpu_seconds_total") > 0.0


def test_a_full_queue_drops_work_and_counts_it() -> None:
    registry, models = CollectorRegistry(), Counting()
    scorer = ShadowScorer(registry, threshold=0.5)
    scorer.run_inline()
    for item in _work(models, MAX_QUEUED + 5):
        scorer.submit(item)
    assert _value(registry, "churn_api_shadow_dropped_total") == 5
    scorer.drain()
    assert sum(models.calls) == MAX_QUEUED and max(models.calls) <= MAX_BATCH


def test_disagreements_are_counted_and_a_failing_challenger_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    scorer = ShadowScorer(registry, threshold=0.5)
    scorer.score(_work(Counting(), 7, churn=False))  # 0.9 says churn; the answers said no
    assert _value(registry, "churn_api_shadow_disagreements_total", **CHALLENGER) == 7
    scorer.score(_work(Counting(fail=True), 3))
    assert "shadow scoring of v1 failed" in caplog.text
    assert _value(registry, "churn_api_shadow_records_total", **CHALLENGER) == 7


def test_without_the_inline_server_a_thread_scores_what_gathers() -> None:
    registry, models = CollectorRegistry(), Counting()
    scorer = ShadowScorer(registry, threshold=0.5)
    for item in _work(models, 10):
        scorer.submit(item)
    deadline = time.monotonic() + 10
    while sum(models.calls) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(models.calls) == 10 and len(models.calls) < 10  # gathered, not one by one
    assert scorer.runner == "thread"


def test_the_inline_server_scores_shadow_work_in_its_own_loop(
    make_settings: Callable[..., ApiSettings], customer: dict[str, Any]
) -> None:
    """Default server: no shadow thread; the loop scores every answer soon after it is given."""
    from churn.api import create_app

    settings = make_settings(host="127.0.0.1", port=free_port(), threads=0, shadow=True)
    server = Running(create_app(settings), settings)
    try:
        _shadow_answers(server, customer)
    finally:
        server.close()


def _shadow_answers(server: Running, customer: dict[str, Any]) -> None:
    router = get_state(server.app).router
    served = router.current
    router.publish(ServingSet(served.models, {"champion": "v2", "challenger": "v1"}, "registry"))
    count = 20
    with requests.Session() as http:
        for _ in range(count):
            answer = http.post(f"{server.url}/predict", json=customer, timeout=5)
            assert answer.headers["X-Model-Alias"] == "champion"
    registry = get_state(server.app).metrics.registry
    deadline = time.monotonic() + 10
    while _value(registry, "churn_api_shadow_records_total", **CHALLENGER) < count:
        assert time.monotonic() < deadline, "the server's loop did not score the shadow work"
        time.sleep(0.05)
    assert _value(registry, "churn_api_shadow_records_total", **CHALLENGER) == count
    assert router.shadow is not None and router.shadow.runner == "inline"
