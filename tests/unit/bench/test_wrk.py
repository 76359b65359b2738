from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from benchmarks.wrk import (
    LUA_SCRIPT,
    WrkError,
    WrkResult,
    median_run,
    parse_duration_us,
    parse_wrk_output,
    run_wrk,
    wrk_command,
)

# wrk 4.1.0's text report, as printed with --latency (figures edited to be distinct).
TEXT_REPORT = """\
Running 10s test @ http://127.0.0.1:5000/predict?model=v1
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.83ms    2.10ms  41.20ms   88.00%
    Req/Sec     1.66k   120.00     1.90k    70.00%
  Latency Distribution
     50%    4.51ms
     75%    5.60ms
     90%  812.00us
     99%    1.02s
  33120 requests in 10.01s, 11.20MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:   3308.69
Transfer/sec:      1.12MB
"""

JSON_LINE = (
    'BENCH_JSON {"requests": 331, "duration_us": 2033628, "bytes": 116512, "errors": '
    '{"connect": 0, "read": 5, "write": 0, "status": 7, "timeout": 1}, "latency_us": '
    '{"mean": 109625.4, "max": 495855, "p50": 81688, "p90": 241413, "p99": 444775}}'
)


def test_durations_in_every_wrk_unit_become_microseconds() -> None:
    assert parse_duration_us("512us") == 512
    assert parse_duration_us("81.69ms") == pytest.approx(81_690)
    assert parse_duration_us("1.44s") == pytest.approx(1_440_000)
    assert parse_duration_us("2m") == 120_000_000
    with pytest.raises(ValueError):
        parse_duration_us("12 parsecs")


def test_the_json_line_wins_and_is_read_exactly() -> None:
    result = parse_wrk_output(TEXT_REPORT + JSON_LINE + "\n")
    assert result.requests == 331
    assert result.duration_s == pytest.approx(2.033628)
    assert result.requests_per_s == pytest.approx(331 / 2.033628)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (81.688, 241.413, 444.775)
    assert result.max_ms == 495.855
    assert result.status_errors == 7
    assert result.socket_errors == {"connect": 0, "read": 5, "write": 0, "timeout": 1}
    assert result.errors == 13


def test_the_text_report_is_read_when_the_json_line_is_missing() -> None:
    result = parse_wrk_output(TEXT_REPORT)
    assert result.requests == 33120
    assert result.duration_s == pytest.approx(10.01)
    assert result.p50_ms == pytest.approx(4.51)
    assert result.p90_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.mean_ms == pytest.approx(4.83)
    assert result.max_ms == pytest.approx(41.2)
    assert result.status_errors == 17
    assert result.errors == 17 + 1 + 2 + 3 + 4


def test_a_clean_text_report_has_no_errors() -> None:
    clean = "\n".join(
        line for line in TEXT_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    result = parse_wrk_output(clean)
    assert result.errors == 0
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_as_dict_carries_the_derived_figures() -> None:
    data = parse_wrk_output(JSON_LINE).as_dict()
    assert data["requests_per_s"] == round(331 / 2.033628, 1)
    assert data["errors"] == 13
    json.dumps(data)  # JSON-ready


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unable to connect to 127.0.0.1:5999 Connection refused",
        TEXT_REPORT.replace("     99%    1.02s\n", ""),  # no --latency percentiles
        "BENCH_JSON {not json}",
        'BENCH_JSON {"requests": 1}',
    ],
)
def test_output_without_a_result_is_an_error(text: str) -> None:
    with pytest.raises(WrkError):
        parse_wrk_output(text)


def test_the_command_uses_the_lua_script_and_the_latency_report() -> None:
    cmd = wrk_command("http://127.0.0.1:5000/health", duration_s=5, threads=2, connections=16)
    assert cmd[0] == "wrk"
    assert "--threads=2" in cmd and "--connections=16" in cmd and "--duration=5s" in cmd
    assert "--latency" in cmd
    assert f"--script={LUA_SCRIPT}" in cmd
    assert cmd[-1] == "http://127.0.0.1:5000/health"
    with pytest.raises(ValueError):
        wrk_command("http://x", duration_s=5, threads=4, connections=2)
    with pytest.raises(ValueError):
        wrk_command("http://x", duration_s=0, threads=1, connections=1)
    with pytest.raises(ValueError):
        wrk_command("http://x", duration_s=1.5, threads=1, connections=1)  # type: ignore[arg-type]


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append((self.command, self.headers.get("Content-Type", ""), body))
        status = 200 if self.path == "/ok" else 422
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # wrk drops its connections mid-request when its time is up


@pytest.fixture
def local_server() -> Iterator[str]:
    _Recorder.seen = []
    server = _QuietServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_lua_script_posts_the_body_and_reports_status_errors(
    local_server: str, tmp_path: Path
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"tenure": 5}')
    ok, raw = run_wrk(
        local_server + "/ok",
        method="POST",
        body_file=body,
        duration_s=1,
        threads=1,
        connections=1,
    )
    assert "BENCH_JSON" in raw
    assert ok.requests > 0 and ok.errors == 0
    assert _Recorder.seen[0] == ("POST", "application/json", b'{"tenure": 5}')
    bad, _ = run_wrk(
        local_server + "/rejected",
        method="POST",
        body_file=body,
        duration_s=1,
        threads=1,
        connections=1,
    )
    assert bad.requests > 0
    assert bad.status_errors == bad.requests


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_failing_to_connect_is_an_error() -> None:
    from benchmarks.local_server import free_port

    with pytest.raises(WrkError):
        run_wrk(f"http://127.0.0.1:{free_port()}/", duration_s=1, threads=1, connections=1)


def _run(p99_ms: float) -> WrkResult:
    return WrkResult(1000, 10.0, 5.0, None, p99_ms, None, None, 0)


def test_the_median_run_by_p99_is_a_real_run() -> None:
    runs = [_run(31.0), _run(7.5), _run(8.0)]
    assert median_run(runs) is runs[2]
    assert median_run([_run(9.0), _run(3.0)]).p99_ms == 9.0  # the upper of two
    assert median_run(runs[:1]) is runs[0]
    with pytest.raises(ValueError, match="no runs"):
        median_run([])
