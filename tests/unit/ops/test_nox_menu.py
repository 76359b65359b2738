"""The noxfile, run for real by nox (no Docker; these sessions install nothing)."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from churn_ops.shell import free_port

ROOT = Path(__file__).resolve().parents[3]


def _nox(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("API_PORT", "MLFLOW_PORT")}
    return subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(cwd / "noxfile.py"), *args],
        capture_output=True, text=True, timeout=120, env={**clean, **env}, check=False,
    )  # fmt: skip


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The noxfile and the operations package, in a folder of their own (with its own .env)."""
    shutil.copy2(ROOT / "noxfile.py", tmp_path / "noxfile.py")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "churn_ops", tmp_path / "src" / "churn_ops")
    (tmp_path / ".env").write_text("API_PORT=5100\nMLFLOW_PORT=5101\n", encoding="utf-8")
    return tmp_path


def test_a_dotenv_at_the_repo_root_reaches_the_sessions(repo_copy: Path) -> None:
    out = _nox(repo_copy, "-s", "settings")
    assert out.returncode == 0, out.stderr
    assert "API_PORT=5100" in out.stderr and "MLFLOW_PORT=5101" in out.stderr


def test_a_variable_set_in_the_shell_wins_over_dotenv(repo_copy: Path) -> None:
    out = _nox(repo_copy, "-s", "settings", API_PORT="5200")
    assert "API_PORT=5200" in out.stderr and "MLFLOW_PORT=5101" in out.stderr


def test_smoke_with_no_stack_says_so_in_one_line_and_fails() -> None:
    api, mlflow = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    out = _nox(ROOT, "-s", "smoke", API_URL=api, MLFLOW_URL=mlflow)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if "Nothing answers" in line]
    assert len(lines) == 1 and api in lines[0] and mlflow in lines[0]
    assert "nox -s up" in lines[0]
    assert "passed" not in out.stdout + out.stderr and "failed" not in out.stdout


def test_every_session_has_a_one_line_docstring_and_the_file_stays_a_menu() -> None:
    text = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    tree = ast.parse(text)
    sessions = [
        node for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("menu" in ast.unparse(d) for d in node.decorator_list)
    ]  # fmt: skip
    assert len(sessions) >= 15
    for node in sessions:
        doc = ast.get_docstring(node) or ""
        assert doc and "\n" not in doc, node.name
    assert text.count("nox.options.sessions") == 1


def test_the_product_never_imports_the_operations_package() -> None:
    for path in (ROOT / "src" / "churn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "churn_ops" for n in names), path


def test_no_image_carries_the_operations_package() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "src/churn_ops" in lines


def test_compose_by_hand_reads_the_root_env_file_and_the_shell_wins(tmp_path: Path) -> None:
    """The README's by-hand line: `docker compose --env-file .env -f docker/docker-compose.yml`."""
    from churn_ops.shell import OpsError
    from churn_ops.stack import compose_command

    try:
        compose = compose_command()
    except OpsError:
        pytest.skip("no Compose CLI on this machine")
    env_file = tmp_path / ".env"
    env_file.write_text("API_PORT=5155\nMLFLOW_PORT=5156\n", encoding="utf-8")
    cmd = [*compose, "--env-file", str(env_file), "-f", "docker/docker-compose.yml", "config"]
    clean = {k: v for k, v in os.environ.items() if k not in ("API_PORT", "MLFLOW_PORT")}
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**clean, "MLFLOW_PORT": "5166"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert ":5155:5000" in out.stdout and ":5166:5000" in out.stdout
    assert ":5156:5000" not in out.stdout
