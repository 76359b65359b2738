"""The page at /, the docs at /docs, and the OpenAPI document: complete, local, truthful."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, NUMERIC

RecordFactory = Callable[..., list[dict[str, object]]]


class PageParser(HTMLParser):
    """Collects form controls, their options, labels and every referenced URL."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, Any]] = {}
        self.labels: set[str] = set()
        self.urls: list[str] = []
        self.ids: list[str] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        for key in ("href", "src", "action"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if tag in ("select", "input") and a.get("name"):
            self.controls[str(a["name"])] = {"tag": tag, "attrs": a, "options": []}
            self._select = str(a["name"]) if tag == "select" else None
        elif tag == "option" and self._select:
            self.controls[self._select]["options"].append((a.get("value"), "selected" in a))
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def test_page_has_a_labelled_control_for_every_field(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = parse(response.get_data(as_text=True))
    assert set(FEATURE_COLUMNS) | {"model"} == set(page.controls)
    for name in FEATURE_COLUMNS:
        control = page.controls[name]
        assert control["attrs"]["id"] in page.labels, name
        if name in CATEGORICAL:
            values = [v for v, _ in control["options"]]
            assert values == list(CATEGORICAL[name])
            selected = [v for v, s in control["options"] if s]
            assert selected == [EXAMPLE_CUSTOMER[name]]
    for name, spec in NUMERIC.items():
        control = page.controls[name]
        if control["tag"] == "input":
            assert float(control["attrs"]["min"]) == spec.minimum
            assert float(control["attrs"]["max"]) == spec.maximum
            assert ("required" in control["attrs"]) is (not spec.nullable)
    assert [v for v, _ in page.controls["model"]["options"]] == ["v1", "v2"]
    assert [v for v, s in page.controls["model"]["options"] if s] == ["v2"]
    assert len(page.ids) == len(set(page.ids)), "duplicate element ids"


def test_page_and_docs_use_only_local_assets(client: FlaskClient) -> None:
    for path in ("/", "/docs"):
        response = client.get(path)
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        page = parse(response.get_data(as_text=True))
        assets = [u for u in page.urls if not u.startswith(("http://localhost", "#"))]
        for url in assets:
            assert not re.match(r"^(https?:)?//", url), f"{path} links outside: {url}"
            asset = client.get("/" + url.lstrip("/").split("?")[0])
            assert asset.status_code == 200, url
    docs_js = client.get("/static/docs.js").get_data(as_text=True)
    assert "validatorUrl: null" in docs_js
    assert client.get("/docs/assets/swagger-ui-bundle.js").mimetype in (
        "text/javascript",
        "application/javascript",
    )


def test_page_links_to_docs_and_the_mlflow_ui(make_app: Callable[..., Flask]) -> None:
    plain = parse(make_app().test_client().get("/").get_data(as_text=True))
    assert "/docs" in plain.urls and not any("5001" in u for u in plain.urls)
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_PORT": "5001"}
    linked = make_app(env=env, stats_interval=3600).test_client().get("/")
    html = linked.get_data(as_text=True)
    assert 'href="http://localhost:5001"' in html and 'data-derived="true"' in html
    explicit = make_app(env={"MLFLOW_UI_URL": "https://mlflow.example.org"}).test_client()
    html = explicit.get("/").get_data(as_text=True)
    assert 'href="https://mlflow.example.org"' in html and 'data-derived="false"' in html


def test_page_shows_why_models_are_unavailable(
    make_app: Callable[..., Flask], tmp_path: Any
) -> None:
    html = make_app(root=str(tmp_path)).test_client().get("/").get_data(as_text=True)
    assert 'role="alert"' in html and "missing" in html


# -- the OpenAPI document ----------------------------------------------------------------------


def _resolved(document: dict[str, Any], node: Any) -> Any:
    """Inline $refs and turn OpenAPI 3.0 `nullable` into JSON-schema null types."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolved(document, target)
        out = {
            k: _resolved(document, v) for k, v in node.items() if k not in ("nullable", "example")
        }
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_resolved(document, item) for item in node]
    return node


@pytest.fixture
def openapi(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _schema(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    return _resolved(openapi, openapi["components"]["schemas"][name])


def test_openapi_documents_every_route(app: Flask, openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.0")
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if not rule.rule.startswith(("/static", "/docs/assets"))
    }
    documented = {(path, method) for path, ops in openapi["paths"].items() for method in ops}
    assert routes == documented
    for path in ("/predict", "/predict/batch"):
        responses = openapi["paths"][path]["post"]["responses"]
        assert {"200", "400", "404", "413", "415", "422", "503"} <= set(responses)


def test_customer_schema_states_the_schema_enums(openapi: dict[str, Any]) -> None:
    customer = openapi["components"]["schemas"]["Customer"]
    assert customer["required"] == list(FEATURE_COLUMNS)
    assert customer["additionalProperties"] is False
    for name, values in CATEGORICAL.items():
        assert customer["properties"][name]["enum"] == list(values)


def test_customer_schema_and_validator_agree(
    client: FlaskClient, openapi: dict[str, Any], make_records: RecordFactory
) -> None:
    validator = jsonschema.Draft4Validator(_schema(openapi, "Customer"))
    good = make_records(30, seed=4, null_total_rate=0.3)
    good += [
        {**EXAMPLE_CUSTOMER, "tenure": "12", "MonthlyCharges": "70.35", "TotalCharges": " "},
        {**EXAMPLE_CUSTOMER, "SeniorCitizen": "1", "TotalCharges": "", "customerID": "a"},
        {**EXAMPLE_CUSTOMER, "tenure": 7.0, "TotalCharges": "0100.50"},
    ]
    bad = [
        {**EXAMPLE_CUSTOMER, "tenure": "1.5"},
        {**EXAMPLE_CUSTOMER, "tenure": 1201},
        {**EXAMPLE_CUSTOMER, "tenure": 2.5},
        {**EXAMPLE_CUSTOMER, "SeniorCitizen": True},
        {**EXAMPLE_CUSTOMER, "MonthlyCharges": "100000.5"},
        {**EXAMPLE_CUSTOMER, "MonthlyCharges": None},
        {**EXAMPLE_CUSTOMER, "TotalCharges": "-1"},
        {**EXAMPLE_CUSTOMER, "gender": "male"},
        {**EXAMPLE_CUSTOMER, "extra": 1},
        {**EXAMPLE_CUSTOMER, "customerID": "x" * 129},
        {k: v for k, v in EXAMPLE_CUSTOMER.items() if k != "tenure"},
    ]
    for record in good:
        assert validator.is_valid(record), record
        assert client.post("/predict", json=record).status_code == 200, record
    for record in bad:
        assert not validator.is_valid(record), record
        assert client.post("/predict", json=record).status_code == 422, record


def test_answers_conform_to_their_response_schemas(
    client: FlaskClient, openapi: dict[str, Any]
) -> None:
    def conforms(response: Any, path: str, method: str = "get") -> None:
        spec = openapi["paths"][path][method]["responses"][str(response.status_code)]
        schema = _resolved(openapi, spec["content"]["application/json"]["schema"])
        jsonschema.Draft4Validator(schema).validate(response.get_json())

    conforms(client.get("/health"), "/health")
    conforms(client.get("/ready"), "/ready")
    conforms(client.get("/models"), "/models")
    customer = {**EXAMPLE_CUSTOMER, "customerID": "c-1"}
    conforms(client.post("/predict", json=customer), "/predict", "post")
    conforms(client.post("/predict", json={}), "/predict", "post")
    conforms(client.post("/predict?model=v0", json=customer), "/predict", "post")
    batch = {"instances": [customer, EXAMPLE_CUSTOMER]}
    conforms(client.post("/predict/batch", json=batch), "/predict/batch", "post")
    conforms(
        client.post("/predict/batch", data="x", content_type="text/plain"), "/predict/batch", "post"
    )


def test_openapi_document_is_a_fresh_copy_per_app(make_app: Callable[..., Flask]) -> None:
    small = make_app(max_batch=5).test_client().get("/openapi.json").get_json()
    batch = copy.deepcopy(small["components"]["schemas"]["BatchRequest"])
    assert batch["properties"]["instances"]["maxItems"] == 5
    assert "5 instances" in small["info"]["description"]
