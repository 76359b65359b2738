"""The graceful stop of `churn.api.serve`, in-process (no Docker): refuse new, finish in flight.

While a request is in flight after the stop was asked, a new connection must be refused at
once; it must not be taken by a still-listening socket and reset at exit after its client
sent the whole request (what Waitress does when only ``accepting`` is cleared).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import requests
from reliability_support import customer, free_port

from churn.api import create_app
from churn.api.serve import serve
from churn.api.state import get_state
from churn.config import load_api_settings


def test_stop_refuses_new_connections_and_finishes_the_request_in_flight(
    artifact_root: Path,
) -> None:
    port = free_port()
    settings = load_api_settings(
        env={}, yaml_path=None, root=str(artifact_root), host="127.0.0.1", port=port, threads=2
    )
    app = create_app(settings)
    models = get_state(app).models
    assert models is not None
    original = models.predict_proba
    entered = threading.Event()

    def slow(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        entered.set()
        time.sleep(2.0)
        return original(*args, **kwargs)

    models.predict_proba = slow  # type: ignore[method-assign]
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(app, settings, stop), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    answers: list[int] = []
    record = {k: v for k, v in customer().items() if k != "customerID"}
    client = threading.Thread(
        target=lambda: answers.append(
            requests.post(f"{url}/predict", json=record, timeout=30).status_code
        )
    )
    client.start()
    assert entered.wait(10)
    stop.set()
    time.sleep(0.5)  # the loop notices within 0.2 s; the request is still in flight
    assert client.is_alive(), "the request should still be in flight"
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            taken = sock.recv(1024)
        outcome = f"taken by a server that is stopping (answer {taken[:40]!r})"
    except ConnectionRefusedError:
        outcome = "refused"
    except OSError as exc:
        outcome = f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"
    client.join(30)
    server.join(30)
    assert outcome == "refused", outcome
    assert answers == [200], "the request in flight must complete"
    assert not server.is_alive()
