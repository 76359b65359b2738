"""Typed parameters of the training pipeline (``configs/params.yaml``) and its file layout.

`load_params()` reads the YAML that DVC tracks and returns a frozen `PipelineParams`; a missing
or invalid key fails fast with `ParamsError` naming it. `ArtifactPaths` spells the artifact
paths of docs/ARCHITECTURE.md once, relative to a project root. No side effects on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from churn.model_record import record_path

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PARAMS_FILE",
    "ArtifactPaths",
    "DataParams",
    "ModelParams",
    "ParamsError",
    "PipelineParams",
    "SplitParams",
    "load_params",
]

#: The params file, relative to the project root (dvc.yaml names the same file).
DEFAULT_PARAMS_FILE = Path("configs") / "params.yaml"
#: Algorithms a model version may use (scikit-learn class names).
ALGORITHMS: tuple[str, ...] = ("LogisticRegression", "HistGradientBoostingClassifier")


class ParamsError(ValueError):
    """The params file is unreadable, or a key is missing or invalid; the message names it."""


@dataclass(frozen=True)
class DataParams:
    """Where the raw CSV comes from: a user's file (``source``) or the seeded generator."""

    source: str
    n_rows: int
    seed: int


@dataclass(frozen=True)
class SplitParams:
    """The stratified train/test split."""

    test_size: float
    seed: int


@dataclass(frozen=True)
class ModelParams:
    """One model version: its scikit-learn algorithm and hyperparameters."""

    version: str
    algorithm: str
    hyperparameters: Mapping[str, Any]


@dataclass(frozen=True)
class PipelineParams:
    """Every parameter of the pipeline, validated."""

    data: DataParams
    split: SplitParams
    models: Mapping[str, ModelParams]

    def model(self, version: str) -> ModelParams:
        """Return the parameters of ``version``; raise `ParamsError` if it is not configured."""
        try:
            return self.models[version]
        except KeyError:
            raise ParamsError(
                f"models: no model version {version!r}; configured: {', '.join(self.models)}"
            ) from None


@dataclass(frozen=True)
class ArtifactPaths:
    """The pipeline's files under a project root, as listed in docs/ARCHITECTURE.md."""

    root: Path

    @property
    def raw_csv(self) -> Path:
        """The input CSV (generated, or a copy of the user's file)."""
        return self.root / "data" / "raw" / "telco_churn.csv"

    @property
    def processed(self) -> Path:
        """The folder of the split and the fitted preprocessing."""
        return self.root / "data" / "processed"

    @property
    def train_csv(self) -> Path:
        """The training part of the split."""
        return self.processed / "train.csv"

    @property
    def test_csv(self) -> Path:
        """The held-out part of the split."""
        return self.processed / "test.csv"

    @property
    def preprocessor(self) -> Path:
        """The fitted ColumnTransformer (joblib)."""
        return self.processed / "preprocessor.pkl"

    @property
    def label_encoder(self) -> Path:
        """The LabelEncoder fitted on Churn (joblib)."""
        return self.processed / "label_encoder.pkl"

    @property
    def models(self) -> Path:
        """The folder of the models, their metadata and the metrics."""
        return self.root / "models"

    @property
    def metrics(self) -> Path:
        """Held-out metrics of every version."""
        return self.models / "metrics.json"

    def model(self, version: str) -> Path:
        """Return the path of the fitted classifier of ``version`` (joblib)."""
        return self.models / f"model_{version}.pkl"

    def compiled(self, version: str) -> Path:
        """Return the path of the data-only model file of ``version`` (see `churn.export`)."""
        return self.models / f"model_{version}.compiled.json"

    def metadata(self, version: str) -> Path:
        """Return the path of the model record of ``version`` (see `churn.model_record`)."""
        return record_path(self.models, version)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, with forward slashes (as in the metadata)."""
        return path.relative_to(self.root).as_posix()


def _section(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise ParamsError(f"{where}{key}: expected a mapping, got {value!r}")
    return value


def _int(raw: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParamsError(f"{where}{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _parse_model(version: str, raw: Any) -> ModelParams:
    where = f"models.{version}."
    if not isinstance(raw, Mapping):
        raise ParamsError(f"models.{version}: expected a mapping, got {raw!r}")
    algorithm = raw.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ParamsError(f"{where}algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    hyper = raw.get("hyperparameters", {}) or {}
    if not isinstance(hyper, Mapping):
        raise ParamsError(f"{where}hyperparameters: expected a mapping, got {hyper!r}")
    return ModelParams(version=version, algorithm=algorithm, hyperparameters=dict(hyper))


def parse_params(raw: Any, source: str = "params") -> PipelineParams:
    """Validate an already-parsed params mapping (see `load_params`)."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    data = _section(raw, "data", "")
    split = _section(raw, "split", "")
    models = _section(raw, "models", "")
    data_source = data.get("source") or ""
    if not isinstance(data_source, str):
        raise ParamsError(f'data.source: expected a path or "", got {data_source!r}')
    test_size = split.get("test_size")
    if isinstance(test_size, bool) or not isinstance(test_size, int | float):
        raise ParamsError(f"split.test_size: expected a number, got {test_size!r}")
    if not 0.0 < float(test_size) < 1.0:
        raise ParamsError(f"split.test_size: {test_size} must be between 0 and 1")
    if not models:
        raise ParamsError("models: at least one model version is required")
    return PipelineParams(
        data=DataParams(
            source=data_source.strip(),
            n_rows=_int(data, "n_rows", "data.", 10),
            seed=_int(data, "seed", "data.", 0),
        ),
        split=SplitParams(test_size=float(test_size), seed=_int(split, "seed", "split.", 0)),
        models={str(v): _parse_model(str(v), m) for v, m in models.items()},
    )


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> PipelineParams:
    """Read and validate the params file; raise `ParamsError` naming the first bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(raw, str(path))
