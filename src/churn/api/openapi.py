"""The OpenAPI 3.0 document of the API, built once from the request contract and the settings.

The Customer component is the JSON schema of the model that validates requests
(`churn.api.contract.Customer`: enums, ranges, numeric-string patterns), in OpenAPI 3.0's
dialect, so tools that fuzz from this document (schemathesis) find it truthful.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from churn import __version__
from churn.api.contract import EXAMPLE_CUSTOMER, Customer
from churn.api.openapi_protocols import (
    EXPLAIN_PARAMETER,
    explanation_schema,
    protocol_paths,
    protocol_schemas,
)
from churn.config import ApiSettings
from churn.schema import ID_COLUMN

__all__ = ["EXAMPLE_CUSTOMER", "build_openapi"]

_DESCRIPTION = """\
Churn prediction for customers described by the columns of the public IBM
"Telco Customer Churn" data set (same names, same category spellings).

**Validation rules** (every problem of a record is reported at once, by field name;
batch fields are named like `instances[3].tenure`):

* Every one of the 19 feature fields is required; `customerID` is optional and echoed back.
  Any other field is rejected by name (a typo like `Tenure` does not pass silently).
* Categorical fields: a string spelled exactly as in the data set (see the enums).
* Numeric fields: a JSON number, or a numeric string as CSV exports write it: digits with an
  optional decimal part (`"29.85"`, `"1"`), no sign, exponent or spaces. `SeniorCitizen`
  (0 or 1) and `tenure` (months) take whole numbers only: `5` and `5.0` pass, `5.5` does not,
  and their strings are digits only. Booleans, `NaN` and `Infinity` are rejected.
* `TotalCharges` may be `null` or a blank string (spaces or tabs), meaning unknown, as the
  raw file has for customers with tenure 0; the model then uses the training median.
* `churn` is `true` when `churn_probability` >= {threshold}.

**Errors** are JSON: `{{"error": {{"code", "message", "details": [{{"field", "problem"}}]}}}}`
with status 400 (malformed JSON), 404 (unknown path or model version), 405 (wrong method),
413 (body over {max_body_bytes} bytes), 415 (not `application/json`) or 422 (invalid
fields, or more than {max_batch} instances in a batch). 503 means the model artifacts failed
verification at start (see `/ready`). Every answer carries an `X-Request-ID` header: the
caller's own when it is 1-128 characters of `A-Z a-z 0-9 . _ : / + = @ -`, else a new one.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class _InOrder(GenerateJsonSchema):
    """pydantic's JSON schema with every object's keys as written (examples read like a record)."""

    def sort(self, value: JsonSchemaValue, parent_key: str | None = None) -> JsonSchemaValue:
        return value


