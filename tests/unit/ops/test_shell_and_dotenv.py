import os
import socket
from pathlib import Path

import pytest

from churn_ops import dotenv, shell


def test_free_port_is_free_and_port_in_use_sees_a_listener() -> None:
    port = shell.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert shell.port_in_use(port, "127.0.0.1")
    assert not shell.port_in_use(port, "127.0.0.1")


def test_run_quiet_reports_a_missing_program_instead_of_raising() -> None:
    out = shell.run_quiet("no-such-program-here")
    assert out.returncode == 127


def test_run_quiet_adds_env_to_the_environment() -> None:
    out = shell.run_quiet("sh", "-c", 'echo "$CHURN_X:$PATH"', env={"CHURN_X": "1"})
    assert out.stdout.startswith("1:") and len(out.stdout) > 4


def test_apt_install_declines_when_not_root(monkeypatch: pytest.MonkeyPatch, fake_session) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    session = fake_session()
    assert shell.apt_install(session, "wrk") is False
    assert session.ran == []


def test_apt_install_updates_then_installs_without_recommends(
    monkeypatch: pytest.MonkeyPatch, fake_session
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shell.shutil, "which", lambda name: "/usr/bin/apt-get")
    session = fake_session()
    assert shell.apt_install(session, "wrk", "jq")
    assert session.ran[0][:2] == ("apt-get", "update")
    assert session.ran[1][-3:] == ("--no-install-recommends", "wrk", "jq")


def test_dotenv_parses_comments_quotes_and_export() -> None:
    text = '# c\nexport API_PORT=5100\nA="x y"\nB=plain # note\nnot a line\nC=\n'
    assert dotenv.parse(text) == {"API_PORT": "5100", "A": "x y", "B": "plain", "C": ""}


def test_dotenv_sets_only_what_the_shell_lacks(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_PORT=5100\nMLFLOW_PORT=5101\n", encoding="utf-8")
    environ = {"MLFLOW_PORT": "5201"}
    assert dotenv.apply(tmp_path / ".env", environ) == {"API_PORT": "5100"}
    assert environ == {"API_PORT": "5100", "MLFLOW_PORT": "5201"}
    assert dotenv.apply(tmp_path / "missing.env", environ) == {}
