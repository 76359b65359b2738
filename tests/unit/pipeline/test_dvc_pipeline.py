"""DVC: repro in a temporary copy of the project, no-op re-run, push, pull into a fresh clone."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT

#: What a clone of the project holds that the pipeline needs (dvc.lock is not copied).
PROJECT_FILES = (
    "dvc.yaml",
    "configs/params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    # The stages call `churn-pipeline`: the one installed beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _dvc(*args: str, cwd: Path) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def _git(*args: str, cwd: Path) -> str:
    return _run(["git", *args], cwd)


def _outputs(root: Path) -> dict[str, str]:
    """sha256 of every output that dvc.lock records, by path."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    paths = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in sorted(paths)}


def _use_remote(root: Path, folder: Path) -> None:
    """Point the default remote at ``folder`` as a user would: in the uncommitted config.local.

    (What `dvc remote modify --local local url <folder>` writes, without a DVC start-up.)
    """
    (root / ".dvc" / "config.local").write_text(
        f"['remote \"local\"']\n    url = {folder}\n", encoding="utf-8"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repo holding a copy of the project (code, pipeline, DVC config), few rows."""
    root = tmp_path / "project"
    for rel in PROJECT_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, root / rel)
    shutil.copytree(
        REPO_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    params = yaml.safe_load((root / "configs/params.yaml").read_text(encoding="utf-8"))
    params["data"]["n_rows"] = 800
    (root / "configs/params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    _git("init", "-q", "-b", "main", cwd=root)
    return root


@pytest.mark.slow
def test_repro_push_and_pull_into_a_fresh_clone(project: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    _use_remote(project, remote)

    first = _dvc("repro", cwd=project)
    for stage in ("generate", "prepare", "train@v1", "train@v2", "evaluate"):
        assert f"Running stage '{stage}'" in first
    outputs = _outputs(project)
    assert set(outputs) == {
        "data/raw/telco_churn.csv",
        "data/processed/train.csv",
        "data/processed/test.csv",
        "data/processed/preprocessor.pkl",
        "data/processed/label_encoder.pkl",
        "models/model_v1.pkl",
        "models/model_v1.json",
        "models/model_v2.pkl",
        "models/model_v2.json",
        "models/metrics.json",
    }
    assert (project / "mlruns" / "mlflow.db").is_file()  # runs went to the copy's local store

    second = _dvc("repro", cwd=project)
    assert "Running stage" not in second
    assert "Data and pipelines are up to date." in second

    # Artifacts are DVC's, not git's: none of them shows up as untracked.
    untracked = _git("status", "--porcelain", "--untracked-files=all", cwd=project)
    assert not [line for line in untracked.splitlines() if line[3:] in outputs]

    _dvc("push", cwd=project)
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert len(pushed) == len(outputs)  # into the temporary remote, not the user's default
    _git("add", "-A", cwd=project)
    _git("commit", "-q", "-m", "pipeline", cwd=project)

    clone = tmp_path / "clone"
    _git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    _use_remote(clone, remote)
    _dvc("pull", cwd=clone)
    assert _outputs(clone) == outputs