def _openapi30(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a pydantic JSON schema in OpenAPI 3.0's dialect, accepting the same documents.

    pydantic's titles are dropped; ``examples: [x, ...]`` becomes ``example: x``; an
    ``anyOf`` branch ``{"type": "null"}`` becomes ``nullable: true`` on the first typed branch
    (3.0 has no null type, and ``nullable`` needs a ``type`` beside it); a ``null`` default of a
    schema that does not take null is dropped (3.0 wants defaults to fit their schema).
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "properties":
            out[key] = {name: _openapi30(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_openapi30(sub) for sub in value]
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _openapi30(value)
        elif key == "examples" and value:
            out["example"] = value[0]
        else:
            out[key] = value
    if {"type": "null"} in out.get("anyOf", []):
        out["anyOf"] = [branch for branch in out["anyOf"] if branch != {"type": "null"}]
        next(branch for branch in out["anyOf"] if "type" in branch)["nullable"] = True
    if "default" in out and out["default"] is None and not _takes_null(out):
        del out["default"]
    return out


def _takes_null(schema: dict[str, Any]) -> bool:
    return bool(schema.get("nullable")) or any(_takes_null(b) for b in schema.get("anyOf", []))


def _customer_schema() -> dict[str, Any]:
    """Return the Customer component: the contract's model, as OpenAPI 3.0 states it."""
    return _openapi30(Customer.model_json_schema(schema_generator=_InOrder))


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(description: str, schema: dict[str, Any], media: str = "application/json") -> dict:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {media: {"schema": schema}},
    }


def build_openapi(settings: ApiSettings) -> dict[str, Any]:
    """Return the OpenAPI 3.0.3 document for an app built with ``settings``."""
    versions = list(settings.model_versions)
    model_param = {
        "name": "model",
        "in": "query",
        "required": False,
        "description": "Model version; the default is the configured default version.",
        "schema": {"type": "string", "enum": versions, "default": settings.default_model},
    }
    prediction_errors = {
        "400": _error("Malformed JSON or an empty body."),
        "404": _error("Unknown model version; the message lists the available ones."),
        "413": _error("Body over the size limit."),
        "415": _error("Content-Type is not application/json."),
        "422": _error("Invalid fields (`details` names each one), or too many instances."),
        "503": _error("The models are not loaded (artifacts failed verification)."),
    }
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    text = {"type": "string"}
    schemas: dict[str, Any] = {
        "Customer": _customer_schema(),
        "BatchRequest": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch,
                    "items": _ref("Customer"),
                }
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["model", "churn", "churn_probability", "request_id"],
            "properties": {
                "model": text,
                "alias": {
                    "type": ["string", "null"],
                    "description": "The registry alias that served (champion, challenger), if any.",
                },
                "churn": {"type": "boolean"},
                "churn_probability": probability,
                "request_id": text,
                ID_COLUMN: text,
                "explanation": _ref("Explanation"),
            },
        },
        "BatchPrediction": {
            "type": "object",
            "required": ["model", "predictions", "request_id"],
            "properties": {
                "model": text,
                "alias": {
                    "type": ["string", "null"],
                    "description": "The registry alias that served (champion, challenger), if any.",
                },
                "request_id": text,
                "predictions": {
                    "type": "array",
                    "description": "One per instance, in input order.",
                    "items": {
                        "type": "object",
                        "required": ["churn", "churn_probability"],
                        "properties": {
                            "churn": {"type": "boolean"},
                            "churn_probability": probability,
                            ID_COLUMN: text,
                            "explanation": _ref("Explanation"),
                        },
                    },
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": text,
                        "message": text,
                        "details": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "problem"],
                                "properties": {"field": text, "problem": text},
                            },
                        },
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Check": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {
                    "type": "string",
                    "enum": ["ok", "error", "degraded", "pending", "disabled"],
                },
                "reason": text,
            },
        },
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
                "checks": {
                    "type": "object",
                    "required": ["models", "mlflow"],
                    "properties": {"models": _ref("Check"), "mlflow": _ref("Check")},
                },
            },
        },
        "ModelDescription": {
            "type": "object",
            "required": ["version", "algorithm", "metrics", "artifacts"],
            "properties": {
                "version": text,
                "algorithm": text,
                "hyperparameters": {"type": "object"},
                "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                "artifacts": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"path": text, "sha256": text},
                    },
                },
                "training_data_sha256": {"type": "string", "nullable": True},
                "trained_at": {"type": "string", "nullable": True},
                "mlflow_run_id": {"type": "string", "nullable": True},
                "mlflow": {"type": "object"},
                "library_versions": {"type": "object"},
            },
        },
        "Models": {
            "type": "object",
            "required": ["default", "versions", "models", "ready"],
            "properties": {
                "default": text,
                "versions": {"type": "array", "items": text},
                "ready": {"type": "boolean"},
                "reason": text,
                "threshold": probability,
                "models": {
                    "type": "array",
                    "description": "One per served version, in the order of `versions`.",
                    "items": _ref("ModelDescription"),
                },
            },
        },
    }
    schemas["Explanation"] = explanation_schema()
    schemas.update(protocol_schemas(settings.max_batch))
    html = {"type": "string"}
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "summary": "A form for one customer that shows the prediction",
                "tags": ["pages"],
                "responses": {"200": _ok("The page.", html, "text/html")},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness",
                "tags": ["operations"],
                "responses": {"200": _ok("The process answers.", _ref("Health"))},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: models loaded and usable; MLflow reachability",
                "tags": ["operations"],
                "description": "200 when the models are served (`status` is `degraded` when "
                "MLflow is unreachable); 503 when they are not.",
                "responses": {
                    "200": _ok("Ready (possibly degraded).", _ref("Ready")),
                    "503": _ok("Not ready; the models check says why.", _ref("Ready")),
                },
            }
        },
        "/registry/refresh": {
            "post": {
                "summary": "Look at the registry aliases now (registry mode)",
                "tags": ["operations"],
                "description": "Needs `Authorization: Bearer <CHURN_REGISTRY_TOKEN>`; off (404) "
                "unless CHURN_MODEL_SOURCE=registry and the token is set.",
                "responses": {
                    "202": _ok("The watcher will look now.", {"type": "object"}),
                    "401": _error("No bearer token."),
                    "403": _error("Wrong token."),
                    "404": _error("Notifications are off."),
                },
            }
        },
        "/models": {
            "get": {
                "summary": "The served model versions, the default one, and their metadata",
                "tags": ["models"],
                "responses": {"200": _ok("The models.", _ref("Models"))},
            }
        },
        "/predict": {
            "post": {
                "summary": "Predict churn for one customer",
                "tags": ["predictions"],
                "parameters": [model_param, EXPLAIN_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Customer")}},
                },
                "responses": {
                    "200": _ok("The prediction.", _ref("Prediction")),
                    **prediction_errors,
                },
            }
        },
        "/predict/batch": {
            "post": {
                "summary": f"Predict churn for up to {settings.max_batch} customers",
                "tags": ["predictions"],
                "parameters": [model_param, EXPLAIN_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchRequest")}},
                },
                "responses": {
                    "200": _ok("Predictions in input order.", _ref("BatchPrediction")),
                    **prediction_errors,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["docs"],
                "responses": {"200": _ok("OpenAPI 3.0 document.", {"type": "object"})},
            }
        },
        "/docs": {
            "get": {
                "summary": "Interactive API docs (Swagger UI, served by the app itself)",
                "tags": ["docs"],
                "responses": {"200": _ok("The docs page.", html, "text/html")},
            }
        },
        "/monitoring/drift": {
            "get": {
                "summary": "Drift of one model version's inputs and scores (bin counts and PSI)",
                "tags": ["operations"],
                "description": "The training shares of each bin of every input column and of "
                "the churn probability, and the counts and PSI of the last closed and the open "
                "window of served records (docs/monitoring.md). No record is stored.",
                "parameters": [model_param],
                "responses": {
                    "200": _ok("Reference shares, window counts and PSI.", {"type": "object"}),
                    "404": _error("Unknown model version, or no reference to compare with."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "responses": {"200": _ok("Prometheus text exposition format.", html, "text/plain")},
            }
        },
    }
    paths.update(protocol_paths(versions, settings.default_model))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Churn prediction API",
            "version": __version__,
            "description": _DESCRIPTION.format(
                threshold=settings.threshold,
                max_body_bytes=settings.max_body_bytes,
                max_batch=settings.max_batch,
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": {
                "RequestId": {
                    "description": "The request id (the caller's X-Request-ID when sane).",
                    "schema": {"type": "string"},
                }
            },
        },
    }
