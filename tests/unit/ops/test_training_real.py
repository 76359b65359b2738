"""The issue's own command for real: `dvc exp run -S data.source=/nonexistent.csv` in git."""

import shutil
import subprocess
from pathlib import Path

import pytest

from churn_ops import training

from .conftest import FakeSession, SessionError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_failing_own_data_run_leaves_a_real_workspace_clean(tmp_path: Path) -> None:
    if shutil.which("dvc") is None or shutil.which("churn-pipeline") is None:
        pytest.skip("dvc and the project's churn-pipeline are needed (the dev environment)")
    for rel in ("dvc.yaml", "dvc.lock", ".dvcignore", ".dvc/config", "configs"):
        src, dest = ROOT / rel, tmp_path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@127.0.0.1"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], check=True)

    def real(cmd: tuple[str, ...]) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        if done.returncode not in (0,) and cmd[:2] != ("dvc", "checkout"):
            raise RuntimeError(f"{cmd} failed: {done.stderr[-500:]}")
        return done.stdout

    session = FakeSession(real)
    with pytest.raises(SessionError, match="workspace is as it was"):
        training.train(
            session, ["-S", "configs/params.yaml:data.source=/nonexistent.csv"], tmp_path
        )
    status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert status.stdout == ""
