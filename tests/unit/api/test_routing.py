"""Traffic rules: the canary split is sticky per customer and close to its weight."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from churn.api.routing import bucket
from churn.api.shadow import ShadowWork
from churn.api.state import get_state
from churn.registry import ServingSet


def test_canary_share_is_the_weight_within_two_points_and_sticky(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(canary_weight=0.10)
    router = get_state(app).router
    assert router is not None
    serving = ServingSet(None, {"champion": "v2", "challenger": "v1"}, "registry")
    ids = [f"{i:05d}-CUST" for i in range(10_000)]
    first = [router.route(serving, None, i, single=True) for i in ids]
    share = sum(version == "v1" for version, _ in first) / len(ids)
    assert abs(share - 0.10) <= 0.02
    assert [router.route(serving, None, i, single=True) for i in ids] == first
    assert {alias for version, alias in first if version == "v1"} == {"challenger"}
    batch = router.route(serving, None, None, single=False)
    assert batch == ("v2", "champion")
    assert router.route(serving, "v1", "00001-CUST", single=True) == ("v1", "challenger")


def test_bucket_is_stable_and_uniform_enough() -> None:
    assert bucket("7590-VHVEG") == bucket("7590-VHVEG")
    values = [bucket(str(i)) for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55


def test_baked_answers_name_the_version_and_no_alias(
    make_app: Callable[..., Flask], customer: dict[str, Any]
) -> None:
    response = make_app().test_client().post("/predict", json=customer)
    assert response.get_json()["model"] == "v2" and response.get_json()["alias"] is None
    assert response.headers["X-Model-Version"] == "v2"
    assert response.headers["X-Model-Alias"] == "none"
    refresh = make_app().test_client().post("/registry/refresh")
    assert refresh.status_code == 404


def test_gathered_shadow_work_is_scored_in_one_call_per_version(
    make_app: Callable[..., Flask], make_records: Any
) -> None:
    """Shadow answers gathered together cost one vectorised call per version, not one each."""
    import numpy as np
    from prometheus_client.parser import text_string_to_metric_families

    app = make_app(shadow=True)
    router = get_state(app).router
    assert router is not None
    real = router.current
    assert real.models is not None
    calls: list[tuple[str, int]] = []

    class Counting:
        def predict_proba(self, version: str, records: Any) -> Any:
            calls.append((version, len(records)))
            return real.models.predict_proba(version, records)  # type: ignore[union-attr]

    serving = ServingSet(Counting(), {"champion": "v2", "challenger": "v1"}, "registry")  # type: ignore[arg-type]
    records = make_records(30, seed=5)
    v1 = real.models.predict_proba("v1", records)
    items = [ShadowWork(serving, "v1", [r], np.array([True])) for r in records[:20]]
    items += [
        ShadowWork(serving, "v2", [r], np.array([p >= 0.5]))
        for r, p in zip(records[20:], v1[20:], strict=True)
    ]
    assert router.shadow is not None
    router.shadow.score(items)
    assert sorted(calls) == [("v1", 20), ("v2", 10)]
    text = app.test_client().get("/metrics").get_data(as_text=True)
    scored = {
        (s.labels["version"], s.labels["alias"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "churn_api_shadow_records_total"
    }
    assert scored == {("v1", "challenger"): 20.0, ("v2", "champion"): 10.0}
    cpu = [
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "churn_api_shadow_cpu_seconds_total"
    ]
    assert len(cpu) == 1 and cpu[0] > 0.0  # the shadow's own cost is exported
