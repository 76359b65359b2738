"""The pipeline as users run it: `dvc repro` in a copy of the project, MLflow, push and pull.

One reproduction (module fixture ``reproduced``: the committed dvc.yaml, params with fewer
rows, the real stage commands) feeds every test here, as it is the expensive part.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml

from churn import dataset
from churn.features import features
from churn.model_record import ModelRecord, read_run

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow

#: What a clone of the project holds that the pipeline needs (dvc.lock is not copied).
PROJECT_FILES = (
    "dvc.yaml",
    "configs/params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
)
OUTPUTS = {
    "data/raw/telco_churn.csv",
    "data/processed/train.csv",
    "data/processed/test.csv",
    "data/processed/preprocessor.pkl",
    "data/processed/label_encoder.pkl",
    "models/model_v1.pkl",
    "models/model_v1.compiled.json",
    "models/model_v1.json",
    "models/model_v2.pkl",
    "models/model_v2.compiled.json",
    "models/model_v2.json",
    "models/reference_v1.json",
    "models/reference_v2.json",
    "models/metrics.json",
}


@dataclass(frozen=True)
class Reproduced:
    """A project copy after one `dvc repro`, pushed to ``remote`` and committed to git."""

    root: Path
    remote: Path
    first_run: str
    outputs: dict[str, str]  # path -> sha256


def _env(home: Path) -> dict[str, str]:
    """The environment of every command: no real MLflow server, no user DVC config, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_STUDIO_OFFLINE="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        # The stages call `churn-pipeline`: the one installed beside this interpreter.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    home = cwd.parent / "home"
    done = subprocess.run(cmd, cwd=cwd, env=_env(home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _dvc(*args: str, cwd: Path) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def _git(*args: str, cwd: Path) -> str:
    return _run(["git", *args], cwd)


def _use_remote(root: Path, folder: Path) -> None:
    """Point the default remote at ``folder`` as a user would: in the uncommitted config.local.

    (What `dvc remote modify --local local url <folder>` writes, without a DVC start-up.)
    """
    (root / ".dvc" / "config.local").write_text(
        f"['remote \"local\"']\n    url = {folder}\n", encoding="utf-8"
    )


def _outputs(root: Path) -> dict[str, str]:
    """sha256 of every output that dvc.lock records, by path."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    paths = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in sorted(paths)}


def _copy_project(root: Path) -> None:
    """Copy what the pipeline needs into ``root``, with 800 rows instead of 7,043."""
    for rel in PROJECT_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, root / rel)
    shutil.copytree(
        REPO_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    params = yaml.safe_load((root / "configs/params.yaml").read_text(encoding="utf-8"))
    params["data"]["n_rows"] = 800
    (root / "configs/params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Reproduced:
    """Copy the project (800 rows), `dvc repro`, `dvc push` to a temporary remote, commit."""
    base = tmp_path_factory.mktemp("dvc")
    root, remote = base / "project", base / "remote"
    _copy_project(root)
    _git("init", "-q", "-b", "main", cwd=root)
    _use_remote(root, remote)

    first = _dvc("repro", cwd=root)
    outputs = _outputs(root)
    _dvc("push", cwd=root)
    _git("add", "-A", cwd=root)
    _git("commit", "-q", "-m", "pipeline", cwd=root)
    return Reproduced(root=root, remote=remote, first_run=first, outputs=outputs)


def test_repro_runs_every_stage_and_dvc_tracks_the_artifacts(reproduced: Reproduced) -> None:
    for stage in ("generate", "prepare", "train@v1", "train@v2", "evaluate"):
        assert f"Running stage '{stage}'" in reproduced.first_run
    assert set(reproduced.outputs) == OUTPUTS
    tracked = _git("ls-files", cwd=reproduced.root).splitlines()
    assert "dvc.lock" in tracked
    assert not OUTPUTS & set(tracked)  # git ignores them; DVC has them


def test_a_second_repro_with_nothing_changed_does_nothing(reproduced: Reproduced) -> None:
    second = _dvc("repro", cwd=reproduced.root)
    assert "Running stage" not in second
    assert "Data and pipelines are up to date." in second
    assert _outputs(reproduced.root) == reproduced.outputs


def test_a_forced_repro_elsewhere_writes_the_same_bytes_and_lock(
    reproduced: Reproduced, tmp_path: Path
) -> None:
    # Another folder, another MLflow store, new run ids: the DVC outputs must not change.
    other = tmp_path / "again"
    _copy_project(other)
    _git("init", "-q", "-b", "main", cwd=other)
    _dvc("repro", "--force", cwd=other)
    assert _outputs(other) == reproduced.outputs
    assert (other / "dvc.lock").read_bytes() == (reproduced.root / "dvc.lock").read_bytes()
    # ...while each has its own run record (git-ignored) naming its own MLflow run.
    ours, theirs = (
        json.loads((root / "models/model_v1.run.json").read_text(encoding="utf-8"))
        for root in (reproduced.root, other)
    )
    assert ours["mlflow"]["run_id"] != theirs["mlflow"]["run_id"]


def test_a_forced_repro_in_place_leaves_the_git_tree_clean(reproduced: Reproduced) -> None:
    _dvc("repro", "--force", cwd=reproduced.root)
    assert _git("status", "--porcelain", cwd=reproduced.root) == ""
    assert _outputs(reproduced.root) == reproduced.outputs


def test_pull_into_a_fresh_clone_restores_identical_files(
    reproduced: Reproduced, tmp_path: Path
) -> None:
    pushed = [p for p in reproduced.remote.rglob("*") if p.is_file()]
    assert len(pushed) == len(OUTPUTS)  # into the temporary remote, not the user's default
    clone = tmp_path / "clone"
    _git("clone", "-q", str(reproduced.root), str(clone), cwd=tmp_path)
    assert not any((clone / p).exists() for p in OUTPUTS)
    _use_remote(clone, reproduced.remote)
    _dvc("pull", cwd=clone)
    assert _outputs(clone) == reproduced.outputs


def test_evaluate_reports_what_training_recorded(reproduced: Reproduced) -> None:
    metrics = json.loads((reproduced.root / "models/metrics.json").read_text(encoding="utf-8"))
    for version in ("v1", "v2"):
        record = json.loads(
            (reproduced.root / f"models/model_{version}.json").read_text(encoding="utf-8")
        )
        assert metrics[version] == record["metrics"]
        for artifact in record["artifacts"].values():
            assert reproduced.outputs[artifact["path"]] == artifact["sha256"]
        assert record["training_data_sha256"] == reproduced.outputs["data/processed/train.csv"]


def test_training_runs_are_in_the_local_mlflow_store(reproduced: Reproduced) -> None:
    from mlflow import MlflowClient

    store = reproduced.root / "mlruns"
    uri = f"sqlite:///{(store / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("churn-prediction")
    assert experiment is not None
    assert experiment.artifact_location == (store / "artifacts").as_uri()
    for version in ("v1", "v2"):
        record = json.loads(
            (reproduced.root / f"models/model_{version}.json").read_text(encoding="utf-8")
        )
        tracking = read_run(reproduced.root / "models", ModelRecord.from_dict(record)).mlflow
        assert tracking["tracking_uri"] == uri
        run = client.get_run(tracking["run_id"])
        assert run.info.status == "FINISHED"
        assert run.info.experiment_id == experiment.experiment_id
        assert run.data.metrics == pytest.approx(record["metrics"])
        assert run.data.params["algorithm"] == record["algorithm"]
        assert run.data.tags["model_version"] == version
        assert run.data.tags["data_sha256"] == record["training_data_sha256"]
        files = {a.path for a in client.list_artifacts(run.info.run_id, "files")}
        assert files == {
            f"files/model_{version}.pkl",
            f"files/model_{version}.compiled.json",
            f"files/model_{version}.json",
            "files/preprocessor.pkl",
            "files/label_encoder.pkl",
        }
        registered = client.get_model_version(
            tracking["registered_model"], tracking["registered_version"]
        )
        assert registered.name == f"churn-model-{version}"
        assert registered.run_id == run.info.run_id


def test_registered_model_serves_raw_customer_records(reproduced: Reproduced) -> None:
    import mlflow

    root = reproduced.root
    mlflow.set_tracking_uri(f"sqlite:///{(root / 'mlruns' / 'mlflow.db').as_posix()}")
    served = mlflow.pyfunc.load_model("models:/churn-model-v2/1")
    rows = features(dataset.load_csv(root / "data/processed/test.csv")).head(4).copy()
    rows.loc[rows.index[0], "TotalCharges"] = np.nan  # a blank, as the public file has
    expected = joblib.load(root / "models/model_v2.pkl").predict_proba(
        joblib.load(root / "data/processed/preprocessor.pkl").transform(rows)
    )
    np.testing.assert_allclose(np.asarray(served.predict(rows)), expected, rtol=1e-12)
