"""The model record: one writer and one reader, stable bytes, run records kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn.model_record import (
    ARTIFACT_KINDS,
    ArtifactRef,
    ModelRecord,
    RecordError,
    RunRecord,
    describe,
    file_sha256,
    read_record,
    read_run,
    sha256_bytes,
    write_record,
    write_run,
)


def _record(model_sha256: str = "ab" * 32) -> ModelRecord:
    refs = {kind: ArtifactRef(f"models/{kind}.bin", "cd" * 32) for kind in ARTIFACT_KINDS}
    refs["model"] = ArtifactRef("models/model_v1.pkl", model_sha256)
    return ModelRecord("v1", "LogisticRegression", {"C": 1.0}, refs, "ef" * 32, {"f1": 0.5})


def test_a_record_reads_back_as_written_and_its_bytes_are_stable(tmp_path: Path) -> None:
    record = _record()
    path = write_record(tmp_path, record)
    first = path.read_bytes()
    assert read_record(tmp_path, "v1") == record
    write_record(tmp_path, read_record(tmp_path, "v1"))
    assert path.read_bytes() == first


def test_a_record_holds_no_per_run_value(tmp_path: Path) -> None:
    data = json.loads(write_record(tmp_path, _record()).read_text())
    assert set(data) == {
        "version",
        "algorithm",
        "hyperparameters",
        "artifacts",
        "training_data_sha256",
        "metrics",
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["artifacts"].pop("label_encoder"), "no artifacts.label_encoder"),
        (lambda d: d.pop("algorithm"), "no algorithm"),
        (lambda d: d.update(version="v2"), "wrong version"),
    ],
)
def test_a_bad_record_is_refused_naming_file_and_field(tmp_path: Path, change, reason: str) -> None:
    path = write_record(tmp_path, _record())
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=rf"model_v1\.json: .*{reason}"):
        read_record(tmp_path, "v1")


def test_a_run_record_belongs_to_the_model_file_it_names(tmp_path: Path) -> None:
    record = _record()
    assert read_run(tmp_path, record) is None  # none written: unknown, not an error
    run = RunRecord("v1", "ab" * 32, "2026-12-01T00:00:00Z", 1.5, {"numpy": "2"}, {"run_id": "r1"})
    write_run(tmp_path, run)
    assert read_run(tmp_path, record) == run
    assert describe(record, run)["mlflow"]["run_id"] == "r1"
    # A run record left over from another model file is not this model's run.
    assert read_run(tmp_path, _record(model_sha256="00" * 32)) is None
    assert describe(_record(), None)["mlflow"] == {}


def test_the_sha256_helpers_agree(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"churn" * 500_000)
    assert file_sha256(path) == sha256_bytes(path.read_bytes())
