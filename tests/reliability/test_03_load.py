"""A bounded soak: ``RELIABILITY_SOAK_SECONDS`` (default 60) at 16 connections, with no error.

The load is 9 single predictions (v1 and v2 in turn) to 1 batch of 50 customers. ``wrk`` drives
it when installed (`nox -s reliability` installs Debian's package when root); otherwise, or
with ``RELIABILITY_LOAD_TOOL=python``, a threaded Python client does. The API container's
memory is read before and after.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
from reliability_support import Stack, customer, figure, memory_bytes, mib

CONNECTIONS = 16
BATCH = 50
#: Sanity bound only: a serving process of this size over 1 GiB would be a leak.
MEMORY_LIMIT = 1024**3

WRK_SCRIPT = r"""
local single = %s
local batch = %s
local n = 0
local json = {["Content-Type"] = "application/json"}
request = function()
  n = n + 1
  if n %% 10 == 0 then
    return wrk.format("POST", "/predict/batch?model=v2", json, batch)
  end
  local version = (n %% 2 == 0) and "v1" or "v2"
  return wrk.format("POST", "/predict?model=" .. version, json, single)
end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {\"requests\": %%d, \"duration_us\": %%d, \"connect\": %%d, \"read\": %%d, " ..
    "\"write\": %%d, \"status\": %%d, \"timeout\": %%d, \"p50_ms\": %%.2f, \"p99_ms\": %%.2f, " ..
    "\"max_ms\": %%.2f}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def _bodies() -> tuple[bytes, bytes]:
    single = json.dumps(customer()).encode()
    instances = [customer(customerID=f"c{i}", tenure=i % 72) for i in range(BATCH)]
    return single, json.dumps({"instances": instances}).encode()


def _lua_string(data: bytes) -> str:
    return "[==[" + data.decode() + "]==]"


def _soak_wrk(stack: Stack, seconds: int, workdir: Path) -> dict[str, Any]:
    single, batch = _bodies()
    script = workdir / "soak.lua"
    script.write_text(WRK_SCRIPT % (_lua_string(single), _lua_string(batch)), encoding="utf-8")
    run = subprocess.run(
        [
            "wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(script), stack.api_url,
        ],
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    found = re.search(r"^RESULT (\{.*\})$", run.stdout, re.M)
    assert found, run.stdout
    result = json.loads(found.group(1))
    result["seconds"] = result.pop("duration_us") / 1e6
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    result["tool"] = "wrk"
    return result


def _soak_python(stack: Stack, seconds: int, _workdir: Path) -> dict[str, Any]:
    single, batch = _bodies()
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"requests": 0, "non_2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=10)
        n = 0
        mine: list[float] = []
        local = dict.fromkeys(counts, 0)
        while time.monotonic() < deadline:
            n += 1
            if n % 10 == 0:
                path, body = "/predict/batch?model=v2", batch
            else:
                path, body = f"/predict?model={'v1' if n % 2 else 'v2'}", single
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except TimeoutError:
                local["timeout"] += 1
                conn.close()
                continue
            except OSError:
                local["read"] += 1
                conn.close()
                continue
            mine.append((time.perf_counter() - started) * 1000)
            local["requests"] += 1
            if response.status != 200:
                local["non_2xx"] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for key, value in local.items():
                counts[key] += value

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        **counts,
        "status": counts["non_2xx"],
        "seconds": time.monotonic() - started,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": latencies[-1] if latencies else 0.0,
        "tool": "python",
    }


def test_soak_with_no_error(stack: Stack, tmp_path: Path) -> None:
    seconds = int(os.environ.get("RELIABILITY_SOAK_SECONDS", "60"))
    api = stack.container("api")
    assert stack.is_ready()
    before = memory_bytes(api)
    tool = os.environ.get("RELIABILITY_LOAD_TOOL") or ("wrk" if shutil.which("wrk") else "python")
    soak = _soak_wrk if tool == "wrk" else _soak_python
    result = soak(stack, seconds, tmp_path)
    after = memory_bytes(api)
    rate = result["requests"] / result["seconds"]
    errors = {k: result[k] for k in ("connect", "read", "write", "timeout", "non_2xx")}
    figure(
        "soak",
        f"{result['seconds']:.0f} s at {CONNECTIONS} connections ({result['tool']}): "
        f"{result['requests']:.0f} requests, {rate:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.0f} ms, errors {errors}",
    )
    figure(
        "soak memory (API container)",
        f"before {mib(before)}, after {mib(after)} ({mib(after - before)} change)",
    )
    assert result["requests"] > 0
    assert all(v == 0 for v in errors.values()), errors
    assert after < MEMORY_LIMIT, mib(after)
    r = requests.get(f"{stack.api_url}/ready", timeout=10)
    assert r.status_code == 200, r.text
