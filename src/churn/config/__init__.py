"""The config room: typed settings of the API, parameters of the pipeline, artifact paths.

Built by factories at start, never at import: `load_api_settings()` (``configs/api.yaml``
overridden by environment variables) and `load_params()` (``configs/params.yaml``, DVC's).
Both fail fast with `SettingsError` (`ParamsError` for the params) naming the bad setting.
`ArtifactPaths` and `ModelFiles` (`churn.config.paths`) spell every artifact's path once.
This package imports nothing of the project.

The names load on first use, so that the paths need neither pydantic nor YAML: the model
record, the operations package (run by nox's own Python) and the benchmarks read them too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from churn.config._loading import SettingsError
    from churn.config.api import ENV_VARS, ApiSettings, derive_mlflow_ui_url, load_api_settings
    from churn.config.paths import ArtifactPaths, ModelFiles
    from churn.config.pipeline import (
        ALGORITHMS,
        DEFAULT_PARAMS_FILE,
        DataParams,
        ModelParams,
        ParamsError,
        PipelineParams,
        SplitParams,
        load_params,
        parse_params,
    )

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PARAMS_FILE",
    "ENV_VARS",
    "ApiSettings",
    "ArtifactPaths",
    "DataParams",
    "ModelFiles",
    "ModelParams",
    "ParamsError",
    "PipelineParams",
    "SettingsError",
    "SplitParams",
    "derive_mlflow_ui_url",
    "load_api_settings",
    "load_params",
    "parse_params",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562); the paths come first."""
    for module in ("paths", "_loading", "api", "pipeline") if name in __all__ else ():
        found = getattr(importlib.import_module(f"{__name__}.{module}"), name, None)
        if found is not None:
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
