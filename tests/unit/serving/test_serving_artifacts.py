"""Loading and verifying artifacts: the happy path and every way an artifact can be bad."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import joblib
import pytest

from churn.predict import (
    ArtifactError,
    ModelInfo,
    ServingModels,
    UnknownVersionError,
    verify_artifact,
)


def _metadata(root: Path, version: str) -> dict:
    return json.loads((root / "models" / f"model_{version}.json").read_text())


def _write_metadata(root: Path, version: str, metadata: dict) -> None:
    (root / "models" / f"model_{version}.json").write_text(json.dumps(metadata))


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
    path = artifact_root / "models" / "model_v1.pkl"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_artifact(path, digest)
    verify_artifact(path, digest.upper())
    with pytest.raises(ArtifactError, match="model_v1.pkl: sha256 mismatch"):
        verify_artifact(path, "0" * 64)
    with pytest.raises(ArtifactError, match="nope.pkl: missing"):
        verify_artifact(path.with_name("nope.pkl"), digest)


@pytest.mark.parametrize(
    "relative",
    ["models/model_v2.pkl", "data/processed/preprocessor.pkl", "data/processed/label_encoder.pkl"],
)
def test_a_missing_artifact_is_named(artifact_copy: Path, relative: str) -> None:
    (artifact_copy / relative).unlink()
    with pytest.raises(ArtifactError, match=rf"{Path(relative).name}: missing"):
        ServingModels.load(artifact_copy)


@pytest.mark.parametrize(
    "relative",
    ["models/model_v1.pkl", "data/processed/preprocessor.pkl", "data/processed/label_encoder.pkl"],
)
def test_a_changed_byte_is_a_sha256_mismatch(artifact_copy: Path, relative: str) -> None:
    path = artifact_copy / relative
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{path.name}: sha256 mismatch"):
        ServingModels.load(artifact_copy)


def test_missing_metadata_is_named(artifact_copy: Path) -> None:
    (artifact_copy / "models" / "model_v2.json").unlink()
    with pytest.raises(ArtifactError, match=r"model_v2\.json: missing"):
        ServingModels.load(artifact_copy)


def test_unparsable_metadata_is_unreadable(artifact_copy: Path) -> None:
    (artifact_copy / "models" / "model_v1.json").write_text('{"version": "v1",')
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


def test_a_file_of_the_wrong_type_is_rejected_even_with_a_matching_digest(
    artifact_copy: Path,
) -> None:
    # The label encoder in the model's place, with the metadata updated to match it.
    encoder = artifact_copy / "data" / "processed" / "label_encoder.pkl"
    model = artifact_copy / "models" / "model_v1.pkl"
    model.write_bytes(encoder.read_bytes())
    metadata = _metadata(artifact_copy, "v1")
    metadata["artifacts"]["model"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    _write_metadata(artifact_copy, "v1", metadata)
    with pytest.raises(ArtifactError, match=r"model_v1\.pkl: wrong type"):
        ServingModels.load(artifact_copy)


def test_a_matching_but_unloadable_file_is_unreadable(artifact_copy: Path) -> None:
    model = artifact_copy / "models" / "model_v2.pkl"
    model.write_bytes(b"not a pickle at all")
    metadata = _metadata(artifact_copy, "v2")
    metadata["artifacts"]["model"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    _write_metadata(artifact_copy, "v2", metadata)
    with pytest.raises(ArtifactError, match=r"model_v2\.pkl: unreadable"):
        ServingModels.load(artifact_copy)


class _Trap:
    """Unpickling this creates a marker file: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_nothing_is_unpickled_before_its_digest_is_checked(
    artifact_copy: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    model = artifact_copy / "models" / "model_v1.pkl"
    joblib.dump(_Trap(marker), model)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        ServingModels.load(artifact_copy)
    assert not marker.exists()
    # The trap does fire when the digest matches, so the check above can fail.
    pickle.loads(pickle.dumps(_Trap(marker)))
    assert marker.exists()


def test_artifact_error_messages_are_one_line(artifact_copy: Path) -> None:
    (artifact_copy / "models" / "model_v1.json").write_text("{\n\n  broken")
    with pytest.raises(ArtifactError) as caught:
        ServingModels.load(artifact_copy)
    assert "\n" not in str(caught.value)
