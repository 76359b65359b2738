"""Serving core: load and verify the trained artifacts, then score validated customer records.

`ServingModels.load(root)` reads ``models/model_vN.json`` for each version, checks each
artifact's sha256 against that record *before* unpickling it, and compiles the fitted
preprocessor and model into plain numpy once (see `churn.serving.features` and
`churn.serving.scorers`). `ServingModels.predict_proba` then turns already-validated customer
records (mappings with the 19 feature columns of `churn.schema`) into churn probabilities
equal to scikit-learn's ``model.predict_proba(preprocessor.transform(frame))`` within 1e-9.

This module knows nothing of HTTP and imports neither pandas nor MLflow. Loaded models are
read-only, so one `ServingModels` can be shared by every server thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from churn.model_record import ModelRecord, RunRecord, describe
from churn.schema import TARGET_CLASSES
from churn.serving.artifacts import ArtifactError, load_verified, read_records, verify_artifact
from churn.serving.features import CompiledPreprocessor
from churn.serving.scorers import Scorer, compile_model

__all__ = [
    "ArtifactError",
    "ModelInfo",
    "ServingModels",
    "UnknownVersionError",
    "verify_artifact",
]

#: The class whose probability is returned ("Yes": the customer churns).
POSITIVE_CLASS: str = TARGET_CLASSES[1]


class UnknownVersionError(KeyError):
    """The requested model version is not one of those loaded (a ``KeyError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model version"


@dataclass(frozen=True)
class ModelInfo:
    """A served model version.

    Attributes:
        version: "v1", "v2", ...
        record: its model record (``models/model_<version>.json``).
        run: its run record (MLflow run, training time...), None when unknown.
        engine: how it is evaluated: "numpy-linear", "numpy-trees" or "sklearn-estimator".

    """

    version: str
    record: ModelRecord
    run: RunRecord | None = None
    engine: str = ""

    @property
    def metadata(self) -> dict[str, Any]:
        """The record and its run as one mapping (`churn.model_record.describe`)."""
        return describe(self.record, self.run)


@dataclass(frozen=True)
class _Served:
    info: ModelInfo
    scorer: Scorer


class ServingModels:
    """Every served model version, verified, loaded and compiled once; safe to share."""

    def __init__(self, served: Mapping[str, _Served]) -> None:
        self._served = dict(served)
        #: the served versions, in the order they were requested
        self.versions: tuple[str, ...] = tuple(served)

    @classmethod
    def load(cls, root: Path, versions: Sequence[str] = ("v1", "v2")) -> ServingModels:
        """Verify, load and compile the artifacts of ``versions`` under the project ``root``.

        Artifact paths in the metadata are relative to ``root``. An artifact shared by
        several versions (the preprocessor) is read and unpickled once.

        Raises:
            ArtifactError: a metadata record or artifact is missing, unreadable, of the wrong
                type or fails its sha256 check (one line naming the file and the reason).
                Nothing is unpickled before its check.

        """
        root = Path(root)
        if isinstance(versions, str) or not versions:
            raise ArtifactError(f"{root}: no model versions requested ({versions!r})")
        loaded: dict[tuple[Path, str], object] = {}
        compiled: dict[tuple[Path, str], CompiledPreprocessor] = {}

        def load(kind: str, record: ModelRecord) -> tuple[Path, tuple[Path, str], object]:
            entry = record.artifact(kind)
            path = root / entry.path
            key = (path, entry.sha256)
            if key not in loaded:
                loaded[key] = load_verified(path, entry.sha256)
            return path, key, loaded[key]

        served: dict[str, _Served] = {}
        for version in versions:
            record, run = read_records(root, version)
            model_path, _, model = load("model", record)
            pre_path, pre_key, preprocessor = load("preprocessor", record)
            encoder_path, _, encoder = load("label_encoder", record)
            if pre_key not in compiled:
                compiled[pre_key] = CompiledPreprocessor.from_fitted(preprocessor, pre_path)
            pre = compiled[pre_key]
            positive = _positive_column(model, model_path, encoder, encoder_path, pre)
            scorer = compile_model(model, pre, positive)
            served[version] = _Served(ModelInfo(version, record, run, scorer.engine), scorer)
        return cls(served)

    def _get(self, version: str) -> _Served:
        try:
            return self._served[version]
        except (KeyError, TypeError):
            available = ", ".join(self.versions)
            raise UnknownVersionError(
                f"unknown model version {version!r}; available: {available}"
            ) from None

    def info(self, version: str) -> ModelInfo:
        """Return the version, metadata record and evaluation engine of a served model.

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.

        """
        return self._get(version).info

    def predict_proba(self, version: str, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Return the churn probability of each validated record, in order, as float64.

        Each record maps every feature column of `churn.schema` to its value: categorical
        values are strings (one outside the fitted categories counts as none of them, as
        ``handle_unknown="ignore"``), ``SeniorCitizen``/``tenure`` ints, ``MonthlyCharges`` a
        float, ``TotalCharges`` a float or ``None`` (imputed with the training median).
        Extra keys (``customerID``) are ignored.

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.

        """
        scorer = self._get(version).scorer
        if len(records) == 0:
            return np.empty(0, dtype=np.float64)
        return scorer.proba(records)


def _positive_column(
    model: object,
    model_path: Path,
    encoder: object,
    encoder_path: Path,
    preprocessor: CompiledPreprocessor,
) -> int:
    """Return the column of ``model.predict_proba`` that holds the positive class.

    Raises:
        ArtifactError: the encoder or model is not what the metadata promises.

    """
    classes = [str(c) for c in getattr(encoder, "classes_", [])]
    if not callable(getattr(encoder, "transform", None)) or POSITIVE_CLASS not in classes:
        raise ArtifactError(
            f"{encoder_path}: wrong type (expected a fitted LabelEncoder with class "
            f"{POSITIVE_CLASS!r}, got {type(encoder).__name__})"
        )
    code = classes.index(POSITIVE_CLASS)
    model_classes = getattr(model, "classes_", None)
    if not callable(getattr(model, "predict_proba", None)) or model_classes is None:
        raise ArtifactError(
            f"{model_path}: wrong type (expected a fitted classifier, got {type(model).__name__})"
        )
    model_classes = [int(c) if isinstance(c, np.integer) else c for c in model_classes]
    if len(model_classes) != 2 or code not in model_classes:
        raise ArtifactError(
            f"{model_path}: wrong type (its classes {model_classes!r} are not the label "
            f"encoder's codes)"
        )
    n_in = getattr(model, "n_features_in_", preprocessor.n_features)
    if n_in != preprocessor.n_features:
        raise ArtifactError(
            f"{model_path}: wrong type (the model expects {n_in} features, the preprocessor "
            f"makes {preprocessor.n_features})"
        )
    return model_classes.index(code)
