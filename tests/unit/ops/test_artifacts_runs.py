"""The main job retrains when the models' runs cannot be shown by the local MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn_ops.artifacts import missing_runs, model_run_ids


def _model(root: Path, version: str, sha: str, run: dict[str, object] | None) -> None:
    models = root / "models"
    models.mkdir(exist_ok=True)
    record = {"version": version, "artifacts": {"model": {"sha256": sha}}}
    (models / f"model_{version}.json").write_text(json.dumps(record))
    (models / f"model_{version}.compiled.json").write_text("{}")
    if run is not None:
        (models / f"model_{version}.run.json").write_text(json.dumps(run))


def test_run_ids_come_from_run_records_that_match_their_model(tmp_path: Path) -> None:
    _model(tmp_path, "v1", "aa", {"model_sha256": "aa", "mlflow": {"run_id": "r1"}})
    _model(tmp_path, "v2", "bb", {"model_sha256": "old", "mlflow": {"run_id": "r2"}})
    _model(tmp_path, "v3", "cc", None)
    assert model_run_ids(tmp_path) == ["r1", "no-run-record:model_v2", "no-run-record:model_v3"]


def test_pulled_models_without_run_records_count_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _model(tmp_path, "v1", "aa", None)
    assert missing_runs(tmp_path) == ["no-run-record:model_v1"]
