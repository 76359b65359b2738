"""Serving core: load and verify the trained artifacts, then score validated customer records.

`ServingModels.load(root)` reads ``models/model_vN.json`` for each version, checks every
artifact's sha256 against that record *before* unpickling it, and compiles the fitted
preprocessor into plain numpy. `ServingModels.predict_proba` turns already-validated customer
records (mappings with the 19 feature columns of `churn.schema`) into churn probabilities.

This module knows nothing of HTTP and never imports pandas or MLflow.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from churn.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET_CLASSES

__all__ = [
    "ArtifactError",
    "ModelInfo",
    "ServingModels",
    "UnknownVersionError",
    "verify_artifact",
]

#: The artifacts each metadata record must list, in the order they are checked.
ARTIFACT_KINDS: tuple[str, ...] = ("model", "preprocessor", "label_encoder")
#: The positive class: the probability returned is the probability of this label.
POSITIVE_CLASS: str = TARGET_CLASSES[1]


class ArtifactError(Exception):
    """An artifact is missing, unreadable, of the wrong type or fails its sha256 check.

    The message is one line naming the file and the reason.
    """


class UnknownVersionError(KeyError):
    """The requested model version is not one of those loaded."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model version"


@dataclass(frozen=True)
class ModelInfo:
    """A served model version and its metadata record (the ``models/model_vN.json`` content)."""

    version: str
    metadata: dict[str, Any]


def sha256_of(data: bytes) -> str:
    """Return the hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _read_verified(path: Path, expected_sha256: str) -> bytes:
    """Read ``path`` and return its bytes if their sha256 equals ``expected_sha256``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable ({exc.strerror or exc})") from None
    actual = sha256_of(data)
    if actual != str(expected_sha256).lower():
        raise ArtifactError(
            f"{path}: sha256 mismatch (metadata says {expected_sha256}, file has {actual})"
        )
    return data


def verify_artifact(path: Path, expected_sha256: str) -> None:
    """Check that ``path`` exists and its sha256 equals ``expected_sha256``.

    Raises:
        ArtifactError: the file is missing, unreadable or its digest differs.

    """
    _read_verified(Path(path), expected_sha256)


def _load_verified(path: Path, expected_sha256: str) -> object:
    """Verify ``path`` and unpickle exactly the bytes that were verified."""
    data = _read_verified(path, expected_sha256)
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # any unpickling failure means "unreadable"
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ArtifactError(f"{path}: unreadable ({reason})") from None


def _read_metadata(root: Path, version: str) -> dict[str, Any]:
    """Read and check the shape of ``models/model_<version>.json``."""
    path = root / "models" / f"model_{version}.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (metadata of model {version})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0]
        raise ArtifactError(f"{path}: unreadable ({reason})") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: wrong type (expected a JSON object)")
    if metadata.get("version") != version:
        raise ArtifactError(
            f"{path}: wrong version (expected {version!r}, found {metadata.get('version')!r})"
        )
    artifacts = metadata.get("artifacts")
    for kind in ARTIFACT_KINDS:
        entry = artifacts.get(kind) if isinstance(artifacts, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
        ):
            raise ArtifactError(f"{path}: incomplete (no artifacts.{kind}.path and .sha256)")
    return metadata


# --------------------------------------------------------------------------------------------
# Compiled preprocessor
# --------------------------------------------------------------------------------------------


