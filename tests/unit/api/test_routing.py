"""Traffic rules: the canary split is sticky per customer and close to its weight."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from churn.api.routing import bucket
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
