"""Typed parameters of the training pipeline, read from ``configs/params.yaml`` (DVC's params).

`load_params()` returns a frozen `PipelineParams`; a missing or invalid key fails fast with
`ParamsError` naming it (``data.n_rows``, ``models.v2.algorithm``). Unlike the API settings,
no environment variable changes them: DVC tracks this file, so a run is reproduced from it
alone (``dvc exp run -S <key>=<value>`` changes one for a run). No side effects on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from churn.config._loading import GivenSettings, SettingsError, explain, read_yaml

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PARAMS_FILE",
    "DataParams",
    "ModelParams",
    "ParamsError",
    "PipelineParams",
    "SplitParams",
    "load_params",
    "parse_params",
]

#: The params file, relative to the project root (dvc.yaml names the same file).
DEFAULT_PARAMS_FILE = Path("configs") / "params.yaml"
#: Algorithms a model version may use (scikit-learn class names).
Algorithm = Literal["LogisticRegression", "HistGradientBoostingClassifier"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)


class ParamsError(SettingsError):
    """The params file is unreadable, or a key is missing or invalid; the message names it."""


_FROZEN = ConfigDict(frozen=True, strict=False)


class DataParams(BaseModel):
    """Where the raw CSV comes from: a user's file (``source``) or the seeded generator."""

    model_config = _FROZEN
    source: Annotated[
        str,
        BeforeValidator(lambda v: (v or "").strip() if isinstance(v, str | None) else v),
        Field(json_schema_extra={"expects": 'a path or ""'}),
    ] = ""
    n_rows: Annotated[int, Field(ge=10, strict=True)]
    seed: Annotated[int, Field(ge=0, strict=True)]


class SplitParams(BaseModel):
    """The stratified train/test split."""

    model_config = _FROZEN
    test_size: Annotated[float, Field(gt=0, lt=1)]
    seed: Annotated[int, Field(ge=0, strict=True)]


class ModelParams(BaseModel):
    """One model version: its scikit-learn algorithm and hyperparameters."""

    model_config = _FROZEN
    version: str
    algorithm: Algorithm
    hyperparameters: Annotated[Mapping[str, Any], BeforeValidator(lambda v: v or {})] = {}


def _name_versions(models: Any) -> Any:
    """Give each model its version, the key it is listed under."""
    if not isinstance(models, Mapping):
        return models
    return {
        str(v): {**m, "version": str(v)} if isinstance(m, Mapping) else m for v, m in models.items()
    }


class PipelineParams(GivenSettings):
    """Every parameter of the pipeline, validated. Build it with `load_params` (no env vars)."""

    data: DataParams
    split: SplitParams
    models: Annotated[Mapping[str, ModelParams], BeforeValidator(_name_versions)]

    @model_validator(mode="after")
    def _some_model(self) -> PipelineParams:
        if not self.models:
            raise PydanticCustomError("setting", "models: at least one model version is required")
        return self

    def model(self, version: str) -> ModelParams:
        """Return the parameters of ``version``; raise `ParamsError` if it is not configured."""
        try:
            return self.models[version]
        except KeyError:
            raise ParamsError(
                f"models: no model version {version!r}; configured: {', '.join(self.models)}"
            ) from None


def parse_params(raw: Any, source: str = "params") -> PipelineParams:
    """Validate an already-parsed params mapping (see `load_params`)."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    try:
        return PipelineParams(**raw)
    except ValidationError as exc:
        error = explain(exc, PipelineParams, lambda loc: ".".join(map(str, loc)))
        raise ParamsError(str(error)) from None


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> PipelineParams:
    """Read and validate the params file; raise `ParamsError` naming the first bad key."""
    path = Path(path)
    try:
        raw = read_yaml(PipelineParams, path)
    except SettingsError as exc:
        raise ParamsError(str(exc)) from None
    return parse_params(raw, str(path))
