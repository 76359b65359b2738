"""The BentoML comparison: its own lock and venv (made once, reused), its command, its answers."""

from __future__ import annotations

import ast
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from benchmarks import bento_serve, local_server, mlflow_serve, payloads, pickles, procstat

from churn_ops import devenv

from .conftest import ROOT, write_pickles


class FakeRunner:
    """Stands in for subprocess.run: records commands; a venv command makes `bin/bentoml`."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.ran: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.ran.append(command)
        if self.fail_on and self.fail_on in command:
            kwargs["stdout"].write("error: Failed to fetch: bentoml==1.4.40 (no network)\n")
            return subprocess.CompletedProcess(command, 2)
        if "venv" in command:
            env_dir = Path(command[-1])
            (env_dir / "bin").mkdir(parents=True, exist_ok=True)
            (env_dir / "bin" / "bentoml").touch()
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "requirements").mkdir()
    (tmp_path / devenv.BENTOML_LOCK).write_text("bentoml==1.4.40\n", encoding="utf-8")
    return tmp_path


def test_the_venv_is_installed_once_then_reused_until_the_lock_changes(project: Path) -> None:
    log = project / "out" / "install.log"
    first = FakeRunner()
    env = bento_serve.ensure_env(project, log, python="/py", uv="/uv", run=first)
    assert env.env_dir == project / ".nox" / "bentoml" and not env.reused
    assert [cmd[:3] for cmd in first.ran] == [["/uv", "venv", "--quiet"], ["/uv", "pip", "sync"]]
    assert "$ /uv pip sync" in log.read_text()

    again = FakeRunner()
    assert bento_serve.ensure_env(project, log, python="/py", uv="/uv", run=again).reused
    assert again.ran == []

    (project / devenv.BENTOML_LOCK).write_text("bentoml==1.4.41\n", encoding="utf-8")
    changed = FakeRunner()
    assert not bento_serve.ensure_env(project, log, python="/py", uv="/uv", run=changed).reused
    assert len(changed.ran) == 2


def test_another_python_needs_another_venv(project: Path) -> None:
    assert bento_serve.wanted(project, "3.11.7") != bento_serve.wanted(project, "3.12.1")
    assert bento_serve.wanted(project, "3.11.7") == bento_serve.wanted(project, "3.11.7")


def test_a_venv_that_cannot_be_installed_is_an_error_that_says_why(project: Path) -> None:
    runner = FakeRunner(fail_on="sync")
    with pytest.raises(bento_serve.BentoServeError, match="offline") as failed:
        bento_serve.ensure_env(project, project / "i.log", python="/py", uv="/uv", run=runner)
    assert "Failed to fetch" in str(failed.value)
    assert devenv.installed_from(project / bento_serve.ENV_DIR) is None  # tried again next time
    retry = FakeRunner()
    assert not bento_serve.ensure_env(project, project / "i.log", uv="/uv", run=retry).reused


def test_the_lock_is_installed_exactly_and_with_its_hashes() -> None:
    env_dir, lock = Path("/p/.nox/bentoml"), Path("/p/requirements/bentoml.lock")
    with_uv = bento_serve.install_commands(env_dir, lock, "/py", "/uv")
    assert with_uv[0] == ["/uv", "venv", "--quiet", "--clear", "--python", "/py", str(env_dir)]
    assert with_uv[1][:3] == ["/uv", "pip", "sync"] and "--require-hashes" in with_uv[1]
    assert with_uv[1][-1] == str(lock)
    with_pip = bento_serve.install_commands(env_dir, lock, "/py", None)
    assert with_pip[0] == ["/py", "-m", "venv", "--clear", str(env_dir)]
    assert with_pip[1][:3] == [str(env_dir / "bin" / "python"), "-m", "pip"]
    assert "--require-hashes" in with_pip[1] and with_pip[1][-1] == str(lock)


def test_the_service_listens_on_loopback_with_the_given_workers_and_files(tmp_path: Path) -> None:
    files = pickles.Pickles(Path("data/processed/preprocessor.pkl"), Path("models/model_v2.pkl"))
    cmd = bento_serve.serve_command("/env/bin/bentoml", 5123, files, workers=2)
    assert cmd[:3] == ["/env/bin/bentoml", "serve", "service:ChurnClassifier"]
    pairs = list(zip(cmd[3::2], cmd[4::2], strict=True))
    assert ("--host", "127.0.0.1") in pairs and ("--port", "5123") in pairs
    assert ("--working-dir", str(bento_serve.SERVICE_DIR)) in pairs
    args = dict(value.split("=", 1) for key, value in pairs if key == "--arg")
    assert args == {
        "model": str(files.model.resolve()),
        "preprocessor": str(files.preprocessor.resolve()),
        "workers": "2",
    }
    assert bento_serve.NO_TRACKING["BENTOML_DO_NOT_TRACK"] == "true"


def test_the_service_is_a_bentoml_class_with_an_api_method_of_the_name_served() -> None:
    module, name = bento_serve.SERVICE.split(":")
    tree = ast.parse((bento_serve.SERVICE_DIR / f"{module}.py").read_text())
    service = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    assert any(ast.unparse(d).startswith("bentoml.service(") for d in service.decorator_list)
    apis = [
        f.name
        for f in service.body
        if isinstance(f, ast.FunctionDef) and "bentoml.api" in map(ast.unparse, f.decorator_list)
    ]
    assert apis == [bento_serve.PREDICT_PATH.strip("/")]
    # The body it takes is MLflow's: the method's one argument is "dataframe_records".
    predict = next(f for f in service.body if isinstance(f, ast.FunctionDef) and f.name in apis)
    assert [a.arg for a in predict.args.args] == ["self", "dataframe_records"]


def test_the_bentoml_lock_unpickles_with_the_dev_lock_s_libraries() -> None:
    dev = devenv.pins((ROOT / devenv.DEV_LOCK).read_text(), devenv.MODEL_LIBRARIES)
    bento = devenv.pins((ROOT / devenv.BENTOML_LOCK).read_text(), devenv.MODEL_LIBRARIES)
    assert {line.split("==")[0] for line in dev} == set(devenv.MODEL_LIBRARIES)
    assert bento == dev
    constraints = (ROOT / devenv.BENTOML_CONSTRAINTS).read_text().splitlines()
    assert [line for line in constraints if not line.startswith("#")] == dev
    (bentoml,) = devenv.pins((ROOT / devenv.BENTOML_LOCK).read_text(), ("bentoml",))
    assert bentoml.startswith("bentoml==1.4.")


def test_pins_are_read_with_their_markers_and_without_hashes() -> None:
    lock = (
        "# via\nnumpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:ab\n"
        "    # via pandas\npandas==3.1.1 \\\n    --hash=sha256:cd\nrich==15.0.0\n"
    )
    assert devenv.pins(lock, ("numpy", "pandas")) == [
        "numpy==2.4.6 ; python_full_version < '3.12'",
        "pandas==3.1.1",
    ]


def _bentoml_venv() -> bento_serve.BentoEnv | None:
    env = bento_serve.BentoEnv(ROOT / bento_serve.ENV_DIR, reused=True)
    current = devenv.installed_from(env.env_dir) == bento_serve.wanted(ROOT)
    return env if current and env.bentoml_bin.exists() else None


@pytest.mark.slow  # starts BentoML (a few seconds)
@pytest.mark.skipif(
    _bentoml_venv() is None,
    reason=f"no BentoML venv at {bento_serve.ENV_DIR} for {devenv.BENTOML_LOCK} "
    "(`nox -s bench -- --only bentoml` makes it)",
)
def test_the_bentoml_service_answers_what_the_pipeline_computes(tmp_path: Path) -> None:
    env = _bentoml_venv()
    assert env is not None
    records = write_pickles(tmp_path)
    files = pickles.find(tmp_path, "v2")
    expected = pickles.load_pipeline(tmp_path, "v2").predict_proba(
        mlflow_serve.example_frame(records[:3])
    )[:, 1]
    log = tmp_path / "bentoml.log"
    with bento_serve.serving(env, files, log, tmp_path / "home", timeout_s=120) as server:
        request = urllib.request.Request(
            server.url + bento_serve.PREDICT_PATH,
            data=payloads.mlflow_body(records[:3]),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            served = json.loads(answer.read())
        pids = server.pids()
        assert procstat.cpu_seconds(pids[1:])  # its Service worker, in a session of its own
        environ = Path(f"/proc/{pids[-1]}/environ").read_bytes().lower().split(b"\0")
        assert b"omp_num_threads=1" in environ and b"bentoml_do_not_track=true" in environ
    assert served == pytest.approx(list(expected), abs=1e-12)
    deadline = time.monotonic() + 10  # the stopped group's processes are reaped
    while [pid for pid in pids if Path(f"/proc/{pid}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert local_server.log_tail(log)  # BentoML wrote its log where the bench keeps it
