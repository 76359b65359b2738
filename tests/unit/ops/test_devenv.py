import os
from pathlib import Path

import pytest

from churn_ops import devenv

from .conftest import FakeSession


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "dev.lock").write_text("pytest==8.0\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n", encoding="utf-8")
    monkeypatch.setattr(devenv, "uv_binary", lambda: "/usr/bin/uv")
    monkeypatch.setenv("PATH", "/usr/bin")
    return tmp_path


def _installs(session: FakeSession) -> list[tuple[str, ...]]:
    return [cmd for cmd in session.ran if "install" in cmd]


def test_one_environment_installed_once_then_reused_until_the_lock_changes(root: Path) -> None:
    first = FakeSession()
    env_dir = devenv.activate(first, root)
    assert first.ran[0][:2] == ("/usr/bin/uv", "venv")
    assert len(_installs(first)) == 2  # the lock, then the project without dependencies
    assert os.environ["PATH"].split(os.pathsep)[0] == str(env_dir / "bin")
    assert os.environ["VIRTUAL_ENV"] == str(env_dir)

    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").touch()
    second = FakeSession()
    devenv.activate(second, root)
    assert _installs(second) == []
    assert os.environ["PATH"].count(str(env_dir / "bin")) == 1

    (root / "requirements" / "dev.lock").write_text("pytest==9.0\n", encoding="utf-8")
    third = FakeSession()
    devenv.activate(third, root)
    assert len(_installs(third)) == 2


def test_the_bentoml_lock_is_compiled_with_the_dev_lock_s_model_libraries(root: Path) -> None:
    (root / "requirements" / "dev.lock").write_text(
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:ab\n"
        "pytest==8.0 \\\n    --hash=sha256:cd\nscikit-learn==1.9.1 \\\n    --hash=sha256:ef\n",
        encoding="utf-8",
    )
    session = FakeSession()
    devenv.compile_locks(session, ["--upgrade"], root)
    bentoml = next(cmd for cmd in session.ran if devenv.BENTOML_LOCK in cmd)
    assert bentoml[:3] == ("/usr/bin/uv", "pip", "compile") and "--generate-hashes" in bentoml
    assert bentoml[-1] == "--upgrade"
    at = bentoml.index(devenv.BENTOML_IN)
    assert bentoml[at : at + 5] == (
        devenv.BENTOML_IN, "-c", devenv.BENTOML_CONSTRAINTS, "-o", devenv.BENTOML_LOCK,
    )  # fmt: skip
    assert session.ran.index(bentoml) > next(
        i for i, cmd in enumerate(session.ran) if devenv.DEV_LOCK in cmd
    )  # compiled after the dev lock whose pins it takes
    constraints = (root / devenv.BENTOML_CONSTRAINTS).read_text(encoding="utf-8").splitlines()
    assert constraints[1:] == ["numpy==2.4.6 ; python_full_version < '3.12'", "scikit-learn==1.9.1"]
