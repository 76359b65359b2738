"""The model record: what one trained model version is, written by the pipeline, read by serving.

Two files per version, both beside the model in ``models/``:

* ``model_<v>.json``, the `ModelRecord` (a DVC output): version, algorithm, hyperparameters,
  the path and sha256 of every artifact, the training data's sha256 and the held-out
  metrics. It holds only what the same code, parameters and data reproduce, so its bytes are
  the same on every run (see docs/ARCHITECTURE.md, "Reproducible artifacts").
* ``model_<v>.run.json``, the `RunRecord` (git-ignored, not tracked by DVC, carried by the
  API image): what differs from run to run: the MLflow run and registered version, when it
  was trained, how long it took, the library versions. It names the sha256 of the model
  file it describes, so a run record left over from another training is ignored.

This module is the only writer and reader of both, and `file_sha256`/`sha256_bytes` are the
project's only sha256 helpers. Like `churn.schema` it imports nothing of the project but the
file names (`churn.config.paths`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.config.paths import ModelFiles

__all__ = [
    "ARTIFACT_KINDS",
    "ArtifactRef",
    "ModelRecord",
    "SERVING_ARTIFACT",
    "RecordError",
    "RunRecord",
    "file_sha256",
    "read_record",
    "read_run",
    "record_path",
    "run_path",
    "sha256_bytes",
    "write_record",
    "write_run",
]

#: The artifacts every record lists: the pickles of the pipeline, and the data-only
#: compiled form that the API loads (`SERVING_ARTIFACT`, see `churn.export`).
ARTIFACT_KINDS: tuple[str, ...] = ("model", "preprocessor", "label_encoder", "compiled")
SERVING_ARTIFACT = "compiled"


class RecordError(ValueError):
    """A record is missing, unreadable or incomplete; the message names the file."""


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes (read in blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(models_dir: Path, version: str) -> Path:
    """Return the path of the `ModelRecord` of ``version`` in ``models_dir``."""
    return ModelFiles(Path(models_dir)).record(version)


def run_path(models_dir: Path, version: str) -> Path:
    """Return the path of the `RunRecord` of ``version`` in ``models_dir``."""
    return ModelFiles(Path(models_dir)).run_record(version)


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact of a version: its path (relative to the project root) and sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ModelRecord:
    """What a trained version is; the same bytes on every run with the same inputs."""

    version: str
    algorithm: str
    hyperparameters: Mapping[str, Any]
    artifacts: Mapping[str, ArtifactRef]
    training_data_sha256: str
    metrics: Mapping[str, float]

    def artifact(self, kind: str) -> ArtifactRef:
        """Return the artifact of ``kind`` (one of `ARTIFACT_KINDS`)."""
        return self.artifacts[kind]

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data, in the file's key order."""
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "hyperparameters": dict(self.hyperparameters),
            "artifacts": {
                kind: {"path": ref.path, "sha256": ref.sha256}
                for kind, ref in self.artifacts.items()
            },
            "training_data_sha256": self.training_data_sha256,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "record") -> ModelRecord:
        """Check and convert parsed JSON; raise `RecordError` naming ``source`` and the field."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{source}: wrong type (expected a JSON object)")
        text = {k: data.get(k) for k in ("version", "algorithm", "training_data_sha256")}
        for key, value in text.items():
            if not isinstance(value, str) or not value:
                raise RecordError(f"{source}: incomplete (no {key})")
        artifacts = data.get("artifacts")
        refs: dict[str, ArtifactRef] = {}
        for kind in ARTIFACT_KINDS:
            entry = artifacts.get(kind) if isinstance(artifacts, Mapping) else None
            path = entry.get("path") if isinstance(entry, Mapping) else None
            digest = entry.get("sha256") if isinstance(entry, Mapping) else None
            if not (isinstance(path, str) and isinstance(digest, str)):
                raise RecordError(f"{source}: incomplete (no artifacts.{kind}.path and .sha256)")
            refs[kind] = ArtifactRef(path, digest.strip().lower())
        hyperparameters = data.get("hyperparameters", {})
        metrics = data.get("metrics", {})
        if not isinstance(hyperparameters, Mapping) or not isinstance(metrics, Mapping):
            raise RecordError(f"{source}: wrong type (hyperparameters and metrics are objects)")
        return cls(
            version=str(text["version"]),
            algorithm=str(text["algorithm"]),
            hyperparameters=dict(hyperparameters),
            artifacts=refs,
            training_data_sha256=str(text["training_data_sha256"]),
            metrics={
                k: float(v)
                for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            },
        )


@dataclass(frozen=True)
class RunRecord:
    """The per-run facts of a version's training: never part of a DVC output."""

    version: str
    model_sha256: str  # the model file this run wrote
    trained_at: str
    training_seconds: float
    library_versions: Mapping[str, str] = field(default_factory=dict)
    #: tracking_uri, experiment, run_id, registered_model, registered_version
    mlflow: Mapping[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        """The MLflow run id, if the run was tracked."""
        return self.mlflow.get("run_id") or None

    def to_dict(self) -> dict[str, Any]:
        """Return the run record as JSON-ready data."""
        return {
            "version": self.version,
            "model_sha256": self.model_sha256,
            "trained_at": self.trained_at,
            "training_seconds": self.training_seconds,
            "library_versions": dict(self.library_versions),
            "mlflow": dict(self.mlflow),
        }


def _dump(path: Path, data: Mapping[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _load(path: Path, what: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are both
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RecordError(f"{path}: unreadable ({type(exc).__name__}: {first})") from None


def write_record(models_dir: Path, record: ModelRecord) -> Path:
    """Write ``record`` as ``model_<version>.json`` in ``models_dir``; return its path."""
    path = record_path(models_dir, record.version)
    _dump(path, record.to_dict())
    return path


def read_record(models_dir: Path, version: str) -> ModelRecord:
    """Read and check the record of ``version``.

    Raises:
        RecordError: the file is missing, not JSON, for another version, or incomplete.

    """
    path = record_path(models_dir, version)
    record = ModelRecord.from_dict(_load(path, f"record of model {version}"), str(path))
    if record.version != version:
        raise RecordError(f"{path}: wrong version (expected {version!r}, found {record.version!r})")
    return record


def write_run(models_dir: Path, run: RunRecord) -> Path:
    """Write ``run`` as ``model_<version>.run.json`` in ``models_dir``; return its path."""
    path = run_path(models_dir, run.version)
    _dump(path, run.to_dict())
    return path


def read_run(models_dir: Path, record: ModelRecord) -> RunRecord | None:
    """Return the run record of ``record``'s version, or None when there is none for its model.

    A run record that is missing, unreadable or names another model file (left over from
    an earlier training, or the artifacts came from a DVC remote) counts as none.
    """
    try:
        data = _load(run_path(models_dir, record.version), "run record")
    except RecordError:
        return None
    if not isinstance(data, Mapping):
        return None
    if data.get("model_sha256") != record.artifact("model").sha256:
        return None
    mlflow = data.get("mlflow")
    versions = data.get("library_versions")
    seconds = data.get("training_seconds")
    return RunRecord(
        version=record.version,
        model_sha256=record.artifact("model").sha256,
        trained_at=str(data.get("trained_at") or ""),
        training_seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        library_versions=dict(versions) if isinstance(versions, Mapping) else {},
        mlflow={str(k): str(v) for k, v in mlflow.items()} if isinstance(mlflow, Mapping) else {},
    )


def describe(record: ModelRecord, run: RunRecord | None) -> dict[str, Any]:
    """Return the record and its run as one mapping: the shape ``GET /models`` reads.

    Keys: those of `ModelRecord.to_dict`, plus ``trained_at``, ``training_seconds``,
    ``library_versions`` and ``mlflow`` from the run (None or empty without one).
    """
    return {
        **record.to_dict(),
        "trained_at": run.trained_at if run else None,
        "training_seconds": run.training_seconds if run else None,
        "library_versions": dict(run.library_versions) if run else {},
        "mlflow": dict(run.mlflow) if run else {},
    }
