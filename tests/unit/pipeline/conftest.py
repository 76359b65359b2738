"""Fixtures of the pipeline tests: the committed params, a prepared project, trained models.

* ``params``: the committed ``configs/params.yaml``, parsed.
* ``prepared``: a temporary project root after the ``generate`` and ``prepare`` stages, with
  the committed parameters (7,043 synthetic rows; about 2 s). Read-only.
* ``trained``: ``prepared`` plus v1 and v2 fitted with the committed hyperparameters (no
  MLflow), and the preprocessed held-out split. Read-only.
* ``small_project``: a fresh prepared root with few rows, for tests that write into it.
* ``isolated_env`` (autouse): no test reaches a real MLflow server, the repo's ``mlruns/``,
  the user's DVC config or DVC's analytics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from churn import dataset, features
from churn.config import ArtifactPaths, PipelineParams, load_params
from churn.evaluate import held_out
from churn.train import fit, load_training_data

REPO_ROOT = Path(__file__).resolve().parents[3]
PARAMS_FILE = REPO_ROOT / "configs" / "params.yaml"


@dataclass(frozen=True)
class Trained:
    """Models fitted the way the pipeline fits them, and the held-out data to judge them."""

    paths: ArtifactPaths
    models: dict[str, Any]
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Keep tests off real MLflow servers, the user's DVC settings and the network."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    dvc_home = tmp_path_factory.getbasetemp() / "dvc-home"
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_STUDIO_OFFLINE", "1")
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(dvc_home / "global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(dvc_home / "system"))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(dvc_home / "site-cache"))


@pytest.fixture(scope="session", autouse=True)
def single_thread() -> Iterator[None]:
    """Predict on one thread, as the pipeline does: OpenMP threads crawl on a busy machine."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def params() -> PipelineParams:
    """The committed pipeline parameters."""
    return load_params(PARAMS_FILE)


def make_prepared(root: Path, params: PipelineParams, n_rows: int | None = None) -> ArtifactPaths:
    """Run ``generate`` and ``prepare`` into ``root`` (optionally with fewer rows)."""
    data = params.data if n_rows is None else params.data.model_copy(update={"n_rows": n_rows})
    paths = ArtifactPaths(root)
    dataset.materialize_raw(paths.raw_csv, data, root)
    features.prepare(paths, params.split)
    return paths


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, params: PipelineParams) -> ArtifactPaths:
    """A project root after ``generate`` + ``prepare`` with the committed params. Read-only."""
    return make_prepared(tmp_path_factory.mktemp("prepared"), params)


@pytest.fixture(scope="session")
def trained(prepared: ArtifactPaths, params: PipelineParams) -> Trained:
    """v1 and v2 fitted on ``prepared`` with the committed hyperparameters. Read-only."""
    data = load_training_data(prepared)
    models = {version: fit(model, data)[0] for version, model in params.models.items()}
    x_test, y_test = held_out(prepared)
    return Trained(paths=prepared, models=models, x_test=x_test, y_test=y_test)


@pytest.fixture
def small_project(tmp_path: Path, params: PipelineParams) -> Iterator[ArtifactPaths]:
    """A fresh, writable root after ``generate`` + ``prepare`` with 1,200 rows."""
    yield make_prepared(tmp_path / "project", params, n_rows=1200)
