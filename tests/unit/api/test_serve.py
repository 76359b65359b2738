"""The API on a real Waitress server on 127.0.0.1: answers, limits, graceful stop, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from churn.api.openapi import EXAMPLE_CUSTOMER
from churn.api.serve import BODY_HEADROOM, serve, waitress_options
from churn.api.state import get_state
from churn.config import ApiSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Running:
    """A Waitress server serving an app in a background thread."""

    def __init__(self, app: Flask, settings: ApiSettings) -> None:
        self.app = app
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{settings.port}"
        self.thread = threading.Thread(target=serve, args=(app, settings, self.stop), daemon=True)
        self.thread.start()
        wait_until_up(self.url)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the server did not stop"


@pytest.fixture
def running(make_settings: Callable[..., ApiSettings]) -> Iterator[Callable[..., Running]]:
    servers: list[Running] = []

    def start(**overrides: object) -> Running:
        from churn.api import create_app

        overrides = {"threads": 0, **overrides}  # the default: requests on the I/O thread
        settings = make_settings(host="127.0.0.1", port=free_port(), **overrides)
        server = Running(create_app(settings), settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.close()


def test_waitress_options_follow_the_settings(make_settings: Callable[..., ApiSettings]) -> None:
    options = waitress_options(make_settings(threads=3, port=5050, max_body_bytes=4096))
    assert options["threads"] == 3 and options["port"] == 5050
    assert options["max_request_body_size"] == 4096 + BODY_HEADROOM
    assert options["clear_untrusted_proxy_headers"] is True


def test_real_server_answers_every_kind_of_request(
    running: Callable[..., Running], make_records: Callable[..., list[dict[str, object]]]
) -> None:
    server = running(max_body_bytes=64 * 1024)
    url = server.url
    with requests.Session() as http:
        assert http.get(f"{url}/ready", timeout=5).json()["status"] == "ready"
        one = http.post(f"{url}/predict?model=v1", json=EXAMPLE_CUSTOMER, timeout=5)
        assert one.status_code == 200 and one.headers["X-Request-ID"] == one.json()["request_id"]
        records = make_records(100, seed=1)
        batch = http.post(f"{url}/predict/batch", json={"instances": records}, timeout=10)
        assert batch.status_code == 200 and len(batch.json()["predictions"]) == 100
        # a forwarded host (Codespaces) is answered like any other
        page = http.get(url + "/", headers={"Host": "space-5000.app.github.dev"}, timeout=5)
        assert page.status_code == 200 and "<form" in page.text
        assert http.get(f"{url}/docs/assets/swagger-ui-bundle.js", timeout=5).status_code == 200

        bad = http.post(
            f"{url}/predict", data=b"{oops", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
        assert http.get(f"{url}/nope", timeout=5).json()["error"]["code"] == "not_found"
        assert http.delete(f"{url}/predict", timeout=5).status_code == 405

        # over the app's limit but within Waitress's headroom: the app's JSON 413
        body = json.dumps({"instances": [EXAMPLE_CUSTOMER] * 150}).encode()
        assert 64 * 1024 < len(body) < 64 * 1024 + BODY_HEADROOM
        big = http.post(
            f"{url}/predict/batch", data=body, headers={"Content-Type": "application/json"}
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

        # chunked upload (no Content-Length): Waitress de-chunks, the limit still holds
        def chunks() -> Iterator[bytes]:
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        chunked = http.post(
            f"{url}/predict/batch", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413

        small = json.dumps({"instances": [EXAMPLE_CUSTOMER] * 3}).encode()
        ok = http.post(
            f"{url}/predict/batch",
            data=iter([small[:100], small[100:]]),
            headers={"Content-Type": "application/json"},
        )
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3

        # a long header value does not break anything
        long_header = http.get(f"{url}/health", headers={"X-Request-ID": "a" * 4000}, timeout=5)
        assert long_header.status_code == 200 and len(long_header.headers["X-Request-ID"]) == 32
    assert get_state(server.app).internal_errors == 0
    server.close()


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may close the connection early
        conn.sendall(data)


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and return the status, headers and body of the answer."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        # Send from a thread while reading here: the server may answer and close before it
        # has read everything (then the rest of the upload is reset, not the answer).
        sender = threading.Thread(target=_send_quietly, args=(conn, request), daemon=True)
        sender.start()
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                data += chunk
        sender.join(10)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


@pytest.mark.parametrize("threads", [0, 4], ids=["inline", "worker threads"])
def test_waitress_queue_and_busy_threads_are_metrics(
    running: Callable[..., Running], threads: int
) -> None:
    server = running(threads=threads)
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    busy_line = re.compile(r'\nchurn_api_waitress_busy_threads\{replica="[^"]+"\} (\d+)\.0\n')
    # The scrape itself keeps one thread busy. A worker thread that has just written the
    # previous answer may still count as busy for a moment on a loaded machine, so read
    # until the server is quiet (bounded); a gauge that never says 1 fails.
    for _ in range(100):
        found = busy_line.search(text)
        if found and found.group(1) == "1":
            break
        time.sleep(0.05)
        text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert found and found.group(1) == "1", text
    assert re.search(r'\nchurn_api_waitress_queue_depth\{replica="[^"]+"\} 0\.0\n', text)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NONSENSE\r\n\r\n", 400, "bad_request"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{",
            413,
            "payload_too_large",
        ),
        (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
        ),
    ],
    ids=["bad start line", "huge header", "body far over the limit", "bad chunk"],
)
def test_protocol_errors_are_json_too(
    running: Callable[..., Running], request_bytes: bytes, status: int, code: str
) -> None:
    server = running()
    port = int(server.url.rsplit(":", 1)[1])
    got, headers, body = _raw(port, request_bytes)
    assert got == status and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


@pytest.mark.parametrize("threads", [0, 4], ids=["inline", "worker threads"])
def test_requests_in_flight_finish_on_stop(running: Callable[..., Running], threads: int) -> None:
    server = running(threads=threads)
    models = get_state(server.app).models
    assert models is not None
    original = models.predict_proba
    entered = threading.Event()

    def slow(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        entered.set()
        time.sleep(1.0)
        return original(*args, **kwargs)

    models.predict_proba = slow  # type: ignore[method-assign]
    results: list[requests.Response] = []
    client = threading.Thread(
        target=lambda: results.append(
            requests.post(f"{server.url}/predict", json=EXAMPLE_CUSTOMER, timeout=10)
        )
    )
    client.start()
    assert entered.wait(10)
    started = time.monotonic()
    server.close()  # asks the server to stop while the request is in flight
    client.join(10)
    assert results and results[0].status_code == 200
    assert 0.5 < time.monotonic() - started < 10
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=1)


def test_inline_server_answers_pipelined_and_concurrent_requests_in_order(
    running: Callable[..., Running],
) -> None:
    server = running(threads=0)
    port = int(server.url.rsplit(":", 1)[1])
    pipelined = b"".join(
        f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: r{i}\r\n\r\n".encode() for i in range(3)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(pipelined)
        data = b""
        while data.count(b'{"status":"ok"}') < 3:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    ids = [
        line.split(b": ")[1]
        for line in data.split(b"\r\n")
        if line.lower().startswith(b"x-request-id")
    ]
    assert ids == [b"r0", b"r1", b"r2"]

    answers: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(10):
                answers.append(
                    session.post(
                        f"{server.url}/predict", json=EXAMPLE_CUSTOMER, timeout=10
                    ).status_code
                )

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(30)
    assert answers == [200] * 40


def _env(artifact_root: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env.update(CHURN_ROOT=str(artifact_root), CHURN_HOST="127.0.0.1", CHURN_PORT=str(port))
    env.update(extra)
    return env


def test_cli_refuses_invalid_settings(artifact_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "churn.api.serve"],
        env=_env(artifact_root, free_port(), CHURN_THREADS="many"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CHURN_THREADS: expected an integer, got 'many'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_serves_and_stops_on_sigterm(artifact_root: Path, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "churn.api.serve"],
        env=_env(artifact_root, port, CHURN_LOG_DIR=str(tmp_path / "logs")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, timeout=90)
        assert requests.get(f"{url}/ready", timeout=5).status_code == 200
        assert requests.post(f"{url}/predict", json=EXAMPLE_CUSTOMER, timeout=5).ok
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "models loaded" in messages and "request" in messages and "stopped" in messages
    assert any(m.startswith("serving on http://127.0.0.1:") for m in messages)
    # the loaded app, models and libraries are exempt from the collector's full passes
    serving = next(line for line in lines if line["message"].startswith("serving on"))
    assert serving["gc_frozen_objects"] > 10_000
    logged = next((tmp_path / "logs").glob("api-*.log")).read_text()
    assert '"path": "/predict"' in logged
