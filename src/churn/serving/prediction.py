"""The serving core's face: load and verify the trained artifacts, then score validated records.

`ServingModels.load(root)` reads ``models/model_vN.json`` for each version (the record,
`churn.model_record`), checks the sha256 of the version's data-only model file against it
and builds plain-numpy scorers from that file (`churn.serving.compiled`); no pickle is read
and scikit-learn is not imported. `ServingModels.from_sources` does the same from bytes read
elsewhere (a registry download). `ServingModels.predict_proba` then turns already-validated customer
records (mappings with the 19 feature columns of `churn.schema`) into churn probabilities
equal to scikit-learn's ``model.predict_proba(preprocessor.transform(frame))`` within 1e-9;
`ServingModels.predict` returns them as a `Prediction`, with the verdict at the churn threshold
(the one place the threshold is applied), the version and the alias that answered.

This module knows nothing of HTTP and imports neither pandas, scikit-learn nor MLflow.
Loaded models are read-only, so one `ServingModels` can be shared by every server thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from churn.model_record import SERVING_ARTIFACT, ModelRecord, RunRecord, describe, sha256_bytes
from churn.serving.artifacts import ArtifactError, read_records, read_verified, verify_artifact
from churn.serving.compiled import load_compiled
from churn.serving.explain import Explainer, Explanation, explainer_for
from churn.serving.scorers import Scorer

__all__ = [
    "ArtifactError",
    "ExplanationUnavailableError",
    "Explanation",
    "ModelInfo",
    "Prediction",
    "ServingModels",
    "UnknownVersionError",
    "verify_artifact",
]


class UnknownVersionError(KeyError):
    """The requested model version is not one of those loaded (a ``KeyError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model version"


class ExplanationUnavailableError(LookupError):
    """The model version has no explainer."""


@dataclass(frozen=True)
class ModelInfo:
    """A served model version.

    Attributes:
        version: "v1", "v2", ...
        record: its model record (``models/model_<version>.json``).
        run: its run record (MLflow run, training time...), None when unknown.
        engine: how it is evaluated: "numpy-linear" or "numpy-trees".

    """

    version: str
    record: ModelRecord
    run: RunRecord | None = None
    engine: str = ""

    @property
    def metadata(self) -> dict[str, Any]:
        """The record and its run as one mapping (`churn.model_record.describe`)."""
        return describe(self.record, self.run)


@dataclass(slots=True)
class Prediction:
    """One scoring of validated records, never changed once built; answers and metrics read it.

    Attributes:
        version: the model version that scored.
        alias: the registry alias it answered under (``champion``...), or None.
        records: the validated records scored, in order (not copied).
        probabilities: each record's churn probability, float64.
        churn: each record's verdict, ``probabilities >= threshold`` (numpy bools).

    """

    version: str
    alias: str | None
    records: Sequence[Mapping[str, object]]
    probabilities: np.ndarray
    churn: np.ndarray

    @property
    def label(self) -> str:
        """``version.alias`` (``v2.champion``), or the version when it has no alias."""
        return f"{self.version}.{self.alias}" if self.alias else self.version


@dataclass(frozen=True)
class _Served:
    info: ModelInfo
    scorer: Scorer
    explainer: Explainer | None = None


class ServingModels:
    """Every served model version, verified, loaded and compiled once; safe to share."""

    def __init__(self, served: Mapping[str, _Served]) -> None:
        self._served = dict(served)
        #: the served versions, in the order they were requested
        self.versions: tuple[str, ...] = tuple(served)

    @classmethod
    def load(cls, root: Path, versions: Sequence[str] = ("v1", "v2")) -> ServingModels:
        """Verify and load the data-only model files of ``versions`` under the project ``root``.

        Reads each version's record (``models/model_<v>.json``) and run record, then its
        ``compiled`` artifact (path relative to ``root``), checked against the record's sha256
        before it is parsed. No pickle is read.

        Raises:
            ArtifactError: a record or model file is missing, unreadable, of the wrong type
                or fails its sha256 check (one line naming the file and the reason).

        """
        root = Path(root)
        if isinstance(versions, str) or not versions:
            raise ArtifactError(f"{root}: no model versions requested ({versions!r})")
        sources: dict[str, tuple[ModelRecord, RunRecord | None, bytes, str]] = {}
        for version in versions:
            record, run = read_records(root, version)
            path = root / record.artifact(SERVING_ARTIFACT).path
            data = read_verified(path, record.artifact(SERVING_ARTIFACT).sha256)
            sources[version] = (record, run, data, str(path))
        return cls.from_sources(sources)

    @classmethod
    def from_sources(
        cls, sources: Mapping[str, tuple[ModelRecord, RunRecord | None, bytes, str]]
    ) -> ServingModels:
        """Build the served versions from model file bytes, wherever they were read from.

        ``sources`` maps each version to its record, its run record (or None), the bytes of
        its data-only model file and a name for messages (a path or URI). The bytes are
        checked against the record's ``compiled`` sha256 here too.

        Raises:
            ArtifactError: the bytes fail their sha256 check or are not a valid model file.

        """
        served: dict[str, _Served] = {}
        for version, (record, run, data, source) in sources.items():
            expected = record.artifact(SERVING_ARTIFACT).sha256
            if sha256_bytes(data) != expected:
                raise ArtifactError(
                    f"{source}: sha256 mismatch (record says {expected}, "
                    f"file has {sha256_bytes(data)})"
                )
            scorer = load_compiled(data, source)
            info = ModelInfo(version, record, run, scorer.engine)
            served[version] = _Served(info, scorer, explainer_for(scorer))
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

    def predict(
        self,
        version: str,
        records: Sequence[Mapping[str, object]],
        threshold: float,
        alias: str | None = None,
    ) -> Prediction:
        """Score validated ``records`` with ``version`` and judge each at ``threshold``.

        Records are as for `predict_proba`; ``alias`` only labels the result.

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.

        """
        probabilities = self.predict_proba(version, records)
        return Prediction(version, alias, records, probabilities, probabilities >= threshold)

    def explain(self, version: str, records: Sequence[Mapping[str, object]]) -> Explanation:
        """Return each validated record's contributions to the churn log-odds, per column.

        Records are as for `predict_proba`. See `churn.serving.explain`.

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.
            ExplanationUnavailableError: the version's model has no explainer (a tree model
                file without node counts).

        """
        explainer = self._get(version).explainer
        if explainer is None:
            raise ExplanationUnavailableError(f"model {version} has no explainer")
        return Explanation(explainer.base_value, explainer.contributions(records))
