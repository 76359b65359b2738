"""Serving from the registry: a real MLflow server, the real app, alias moves while serving."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from churn.api import create_app
from churn.api.routing import ALIAS_HEADER, VERSION_HEADER
from churn.api.state import get_state
from churn.config import SettingsError, load_api_settings
from churn.registry_names import ARTIFACTS_TAG
from churn_ops.promotion import promote

from .conftest import MlflowServer, Registered

TOKEN = "s3cret-token"  # noqa: S105 - a test value
CHALLENGER_V1 = {"alias": "challenger", "version": "v1"}


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (any replica)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


@pytest.fixture
def make_app(
    mlflow_server: MlflowServer, registered: Registered, artifact_root: Any
) -> Iterator[Callable[..., Flask]]:
    """``make_app(**overrides)``: an app following ``registered``; its threads stopped after."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        settings = {
            "root": str(artifact_root),
            "mlflow_tracking_uri": mlflow_server.url,
            "model_source": "registry",
            "registry_model": registered.name,
            "registry_poll": 300,  # the tests look with poll_once(), not on a timer
            "stats_interval": 3600,
            **overrides,
        }
        env = {"CHURN_REGISTRY_TOKEN": TOKEN}
        app = create_app(load_api_settings(env=env, yaml_path=None, **settings))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state = get_state(app)
        assert state.router is not None and state.router.watcher is not None
        state.router.watcher.stop()
        if state.stats is not None:
            state.stats.stop(timeout=1)


def _predict(app: Flask, customer: dict[str, object], query: str = "") -> tuple[dict, Any]:
    response = app.test_client().post(f"/predict{query}", json=customer)
    assert response.status_code == 200, response.get_json()
    return response.get_json(), response.headers


def _watcher(app: Flask) -> Any:
    router = get_state(app).router
    assert router is not None and router.watcher is not None
    return router.watcher


def test_serves_the_champion_and_follows_an_alias_move(
    make_app: Callable[..., Flask], registered: Registered, customer: dict[str, object]
) -> None:
    promote(registered.client, "v1", name=registered.name)
    app = make_app()
    body, headers = _predict(app, customer)
    assert (body["model"], body["alias"]) == ("v1", "champion")
    assert (headers[VERSION_HEADER], headers[ALIAS_HEADER]) == ("v1", "champion")

    promote(registered.client, "v2", name=registered.name)
    promote(registered.client, "v1", "challenger", name=registered.name)
    assert _watcher(app).poll_once() is True
    body, headers = _predict(app, customer)
    assert (body["model"], body["alias"]) == ("v2", "champion")
    body, _ = _predict(app, customer, "?model=v1")
    assert (body["model"], body["alias"]) == ("v1", "challenger")
    models = app.test_client().get("/models").get_json()
    assert models["source"] == "registry" and models["default"] == "v2"
    assert models["aliases"] == {"champion": "v2", "challenger": "v1"}
    assert models["registry"]["status"] == "ok"
    assert models["registry_versions"]["v2"]["registry_version"] == "2"
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "churn_api_served_total", alias="champion", version="v2") == 1
    page = app.test_client().get("/").get_data(as_text=True)
    assert "champion &rarr; v2, challenger &rarr; v1" in page
    assert '<option value="v1">v1 (challenger)</option>' in page
    assert _watcher(app).poll_once() is False  # nothing moved: nothing reloaded


def test_a_version_registers_only_its_data_only_model_file_and_record(
    registered: Registered, artifact_root: Any
) -> None:
    from churn.model_record import file_sha256, read_record, record_path

    tags = registered.client.get_model_version(registered.name, "2").tags
    files = json.loads(tags[ARTIFACTS_TAG])
    assert set(files) == {"compiled", "record"}  # no pickle is registered
    record = read_record(artifact_root / "models", "v2")
    assert files["compiled"]["sha256"] == record.artifact("compiled").sha256
    assert files["record"]["sha256"] == file_sha256(record_path(artifact_root / "models", "v2"))


