"""Loading and verifying artifacts: the happy path and every way an artifact can be bad."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from churn.config import ArtifactPaths
from churn.serving.artifacts import read_records
from churn.serving.prediction import (
    ArtifactError,
    ModelInfo,
    ServingModels,
    UnknownVersionError,
    verify_artifact,
)


def _metadata(root: Path, version: str) -> dict:
    return json.loads(ArtifactPaths(root).metadata(version).read_text())


def _write_metadata(root: Path, version: str, metadata: dict) -> None:
    ArtifactPaths(root).metadata(version).write_text(json.dumps(metadata))


def test_load_serves_both_versions_with_their_records(artifact_root: Path) -> None:
    models = ServingModels.load(artifact_root)
    assert models.versions == ("v1", "v2")
    for version in ("v1", "v2"):
        info = models.info(version)
        assert info.version == version
        assert info.record.to_dict() == _metadata(artifact_root, version)
        assert info.run is not None and info.run.run_id
        assert info.metadata["mlflow"]["run_id"] == info.run.run_id
        assert isinstance(info, ModelInfo)
    assert models.info("v1").metadata["algorithm"] == "LogisticRegression"
    assert models.info("v2").metadata["algorithm"] == "HistGradientBoostingClassifier"


def test_load_can_serve_a_subset_of_versions(artifact_root: Path) -> None:
    models = ServingModels.load(artifact_root, versions=("v2",))
    assert models.versions == ("v2",)
    with pytest.raises(KeyError, match="available: v2"):
        models.info("v1")


def test_unknown_version_is_a_key_error_listing_the_served_ones(artifact_root: Path) -> None:
    models = ServingModels.load(artifact_root)
    with pytest.raises(UnknownVersionError, match=r"'v9'.*available: v1, v2"):
        models.predict_proba("v9", [])
    with pytest.raises(KeyError):
        models.info("v3")


def test_verify_artifact_accepts_the_right_digest_and_rejects_others(
    artifact_root: Path,
) -> None:
    path = ArtifactPaths(artifact_root).model("v1")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_artifact(path, digest)
    verify_artifact(path, digest.upper())
    with pytest.raises(ArtifactError, match="model_v1.pkl: sha256 mismatch"):
        verify_artifact(path, "0" * 64)
    with pytest.raises(ArtifactError, match="nope.pkl: missing"):
        verify_artifact(path.with_name("nope.pkl"), digest)


def test_a_missing_model_file_is_named(artifact_copy: Path) -> None:
    ArtifactPaths(artifact_copy).compiled("v2").unlink()
    with pytest.raises(ArtifactError, match=r"model_v2\.compiled\.json: missing"):
        ServingModels.load(artifact_copy)


def test_a_changed_byte_is_a_sha256_mismatch(artifact_copy: Path) -> None:
    path = ArtifactPaths(artifact_copy).compiled("v1")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{path.name}: sha256 mismatch"):
        ServingModels.load(artifact_copy)


def test_the_pickles_are_not_needed_to_serve(artifact_copy: Path, make_records) -> None:
    for pickle_file in [*artifact_copy.rglob("*.pkl")]:
        pickle_file.unlink()
    models = ServingModels.load(artifact_copy)
    assert len(models.predict_proba("v2", make_records(3))) == 3


def test_bytes_from_elsewhere_are_checked_against_the_record(artifact_root: Path) -> None:
    # As a registry download would be: bytes and the record, no models/ folder.
    record, run = read_records(artifact_root, "v1")
    data = (artifact_root / record.artifact("compiled").path).read_bytes()
    models = ServingModels.from_sources({"v1": (record, run, data, "registry:v1")})
    assert models.versions == ("v1",)
    with pytest.raises(ArtifactError, match="registry:v1: sha256 mismatch"):
        ServingModels.from_sources({"v1": (record, run, data + b" ", "registry:v1")})


def test_missing_metadata_is_named(artifact_copy: Path) -> None:
    ArtifactPaths(artifact_copy).metadata("v2").unlink()
    with pytest.raises(ArtifactError, match=r"model_v2\.json: missing"):
        ServingModels.load(artifact_copy)


def test_unparsable_metadata_is_unreadable(artifact_copy: Path) -> None:
    ArtifactPaths(artifact_copy).metadata("v1").write_text('{"version": "v1",')
    with pytest.raises(ArtifactError, match=r"model_v1\.json: unreadable"):
        ServingModels.load(artifact_copy)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m["artifacts"].pop("label_encoder"), "no artifacts.label_encoder"),
        (lambda m: m["artifacts"]["model"].pop("sha256"), "no artifacts.model"),
        (lambda m: m.update(version="v2"), "wrong version"),
    ],
)
def test_incomplete_metadata_is_rejected(artifact_copy: Path, change, reason: str) -> None:
    metadata = _metadata(artifact_copy, "v1")
    change(metadata)
    _write_metadata(artifact_copy, "v1", metadata)
    with pytest.raises(ArtifactError, match=rf"model_v1\.json: .*{reason}"):
        ServingModels.load(artifact_copy)


def _replace_compiled(root: Path, version: str, data: bytes) -> None:
    """Put ``data`` in place of a version's model file, with the record updated to match."""
    path = ArtifactPaths(root).compiled(version)
    path.write_bytes(data)
    metadata = _metadata(root, version)
    metadata["artifacts"]["compiled"]["sha256"] = hashlib.sha256(data).hexdigest()
    _write_metadata(root, version, metadata)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json at all", "unreadable"),
        (b'{"format": "something-else"}', "wrong type"),
        (b'{"format": "churn-compiled-model", "format_version": 99}', "format version 99"),
        (b'{"format": "churn-compiled-model", "format_version": 1}', "inconsistent model file"),
    ],
)
def test_a_matching_but_invalid_model_file_is_refused(
    artifact_copy: Path, data: bytes, reason: str
) -> None:
    _replace_compiled(artifact_copy, "v2", data)
    with pytest.raises(ArtifactError, match=rf"model_v2\.compiled\.json: .*{reason}"):
        ServingModels.load(artifact_copy)


def test_a_model_file_with_too_few_coefficients_is_refused(artifact_copy: Path) -> None:
    path = ArtifactPaths(artifact_copy).compiled("v1")
    document = json.loads(path.read_text())
    document["model"]["coef"] = document["model"]["coef"][:-1]
    _replace_compiled(artifact_copy, "v1", json.dumps(document).encode())
    with pytest.raises(ArtifactError, match="coefficients for"):
        ServingModels.load(artifact_copy)


def test_artifact_error_messages_are_one_line(artifact_copy: Path) -> None:
    ArtifactPaths(artifact_copy).metadata("v1").write_text("{\n\n  broken")
    with pytest.raises(ArtifactError) as caught:
        ServingModels.load(artifact_copy)
    assert "\n" not in str(caught.value)
