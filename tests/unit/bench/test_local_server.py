"""The comparison servers' process handling: a group of their own, ready, measured, stopped."""

from __future__ import annotations

import socket
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from benchmarks import local_server, procstat

#: A server that answers 200 on /ready after a child process has started in a session of its
#: own (as BentoML's Service workers do): it is the server's too, and must stop with it.
SERVER = """
import http.server, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
)
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
        self.wfile.write(str(child.pid).encode())
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


def _start(
    command: list[str], port: int, log: Path, timeout_s: float
) -> AbstractContextManager[local_server.RunningServer]:
    return local_server.running(
        "the test server", command, port=port, ready_path="/ready", log_file=log,
        timeout_s=timeout_s,
    )  # fmt: skip


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_a_free_port_can_be_bound() -> None:
    port = local_server.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_server_and_its_workers_are_measured_and_stopped_together(tmp_path: Path) -> None:
    port = local_server.free_port()
    log = tmp_path / "logs" / "server.log"
    command = [sys.executable, "-c", SERVER, str(port)]
    with _start(command, port, log, 30) as server:
        assert server.url == f"http://127.0.0.1:{port}" and server.command == command
        pids = server.pids()
        assert pids[0] == server.process.pid and len(pids) == 2  # the server and its child
        rss = procstat.rss_mib(pids)
        assert rss is not None and rss > 1
    deadline = time.monotonic() + 10
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(pids) == []
    assert "listening" in log.read_text()


def test_a_server_that_exits_is_an_error_with_its_last_lines(tmp_path: Path) -> None:
    port = local_server.free_port()
    command = [sys.executable, "-c", "print('no model here'); raise SystemExit(3)"]
    with (
        pytest.raises(local_server.ServerError, match="exited with 3") as failed,
        _start(command, port, tmp_path / "s.log", 30),
    ):
        pass
    assert "the test server" in str(failed.value) and "no model here" in str(failed.value)


def test_a_server_that_never_answers_is_an_error_after_the_timeout(tmp_path: Path) -> None:
    port = local_server.free_port()
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with (
        pytest.raises(local_server.ServerError, match="did not answer within 1 s"),
        _start(command, port, tmp_path / "s.log", 1),
    ):
        pass
