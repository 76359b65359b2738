"""The OpenAPI description of the protocol paths: ``/v2/...``, ``/invocations``, explanations.

Merged into the document of `churn.api.openapi`. Request schemas are as exact as OpenAPI 3.0
allows: what it cannot state (every one of the 19 inputs present once, equal row counts, a
``dataframe_split`` row as long as its columns) is in the descriptions, and such requests get
a 400 in the protocol's error shape.
"""

from __future__ import annotations

from typing import Any

from churn.api.explanations import FLAG_VALUES
from churn.api.v2 import INPUT_TYPES, MODEL_NAME, NUMERIC_DTYPES, OUTPUTS
from churn.schema import FEATURE_COLUMNS

__all__ = ["EXPLAIN_PARAMETER", "explanation_schema", "protocol_paths", "protocol_schemas"]

EXPLAIN_PARAMETER: dict[str, Any] = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": "`true` (or `1`) adds each column's contribution to the churn log-odds.",
    "schema": {"type": "string", "enum": list(FLAG_VALUES), "default": "false"},
}
_TEXT = {"type": "string"}
_BOOL = {"type": "boolean"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def explanation_schema() -> dict[str, Any]:
    """Return the schema of one prediction's explanation."""
    return {
        "type": "object",
        "description": "Contributions to the churn log-odds: base_value plus the sum of the "
        "contributions is log_odds. Exact for the logistic regression (weight x encoded "
        "value); path-dependent TreeSHAP for the gradient-boosted trees.",
        "required": ["base_value", "log_odds", "contributions"],
        "properties": {
            "base_value": {"type": "number"},
            "log_odds": {"type": "number"},
            "contributions": {
                "type": "object",
                "required": list(FEATURE_COLUMNS),
                "properties": {c: {"type": "number"} for c in FEATURE_COLUMNS},
            },
        },
    }


def _json(description: str, schema: dict[str, Any], media: str = "application/json") -> dict:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {media: {"schema": schema}},
    }


def _empty(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
    }


def protocol_schemas(max_batch: int) -> dict[str, Any]:
    """Return the component schemas of the protocol paths."""
    tensor_inputs = [
        {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": {"type": "string", "enum": [c]},
                "datatype": {
                    "type": "string",
                    "enum": ["BYTES"] if INPUT_TYPES[c] == "BYTES" else list(NUMERIC_DTYPES),
                },
                "shape": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {"type": "integer", "minimum": 0, "maximum": max_batch},
                },
                "data": {"type": "array"},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                },
            },
        }
        for c in FEATURE_COLUMNS
    ]
    return {
        "V2Error": {"type": "object", "required": ["error"], "properties": {"error": _TEXT}},
        "V2ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": _TEXT,
                "version": _TEXT,
                "extensions": {"type": "array", "items": _TEXT},
            },
        },
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": _TEXT,
                "versions": {"type": "array", "items": _TEXT},
                "platform": _TEXT,
                "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            },
        },
        "V2TensorMetadata": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": _TEXT,
                "datatype": _TEXT,
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "V2InferRequest": {
            "type": "object",
            "description": "One input per Telco column (all 19, each once, the same row count; "
            "`data` one value per row: strings for BYTES, numbers otherwise; TotalCharges may "
            "be null). With the binary tensor data extension, the JSON is followed by the "
            "tensors' bytes and its length is in the Inference-Header-Content-Length header.",
            "required": ["inputs"],
            "properties": {
                "id": _TEXT,
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": _BOOL, "explain": _BOOL},
                },
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"oneOf": tensor_inputs},
                },
                "outputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "enum": list(OUTPUTS)},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data": _BOOL},
                            },
                        },
                    },
                },
            },
        },
        "V2InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": _TEXT,
                "model_version": _TEXT,
                "id": _TEXT,
                "parameters": {
                    "type": "object",
                    "description": "alias: the registry alias of the version that answered",
                    "properties": {"alias": _TEXT},
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "datatype", "shape"],
                        "properties": {
                            "name": {"type": "string", "enum": list(OUTPUTS)},
                            "datatype": _TEXT,
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "data": {"type": "array"},
                            "parameters": {"type": "object"},
                        },
                    },
                },
            },
        },
        "MlflowRequest": {
            "type": "object",
            "description": "Exactly one of dataframe_records or instances (rows), or "
            "dataframe_split ({columns, data}) or inputs (rows, or {column: [values]}), "
            "as `mlflow models serve` accepts them; `params` is accepted and ignored.",
            "minProperties": 1,
            "maxProperties": 2,
            "properties": {
                "dataframe_records": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_batch,
                    "items": _ref("Customer"),
                },
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_batch,
                    "items": _ref("Customer"),
                },
                "dataframe_split": {
                    "type": "object",
                    "required": ["columns", "data"],
                    "properties": {
                        "columns": {"type": "array", "items": _TEXT},
                        "data": {"type": "array", "items": {"type": "array"}},
                        "index": {"type": "array"},
                    },
                },
                "inputs": {"oneOf": [{"type": "array"}, {"type": "object"}]},
                "params": {"type": "object"},
            },
        },
        "MlflowPredictions": {
            "type": "object",
            "required": ["predictions"],
            "properties": {
                "predictions": {
                    "type": "array",
                    "description": "[P(No), P(Yes)] per row, in input order.",
                    "items": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                }
            },
        },
        "MlflowError": {
            "type": "object",
            "required": ["error_code", "message"],
            "properties": {"error_code": _TEXT, "message": _TEXT},
        },
    }


