"""Shadow scoring under a bounded wrk load: what it costs the primary answers, reported.

``LIFECYCLE_SHADOW_ROUNDS`` (default 2) rounds, each of two runs of
``LIFECYCLE_SHADOW_SECONDS`` (default 10) at 16 connections on default traffic, with
``champion`` v1 and ``challenger`` v2: first ``CHURN_SHADOW=false``, then ``CHURN_SHADOW=true``
(nothing else changed). Every run is on a freshly recreated API container after the same
unmeasured warm-up load (``LIFECYCLE_WARMUP_SECONDS``, default 5), so that none compares a
warm process with a cold one. Interleaving the two settings spreads the machine's own noise
(healthchecks, other processes) over both instead of charging it to one; a single pair of runs
on a busy 2-core machine differs by several milliseconds at p99 with nothing changed.

Per round and on average, the p99 of the primary answers and the API's CPU per request are
reported (the issue's target: +1 ms at most at p99), not asserted; that the shadow really
scored, dropped nothing, and that no answer failed or came from the shadow, is.
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from lifecycle_support import (
    CONNECTIONS,
    FIGURES,
    LOAD_BODY,
    LifecycleStack,
    sample,
    seconds_setting,
    wrk_figures,
)

ROUNDS = seconds_setting("LIFECYCLE_SHADOW_ROUNDS", 2)  # a whole number of at least 1
RUN_SECONDS = seconds_setting("LIFECYCLE_SHADOW_SECONDS", 10)
WARMUP_SECONDS = seconds_setting("LIFECYCLE_WARMUP_SECONDS", 5)
SHADOW = {"version": "v2", "alias": "challenger"}
_SHADOW_COUNTERS = {
    "scored": ("churn_api_shadow_records_total", SHADOW),
    "dropped": ("churn_api_shadow_dropped_total", None),
    "disagreements": ("churn_api_shadow_disagreements_total", SHADOW),
    "cpu_s": ("churn_api_shadow_cpu_seconds_total", None),
}


def _run(stack: LifecycleStack, *, shadow: bool) -> dict[str, Any]:
    """One measured run on a recreated API: wrk figures, CPU per request, shadow counters."""
    stack.configure(recreate=True, CHURN_SHADOW=str(shadow).lower())
    stack.serve(champion="v1", challenger="v2")
    assert stack.get("/models")[1]["shadow"] is shadow
    with stack.load(WARMUP_SECONDS, LOAD_BODY) as pending:
        warm = pending.result()
    before, cpu = stack.metrics(), stack.api_cpu_seconds()
    with stack.load(RUN_SECONDS, LOAD_BODY) as pending:
        load = pending.result()
    cpu = stack.api_cpu_seconds() - cpu
    after = stack.metrics()
    for each in (warm, load):
        assert each.failed == 0, each.result
        assert set(each.served) == {"200 v1 champion"}, each.served
    counted = {
        key: sample(after, name, labels) - sample(before, name, labels)
        for key, (name, labels) in _SHADOW_COUNTERS.items()
    }
    requests = max(load.result.requests, 1)
    return {
        "wrk": wrk_figures(load.result),
        "p99_ms": load.result.p99_ms,
        "api_cpu_ms_per_request": round(cpu * 1e3 / requests, 3),
        "shadow_records_scored": int(counted["scored"]),
        "shadow_dropped_queue_full": int(counted["dropped"]),
        "shadow_disagreements": int(counted["disagreements"]),
        "shadow_cpu_ms_per_request": round(counted["cpu_s"] * 1e3 / requests, 4),
    }


def test_shadow_scores_the_challenger_under_load_without_failing_a_primary_answer(
    stack: LifecycleStack,
) -> None:
    rounds = []
    try:
        for _ in range(ROUNDS):
            off = _run(stack, shadow=False)
            on = _run(stack, shadow=True)
            assert off["shadow_records_scored"] == 0
            assert on["shadow_records_scored"] > 0
            assert on["shadow_dropped_queue_full"] == 0
            rounds.append({"shadow_off": off, "shadow_on": on})
    finally:
        stack.configure(CHURN_SHADOW="false")  # the suite's setting for the tests after this
    differences = [r["shadow_on"]["p99_ms"] - r["shadow_off"]["p99_ms"] for r in rounds]
    FIGURES["shadow"] = {
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
        "seconds_each": RUN_SECONDS,
        "warmup_seconds_each": WARMUP_SECONDS,
        "p99_difference_ms_per_round": [round(d, 2) for d in differences],
        "p99_difference_ms_mean": round(mean(differences), 2),
        "api_cpu_ms_per_request_mean": {
            setting: round(mean(r[setting]["api_cpu_ms_per_request"] for r in rounds), 3)
            for setting in ("shadow_off", "shadow_on")
        },
        "per_round": rounds,
    }
