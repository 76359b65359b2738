"""MLflow stopped during a bounded wrk load: nothing fails, the last good model serves.

A run of ``LIFECYCLE_LOAD_SECONDS`` (default 20) at 16 connections with a prober beside it:
2 s in, the suite's MLflow container is stopped (`docker stop`); once ``/ready`` says why, it is
started again while the load goes on. After the run, when MLflow is healthy, ``champion`` is
moved and the move must be served. How long each step took is reported.
"""

from __future__ import annotations

import time
from typing import Any

from lifecycle_support import (
    CONNECTIONS,
    FIGURES,
    LOAD_BODY,
    LifecycleStack,
    seconds_setting,
    wrk_figures,
)

LOAD_SECONDS = seconds_setting("LIFECYCLE_LOAD_SECONDS", 20)
KEEPS_SERVING = "the last good models keep serving"


def _registry_check(stack: LifecycleStack) -> dict[str, Any]:
    status, body = stack.get("/ready")
    assert status == 200, body  # degraded, not unready: the models still serve
    return dict(body["checks"]["registry"])


def test_mlflow_stopped_under_load_fails_nothing_and_a_later_move_is_picked_up(
    stack: LifecycleStack,
) -> None:
    stack.serve(champion="v2")
    with (
        stack.probing(LOAD_BODY, every=0.1) as prober,
        stack.load(LOAD_SECONDS, LOAD_BODY) as pending,
    ):
        started = time.monotonic()
        time.sleep(2)
        stopped = time.monotonic()
        stack.stop_mlflow()
        stop_call = time.monotonic() - stopped
        said = stack.wait_until(
            "/ready saying MLflow is unreachable",
            lambda: "unreachable" in _registry_check(stack).get("reason", ""),
        )
        ready = _registry_check(stack)
        models = stack.get("/models")[1]
        stack.start_mlflow()
        restarted_at = time.monotonic() - started
        load = pending.result()

    assert load.failed == 0, load.result
    assert load.versions() == {"v2"}, load.served  # the last good model all along
    assert not prober.failures(), prober.failures()[:5]
    assert {a.version for a in prober.answers} == {"v2"}
    assert ready["status"] == "degraded"
    assert KEEPS_SERVING in ready["reason"], ready
    assert "unreachable" in models["registry"]["reason"], models["registry"]
    assert models["aliases"]["champion"] == "v2"

    healthy = stack.wait_until("MLflow healthy again", lambda: stack.mlflow_state() == "healthy")
    moved = time.monotonic()
    change = stack.promote("v1")
    stack.wait_until(
        "the move after the outage served", lambda: stack.answered_by(LOAD_BODY) == "v1"
    )
    delay = time.monotonic() - moved
    registry_ok = stack.wait_until(
        "the registry check ok again", lambda: _registry_check(stack)["status"] == "ok"
    )

    FIGURES["mlflow_outage"] = {
        "connections": CONNECTIONS,
        "load": wrk_figures(load.result),
        "answers": load.served,
        "docker_stop_s": round(stop_call, 1),
        "ready_says_why_after_stop_s": round(said + stop_call, 1),
        "ready_reason": ready["reason"],
        "mlflow_started_again_at_s": round(restarted_at, 1),
        "mlflow_healthy_after_load_s": round(healthy, 1),
        "change_after_outage": change,
        "delay_to_serving_the_later_move_s": round(delay, 2),
        "registry_check_ok_after_that_s": round(registry_ok, 1),
    }