class CompiledPreprocessor:
    """The fitted ``ColumnTransformer`` folded into numpy arrays and dict lookups.

    Output columns are in the transformer's order: the scaled numeric columns, then one
    indicator per fitted category. A category outside the fitted ones sets no indicator
    (``handle_unknown="ignore"``); ``None`` in a numeric column becomes the imputer's statistic.
    """

    def __init__(self, preprocessor: object, source: Path) -> None:
        self.numeric_columns: tuple[str, ...] = ()
        self.categorical_columns: tuple[str, ...] = ()
        self.fill = np.empty(0)
        self.mean = np.empty(0)
        self.scale = np.empty(0)
        #: per categorical column: value -> output column index
        self.lookups: tuple[dict[str, int], ...] = ()
        self.n_features = 0
        self._compile(preprocessor, source)

    def _compile(self, ct: object, source: Path) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        def unsupported(why: str) -> ArtifactError:
            return ArtifactError(f"{source}: wrong type (unsupported preprocessor: {why})")

        if not isinstance(ct, ColumnTransformer) or not hasattr(ct, "transformers_"):
            raise unsupported(f"expected a fitted ColumnTransformer, got {type(ct).__name__}")
        numeric: tuple[str, ...] | None = None
        categorical: tuple[str, ...] | None = None
        offset = 0
        for name, transformer, columns in ct.transformers_:
            if transformer == "drop" or (name == "remainder" and len(columns) == 0):
                continue
            cols = tuple(str(c) for c in columns)
            if isinstance(transformer, Pipeline) and numeric is None:
                steps = [step for _, step in transformer.steps]
                imputers = [s for s in steps if isinstance(s, SimpleImputer)]
                scalers = [s for s in steps if isinstance(s, StandardScaler)]
                if len(steps) != 2 or len(imputers) != 1 or len(scalers) != 1:
                    raise unsupported(f"numeric pipeline {transformer.steps!r}")
                if steps[0] is not imputers[0]:
                    raise unsupported("numeric pipeline must impute before scaling")
                imputer, scaler = imputers[0], scalers[0]
                fill = np.asarray(imputer.statistics_, dtype=np.float64)
                if imputer.add_indicator or fill.shape != (len(cols),) or np.isnan(fill).any():
                    raise unsupported("imputer output does not match its columns")
                n = len(cols)
                mean = np.zeros(n) if scaler.mean_ is None else np.asarray(scaler.mean_, float)
                scale = np.ones(n) if scaler.scale_ is None else np.asarray(scaler.scale_, float)
                self.fill, self.mean, self.scale = fill, mean, scale
                numeric = cols
                if offset != 0:
                    raise unsupported("numeric columns must come first")
                offset += n
            elif isinstance(transformer, OneHotEncoder) and categorical is None:
                if transformer.drop_idx_ is not None:
                    raise unsupported("one-hot encoder with drop")
                if getattr(transformer, "_infrequent_enabled", False):
                    raise unsupported("one-hot encoder with infrequent categories")
                if transformer.handle_unknown not in ("ignore", "infrequent_if_exist"):
                    raise unsupported(f"handle_unknown={transformer.handle_unknown!r}")
                lookups = []
                for categories in transformer.categories_:
                    lookups.append({str(v): offset + i for i, v in enumerate(categories)})
                    offset += len(categories)
                self.lookups = tuple(lookups)
                categorical = cols
            else:
                raise unsupported(f"transformer {name!r} of type {type(transformer).__name__}")
        if numeric is None or categorical is None:
            raise unsupported("needs one numeric pipeline and one one-hot encoder")
        if set(numeric) != set(NUMERIC_FEATURES) or set(categorical) != set(CATEGORICAL_FEATURES):
            raise unsupported("its columns are not the schema's feature columns")
        self.numeric_columns, self.categorical_columns = numeric, categorical
        self.n_features = offset

    def transform(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Return the feature matrix, shape ``(len(records), n_features)``, float64."""
        n = len(records)
        out = np.zeros((n, self.n_features), dtype=np.float64)
        if n == 0:
            return out
        num = np.array([[r[c] for c in self.numeric_columns] for r in records], dtype=np.float64)
        num = np.where(np.isnan(num), self.fill, num)
        k = len(self.numeric_columns)
        out[:, :k] = (num - self.mean) / self.scale
        for col, lookup in zip(self.categorical_columns, self.lookups, strict=True):
            for i, r in enumerate(records):
                j = lookup.get(r[col])  # type: ignore[call-overload]
                if j is not None:
                    out[i, j] = 1.0
        return out


# --------------------------------------------------------------------------------------------
# Served models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Served:
    info: ModelInfo
    preprocessor: CompiledPreprocessor
    model: Any
    positive_column: int


class ServingModels:
    """Every served model version, verified, loaded and compiled once."""

    def __init__(self, served: Mapping[str, _Served]) -> None:
        self._served = dict(served)
        self.versions: tuple[str, ...] = tuple(served)

    @classmethod
    def load(cls, root: Path, versions: Sequence[str] = ("v1", "v2")) -> ServingModels:
        """Verify, load and compile the artifacts of ``versions`` under the project ``root``.

        Raises:
            ArtifactError: a metadata record or artifact is missing, unreadable, of the wrong
                type or fails its sha256 check. Nothing is unpickled before its check.

        """
        root = Path(root)
        if not versions:
            raise ArtifactError(f"{root}: no model versions requested")
        cache: dict[tuple[Path, str], object] = {}

        def load(kind: str, metadata: dict[str, Any]) -> tuple[Path, object]:
            entry = metadata["artifacts"][kind]
            path = root / entry["path"]
            key = (path, entry["sha256"].lower())
            if key not in cache:
                cache[key] = _load_verified(path, entry["sha256"])
            return path, cache[key]

        served: dict[str, _Served] = {}
        for version in versions:
            metadata = _read_metadata(root, version)
            model_path, model = load("model", metadata)
            pre_path, preprocessor = load("preprocessor", metadata)
            enc_path, encoder = load("label_encoder", metadata)
            compiled = _compile_preprocessor(preprocessor, pre_path)
            positive = _positive_column(model, model_path, encoder, enc_path, compiled)
            served[version] = _Served(ModelInfo(version, metadata), compiled, model, positive)
        return cls(served)

    def _get(self, version: str) -> _Served:
        try:
            return self._served[version]
        except KeyError:
            available = ", ".join(self.versions)
            raise UnknownVersionError(
                f"unknown model version {version!r}; available: {available}"
            ) from None

    def info(self, version: str) -> ModelInfo:
        """Return the version and metadata record of a served model.

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.

        """
        return self._get(version).info

    def predict_proba(self, version: str, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Return the churn probability of each validated record, in order, as float64.

        Each record maps every feature column of `churn.schema` to its value: categorical
        values are strings (one outside the fitted categories counts as none of them),
        ``SeniorCitizen``/``tenure`` ints, ``MonthlyCharges`` a float, ``TotalCharges`` a
        float or ``None`` (imputed as in training).

        Raises:
            UnknownVersionError: (a ``KeyError``) the version is not served.

        """
        served = self._get(version)
        features = served.preprocessor.transform(records)
        if len(records) == 0:
            return np.empty(0, dtype=np.float64)
        proba = served.model.predict_proba(features)
        return np.ascontiguousarray(proba[:, served.positive_column], dtype=np.float64)


def _compile_preprocessor(preprocessor: object, path: Path) -> CompiledPreprocessor:
    return CompiledPreprocessor(preprocessor, path)


def _positive_column(
    model: object,
    model_path: Path,
    encoder: object,
    encoder_path: Path,
    preprocessor: CompiledPreprocessor,
) -> int:
    """Return the column of ``model.predict_proba`` holding the positive class."""
    classes = getattr(encoder, "classes_", None)
    if classes is None or POSITIVE_CLASS not in [str(c) for c in classes]:
        raise ArtifactError(
            f"{encoder_path}: wrong type (expected a fitted LabelEncoder with class "
            f"{POSITIVE_CLASS!r}, got {type(encoder).__name__})"
        )
    code = [str(c) for c in classes].index(POSITIVE_CLASS)
    model_classes = getattr(model, "classes_", None)
    if not callable(getattr(model, "predict_proba", None)) or model_classes is None:
        raise ArtifactError(
            f"{model_path}: wrong type (expected a fitted classifier, got {type(model).__name__})"
        )
    if len(model_classes) != 2 or code not in list(model_classes):
        raise ArtifactError(
            f"{model_path}: wrong type (model classes {list(model_classes)!r} do not match "
            f"the label encoder's)"
        )
    n_in = getattr(model, "n_features_in_", preprocessor.n_features)
    if n_in != preprocessor.n_features:
        raise ArtifactError(
            f"{model_path}: wrong type (model expects {n_in} features, the preprocessor "
            f"makes {preprocessor.n_features})"
        )
    return list(model_classes).index(code)