def test_serves_from_the_registry_alone_with_no_model_files_on_disk(
    make_app: Callable[..., Flask],
    registered: Registered,
    customer: dict[str, object],
    artifact_root: Any,
    tmp_path: Any,
) -> None:
    promote(registered.client, "v2", name=registered.name)
    baked = create_app(load_api_settings(env={}, yaml_path=None, root=str(artifact_root)))
    expected, _ = _predict(baked, customer, "?model=v2")
    empty = tmp_path / "empty"  # a project root with no models: nothing baked to fall back on
    empty.mkdir()
    app = make_app(root=str(empty))
    body, _ = _predict(app, customer)
    assert (body["model"], body["alias"]) == ("v2", "champion")
    assert body["churn_probability"] == expected["churn_probability"]
    assert not list(empty.rglob("*"))  # nothing was written there either


def test_a_record_that_disagrees_with_the_registry_is_refused(registered: Registered) -> None:
    from churn.registry import RegistryClient, VerificationError, fetch_verified, load_from_bytes

    client = RegistryClient(registered.client.tracking_uri, registered.name)
    promote(registered.client, "v2", name=registered.name)
    entry = client.alias("champion")
    assert entry is not None
    files = fetch_verified(client, entry)
    assert load_from_bytes({"v2": (entry, files)}).versions == ("v2",)
    record = json.loads(files["record"])
    record["artifacts"]["compiled"]["sha256"] = "0" * 64
    forged = {**files, "record": json.dumps(record).encode()}
    with pytest.raises(VerificationError, match="differs from the registry"):
        load_from_bytes({"v2": (entry, forged)})
    with pytest.raises(VerificationError, match="unreadable record"):
        load_from_bytes({"v2": (entry, {**files, "record": b"\xff not json"})})


def test_mlflow_unreachable_keeps_the_last_good_models_then_catches_up(
    make_app: Callable[..., Flask],
    registered: Registered,
    mlflow_server: MlflowServer,
    customer: dict[str, object],
) -> None:
    promote(registered.client, "v1", name=registered.name)
    app = make_app()
    watcher = _watcher(app)
    watcher.client.base_url = "http://127.0.0.1:9"  # discard port: nothing listens there
    assert watcher.poll_once() is False
    ready = app.test_client().get("/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
    reason = ready.get_json()["checks"]["registry"]["reason"]
    assert "unreachable" in reason and "last good models keep serving" in reason
    assert _predict(app, customer)[0]["model"] == "v1"

    promote(registered.client, "v2", name=registered.name)
    watcher.client.base_url = mlflow_server.url  # back
    assert watcher.poll_once() is True
    assert _predict(app, customer)[0]["model"] == "v2"
    assert app.test_client().get("/ready").get_json()["status"] == "ready"


def test_a_version_whose_bytes_do_not_match_is_refused_once_and_the_old_one_serves(
    make_app: Callable[..., Flask],
    registered: Registered,
    customer: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    promote(registered.client, "v1", name=registered.name)
    app = make_app()
    record = json.loads(
        registered.client.get_model_version(registered.name, "2").tags[ARTIFACTS_TAG]
    )
    record["compiled"]["sha256"] = "0" * 64
    registered.client.set_model_version_tag(registered.name, "2", ARTIFACTS_TAG, json.dumps(record))
    promote(registered.client, "2", name=registered.name)
    watcher = _watcher(app)
    with caplog.at_level(logging.ERROR, logger="churn.registry"):
        assert watcher.poll_once() is False
        assert watcher.poll_once() is False
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "sha256 mismatch" in refused[0].getMessage()
    assert _predict(app, customer)[0]["model"] == "v1"
    ready = app.test_client().get("/ready").get_json()
    assert ready["status"] == "degraded"
    assert "sha256 mismatch" in ready["checks"]["registry"]["reason"]
    assert "sha256 mismatch" in app.test_client().get("/models").get_json()["registry"]["reason"]


def test_shadow_scores_the_challenger_off_the_request_path(
    make_app: Callable[..., Flask], registered: Registered, make_records: Any
) -> None:
    promote(registered.client, "v2", name=registered.name)
    promote(registered.client, "v1", "challenger", name=registered.name)
    app = make_app(shadow=True)
    client = app.test_client()
    records = make_records(40, seed=3)
    for record in records:
        assert client.post("/predict", json=record).get_json()["model"] == "v2"
    router = get_state(app).router
    assert router is not None
    router.drain()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "churn_api_shadow_records_total", **CHALLENGER_V1) == 40
    v1 = client.post("/predict/batch?model=v1", json={"instances": records}).get_json()
    v2 = client.post("/predict/batch?model=v2", json={"instances": records}).get_json()
    differ = sum(
        a["churn"] != b["churn"] for a, b in zip(v1["predictions"], v2["predictions"], strict=True)
    )
    for version in ("v1", "v2"):  # single ones too (answered in front of Flask)
        assert client.post(f"/predict?model={version}", json=records[0]).status_code == 200
    router.drain()  # the explicit ?model= requests were not shadowed
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "churn_api_shadow_records_total", **CHALLENGER_V1) == 40
    if differ:
        assert _sample(metrics, "churn_api_shadow_disagreements_total", **CHALLENGER_V1) == differ


