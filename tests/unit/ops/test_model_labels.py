"""The API image's labels name the model bytes it holds, read from the model records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from churn.config import ArtifactPaths
from churn.model_record import (
    ARTIFACT_KINDS,
    ArtifactRef,
    ModelRecord,
    RunRecord,
    record_path,
    write_record,
    write_run,
)
from churn_ops.images import MODELS_LABEL, model_artifact_labels, model_manifest


def test_every_artifact_of_every_version_is_a_label(tmp_path: Path) -> None:
    models = ArtifactPaths(tmp_path).models
    for n, version in enumerate(("v1", "v2")):
        refs = {
            kind: ArtifactRef(f"{kind}.bin", f"{n}{i}" * 32)
            for i, kind in enumerate(ARTIFACT_KINDS)
        }
        write_record(models, ModelRecord(version, "LR", {}, refs, "ee" * 32, {}))
        write_run(
            models, RunRecord(version, refs["model"].sha256, "t", 1.0, mlflow={"run_id": "r"})
        )
    labels = model_artifact_labels(tmp_path)
    assert list(labels) == [MODELS_LABEL]  # one label: one classic-builder step
    manifest = json.loads(labels[MODELS_LABEL])
    record = hashlib.sha256(record_path(models, "v2").read_bytes()).hexdigest()
    assert manifest["v2"]["model"] == "10" * 32  # the model file's
    assert manifest["v2"]["compiled"] == "13" * 32
    assert manifest["v2"]["record"] == record
    assert manifest == model_manifest(tmp_path)
    assert {len(entry) for entry in manifest.values()} == {len(ARTIFACT_KINDS) + 1}  # no run ids
