"""A tiny stand-in for the MLflow tracking server's REST API, on 127.0.0.1, for tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeMlflow:
    """Answers experiments/get-by-name, experiments/create, runs/create, runs/log-batch and
    runs/update like MLflow does, and records what it was sent."""

    def __init__(self, port: int = 0) -> None:
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.created_runs = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                with fake.lock:
                    fake.calls.append((url.path, parse_qs(url.query)))
                    if url.path.endswith("/experiments/get-by-name"):
                        name = parse_qs(url.query)["experiment_name"][0]
                        if name in fake.experiments:
                            experiment = {"experiment_id": fake.experiments[name], "name": name}
                            return self._answer(200, {"experiment": experiment})
                        return self._answer(
                            404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}
                        )
                self._answer(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "?"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                path = urlsplit(self.path).path
                with fake.lock:
                    fake.calls.append((path, body))
                    if path.endswith("/experiments/create"):
                        experiment_id = str(len(fake.experiments) + 1)
                        fake.experiments[body["name"]] = experiment_id
                        return self._answer(200, {"experiment_id": experiment_id})
                    if path.endswith("/runs/create"):
                        fake.created_runs += 1
                        run_id = f"run{fake.created_runs}"
                        fake.runs[run_id] = {
                            "request": body,
                            "metrics": [],
                            "params": [],
                            "status": "RUNNING",
                        }
                        return self._answer(200, {"run": {"info": {"run_id": run_id}}})
                    if path.endswith("/runs/log-batch"):
                        run = fake.runs.get(body["run_id"])
                        if run is None:
                            return self._answer(
                                404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "run"}
                            )
                        run["metrics"] += body.get("metrics", [])
                        run["params"] += body.get("params", [])
                        return self._answer(200, {})
                    if path.endswith("/runs/update"):
                        fake.runs[body["run_id"]]["status"] = body["status"]
                        return self._answer(200, {"run_info": {}})
                self._answer(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "?"})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def metrics(self) -> dict[str, list[float]]:
        """Every metric value received, by key, over all runs."""
        with self.lock:
            out: dict[str, list[float]] = {}
            for run in self.runs.values():
                for point in run["metrics"]:
                    out.setdefault(point["key"], []).append(point["value"])
            return out

    def close(self) -> None:
        """Stop answering and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