def protocol_paths(versions: list[str], default: str) -> dict[str, Any]:
    """Return the path items of the Open Inference Protocol and MLflow scoring paths."""
    v2_error = {"content": {"application/json": {"schema": _ref("V2Error")}}}
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": f"The model's name: `{MODEL_NAME}`.",
        "schema": {"type": "string", "enum": [MODEL_NAME]},
    }
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": versions},
    }

    def v2_errors(*statuses: str) -> dict[str, Any]:
        reasons = {
            "400": "Bad request; the message names the input and the row.",
            "404": "Unknown model or version.",
            "413": "Body over the size limit.",
            "503": "The models are not loaded.",
        }
        return {s: {"description": reasons[s], **v2_error} for s in statuses}

    def metadata(params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": "Model metadata: inputs (one per Telco column) and outputs",
                "tags": ["open inference protocol"],
                "parameters": params,
                "responses": {
                    "200": _json("The metadata.", _ref("V2ModelMetadata")),
                    **v2_errors("404"),
                },
            }
        }

    def ready(params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": "Model readiness (empty body)",
                "tags": ["open inference protocol"],
                "parameters": params,
                "responses": {
                    "200": _empty("Ready."),
                    "400": _empty("Not ready."),
                    **v2_errors("404"),
                },
            }
        }

    def infer(params: list[dict[str, Any]], which: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": f"Inference with {which}",
                "tags": ["open inference protocol"],
                "parameters": [*params, EXPLAIN_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("V2InferRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "Outputs: churn_probability and churn by default; "
                        "contributions ([n, 19], columns in input order) and base_value when "
                        "asked for. Binary outputs follow the JSON (binary tensor extension).",
                        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                        "content": {
                            "application/json": {"schema": _ref("V2InferResponse")},
                            "application/octet-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **v2_errors("400", "404", "413", "503"),
                },
            }
        }

    mlflow_error = {"content": {"application/json": {"schema": _ref("MlflowError")}}}
    tag = "open inference protocol"
    return {
        "/v2": {
            "get": {
                "summary": "Server metadata",
                "tags": [tag],
                "responses": {"200": _json("Name, version, extensions.", _ref("V2ServerMetadata"))},
            }
        },
        "/v2/health/live": {
            "get": {
                "summary": "Server liveness (empty body)",
                "tags": [tag],
                "responses": {"200": _empty("Live.")},
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Server readiness (empty body)",
                "tags": [tag],
                "responses": {"200": _empty("Ready."), "400": _empty("Not ready.")},
            }
        },
        "/v2/models/{name}": metadata([name]),
        "/v2/models/{name}/versions/{version}": metadata([name, version]),
        "/v2/models/{name}/ready": ready([name]),
        "/v2/models/{name}/versions/{version}/ready": ready([name, version]),
        "/v2/models/{name}/infer": infer([name], f"the default version ({default})"),
        "/v2/models/{name}/versions/{version}/infer": infer([name, version], "one version"),
        "/invocations": {
            "post": {
                "summary": "MLflow scoring protocol: score a table of customers",
                "tags": ["mlflow scoring protocol"],
                "parameters": [
                    {
                        "name": "model",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": versions, "default": default},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("MlflowRequest")},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": _json(
                        "Predictions, as mlflow models serve answers.", _ref("MlflowPredictions")
                    ),
                    **{
                        s: {"description": d, **mlflow_error}
                        for s, d in [
                            ("400", "Bad table; the message names the row and column."),
                            ("404", "Unknown model version."),
                            ("413", "Body over the size limit."),
                            ("415", "Neither application/json nor text/csv (UTF-8)."),
                            ("503", "The models are not loaded."),
                        ]
                    },
                },
            }
        },
        "/ping": {
            "get": {
                "summary": "MLflow scoring protocol: 200 when the models are loaded",
                "tags": ["mlflow scoring protocol"],
                "responses": {"200": _empty("Loaded."), "404": _empty("Not loaded.")},
            }
        },
        "/version": {
            "get": {
                "summary": "MLflow scoring protocol: the MLflow version of the models",
                "tags": ["mlflow scoring protocol"],
                "responses": {"200": _json("The version.", _TEXT, "text/plain")},
            }
        },
    }