def test_refresh_endpoint_needs_the_right_token_and_changes_nothing_without(
    make_app: Callable[..., Flask], registered: Registered
) -> None:
    promote(registered.client, "v1", name=registered.name)
    app = make_app()
    client = app.test_client()
    missing = client.post("/registry/refresh")
    wrong = client.post("/registry/refresh", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 403 and wrong.get_json()["error"]["details"][0]["field"] == (
        "Authorization"
    )
    assert get_state(app).router.current.aliases == {"champion": "v1"}  # type: ignore[union-attr]
    ok = client.post("/registry/refresh", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURN_CANARY_WEIGHT": "1.5"}, "CHURN_CANARY_WEIGHT: '1.5' must be at least 0.0"),
        ({"CHURN_CANARY_WEIGHT": "lots"}, "CHURN_CANARY_WEIGHT: expected a number"),
        ({"CHURN_MODEL_SOURCE": "s3"}, "CHURN_MODEL_SOURCE: 's3' is not one of baked, registry"),
        ({"CHURN_MODEL_SOURCE": "registry"}, "needs MLFLOW_TRACKING_URI"),
        ({"CHURN_SHADOW": "maybe"}, "CHURN_SHADOW: expected true or false"),
        ({"CHURN_REGISTRY_POLL": "0"}, "CHURN_REGISTRY_POLL"),
    ],
)
def test_bad_lifecycle_settings_fail_fast_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_api_settings(env=env, yaml_path=None)


def test_the_protocols_follow_the_champion_and_say_which_version_and_alias_served(
    make_app: Callable[..., Flask], registered: Registered, customer: dict[str, object]
) -> None:
    """``/v2/.../infer`` and ``/invocations`` take the same path as ``/predict``: the champion
    by default (not the configured default version), labelled in headers and metrics."""
    from churn.api.v2 import INPUT_TYPES

    promote(registered.client, "v1", name=registered.name)
    app = make_app()
    client = app.test_client()
    inputs = [
        {"name": c, "datatype": kind, "shape": [1], "data": [customer[c]]}
        for c, kind in INPUT_TYPES.items()
    ]

    def served() -> list[tuple[str, str, str]]:
        v2 = client.post("/v2/models/churn/infer", json={"inputs": inputs})
        assert v2.status_code == 200, v2.get_data(as_text=True)
        assert v2.get_json()["parameters"] == {"alias": "champion"}
        mlflow = client.post("/invocations", json={"dataframe_records": [customer]})
        assert mlflow.status_code == 200, mlflow.get_data(as_text=True)
        return [
            (v2.get_json()["model_version"], v2.headers[VERSION_HEADER], v2.headers[ALIAS_HEADER]),
            ("-", mlflow.headers[VERSION_HEADER], mlflow.headers[ALIAS_HEADER]),
        ]

    assert served() == [("v1", "v1", "champion"), ("-", "v1", "champion")]
    promote(registered.client, "v2", name=registered.name)
    assert _watcher(app).poll_once() is True
    assert served() == [("v2", "v2", "champion"), ("-", "v2", "champion")]
    # Only the aliased versions are served: v1 went with its alias, v2 is ready.
    assert client.get("/v2/models/churn/versions/v2/ready").status_code == 200
    gone = client.post("/v2/models/churn/versions/v1/infer", json={"inputs": inputs})
    assert gone.status_code == 404 and "unknown version 'v1'" in gone.get_json()["error"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "churn_api_served_total", alias="champion", version="v1") == 2
    assert _sample(metrics, "churn_api_served_total", alias="champion", version="v2") == 2
