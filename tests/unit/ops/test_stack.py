import subprocess
from pathlib import Path

import pytest

from churn_ops import stack as ops_stack
from churn_ops.shell import OpsError
from churn_ops.stack import Stack, StackNotHealthy


def _answers(ok: bool):
    def runner(*cmd: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 0 if ok else 1, "", "")

    return runner


def test_compose_v2_is_chosen_where_it_answers() -> None:
    assert ops_stack.compose_command(_answers(True)) == ["docker", "compose"]


def test_compose_v1_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_stack.shutil, "which", lambda name: "/usr/bin/docker-compose")
    assert ops_stack.compose_command(_answers(False)) == ["docker-compose"]


def test_no_compose_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_stack.shutil, "which", lambda name: None)
    with pytest.raises(OpsError, match="docker-compose package"):
        ops_stack.compose_command(_answers(False))


def test_main_stack_reads_ports_project_and_data_folders_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ops_stack, "compose_command", lambda: ["docker", "compose"])
    env = {"API_PORT": "5210", "MLFLOW_PORT": "5211", "COMPOSE_PROJECT_NAME": "churn-x",
           "STACK_NETWORK": "net-x", "MLRUNS_DIR": "/data/runs"}  # fmt: skip
    stack = Stack.from_environment(Path("/repo"), env)
    stack.compose = ["docker", "compose"]
    assert stack.command() == [
        "docker",
        "compose",
        "-p",
        "churn-x",
        "-f",
        "/repo/docker/docker-compose.yml",
    ]
    over = stack.overrides()
    assert over["API_PORT"] == "5210" and over["MLFLOW_PORT"] == "5211"
    assert over["MLRUNS_DIR"] == over["MLRUNS_HOST_DIR"] == "/data/runs"
    assert over["LOGS_DIR"] == "/repo/logs"
    assert over["STACK_NETWORK"] == "net-x"
    assert "API_BIND" not in over


def test_an_isolated_stack_has_its_own_project_network_loopback_ports_and_data(
    tmp_path: Path,
) -> None:
    stack = Stack.isolated("churn-t", tmp_path, 6001, 6002, compose=["docker-compose"],
                           extra_files=[Path("/x/auth.yml")])  # fmt: skip
    cmd = stack.command()
    assert cmd[:3] == ["docker-compose", "-p", "churn-t"] and cmd[-2:] == ["-f", "/x/auth.yml"]
    over = stack.overrides()
    assert over["API_BIND"] == over["MLFLOW_BIND"] == "127.0.0.1"
    assert over["STACK_NETWORK"] == over["COMPOSE_PROJECT_NAME"] == "churn-t"
    assert over["MLRUNS_DIR"] == str(tmp_path / "mlruns")
    assert stack.api_url == "http://127.0.0.1:6001"


def test_codespaces_urls_are_the_forwarded_ones() -> None:
    stack = Stack(mlruns_dir=Path("/m"), logs_dir=Path("/l"), compose=["x"])
    env = {"CODESPACE_NAME": "cs", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"}
    urls = stack.public_urls(env)
    assert urls["API"] == "https://cs-5000.app.github.dev"
    assert urls["MLflow UI"] == "https://cs-5001.app.github.dev"
    assert stack.public_urls({})["API docs"] == "http://localhost:5000/docs"


class _Scripted(Stack):
    def __init__(self, sequence: list[dict[str, str]]) -> None:
        super().__init__(mlruns_dir=Path("/m"), logs_dir=Path("/l"), compose=["x"])
        self.sequence = sequence

    def states(self) -> dict[str, str]:
        return self.sequence.pop(0) if len(self.sequence) > 1 else self.sequence[0]


def test_waiting_reports_once_per_change_of_state_not_per_poll() -> None:
    starting = {"mlflow": "starting", "api": "missing"}
    half = {"mlflow": "healthy", "api": "starting"}
    done = {"mlflow": "healthy", "api": "healthy"}
    stack = _Scripted([starting] * 5 + [half] * 7 + [done])
    heard: list[dict[str, str]] = []
    stack.wait_healthy(timeout=60, on_change=heard.append, every=0)
    assert heard == [starting, half, done]


def test_waiting_gives_up_when_a_service_exits() -> None:
    stack = _Scripted([{"mlflow": "exited", "api": "missing"}])
    with pytest.raises(StackNotHealthy) as caught:
        stack.wait_healthy(timeout=60, every=0)
    assert caught.value.states["mlflow"] == "exited"


def test_health_of_maps_each_container_and_marks_absent_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = "aaaa1111 running healthy\nbbbb2222 running \n"
    monkeypatch.setattr(
        ops_stack, "docker", lambda *a, **k: subprocess.CompletedProcess(a, 0, out, "")
    )
    assert ops_stack.health_of("aaaa", "", "bbbb") == ["healthy", "missing", "running"]


def test_unanswered_names_the_silent_url() -> None:
    from churn_ops.shell import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert ops_stack.unanswered({"API_URL": url}, timeout=1) == [f"API_URL={url}"]


def test_containers_come_from_compose_labels_in_one_docker_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def fake_docker(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "api 1111\nmlflow 2222\n", "")

    monkeypatch.setattr(ops_stack, "docker", fake_docker)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    stack = Stack(mlruns_dir=Path("/m"), logs_dir=Path("/l"), compose=["x"])
    assert stack.project_name() == "docker"  # Compose's default: the compose file's folder
    assert stack.containers() == {"mlflow": "2222", "api": "1111"}
    assert len(calls) == 1 and "label=com.docker.compose.project=docker" in calls[0]
    stack.project = "Churn.Ops"
    assert stack.project_name() == "churnops"
