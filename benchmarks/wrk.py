"""Drive `wrk` and read its figures.

One scenario is one `wrk` run with ``wrk_script.lua``: a fixed request (method and body from
the environment), a fixed duration, threads and connections. The script's ``done`` hook
prints one line ``BENCH_JSON {...}`` with exact figures; `parse_wrk_output` reads it and
falls back to wrk's own text report (``--latency``) when the line is missing.

Errors are wrk's: responses with a status of 400 or more ("Non-2xx or 3xx responses"; no
scenario here expects a 3xx) plus socket errors (connect, read, write, timeout).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "LUA_SCRIPT",
    "WrkError",
    "WrkResult",
    "parse_duration_us",
    "parse_wrk_output",
    "run_wrk",
    "wrk_command",
]

#: The Lua script that sets the request and prints the JSON line.
LUA_SCRIPT = Path(__file__).with_name("wrk_script.lua")
JSON_MARKER = "BENCH_JSON "

_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|m|h)\s*$")


class WrkError(RuntimeError):
    """wrk could not run, or printed nothing that reads as a result."""


@dataclass(frozen=True)
class WrkResult:
    """The figures of one wrk run (latencies in milliseconds)."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float | None
    p99_ms: float
    mean_ms: float | None
    max_ms: float | None
    status_errors: int
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second of the run."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        """Non-2xx responses (status >= 400) plus socket errors of every kind."""
        return self.status_errors + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, object]:
        """Return the figures, with the derived requests/s and error total, for JSON."""
        data = asdict(self)
        data["requests_per_s"] = round(self.requests_per_s, 1)
        data["errors"] = self.errors
        return data


def median_run(results: list[WrkResult]) -> WrkResult:
    """Return the run whose p99 is the median of the runs' (the upper one of an even count).

    One 10-second p99 on a shared 2-core machine moves by half between identical runs; the
    median of several runs is the figure to judge, and it is a real run, not a blend.

    Raises:
        ValueError: no runs.

    """
    if not results:
        raise ValueError("no runs")
    ranked = sorted(results, key=lambda r: r.p99_ms)
    return ranked[len(ranked) // 2]


def parse_duration_us(text: str) -> float:
    """Return a wrk duration such as ``"81.69ms"``, ``"1.44s"`` or ``"512us"`` in microseconds.

    Raises:
        ValueError: the text is not a number followed by one of wrk's units.

    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_US[match.group(2)]


def parse_wrk_output(text: str) -> WrkResult:
    """Read the figures of one wrk run from its standard output.

    The ``BENCH_JSON`` line of ``wrk_script.lua`` wins; without it, wrk's text report is read
    (it needs ``--latency`` for the percentiles).

    Raises:
        WrkError: neither form is present, or it is incomplete.

    """
    for line in text.splitlines():
        if line.startswith(JSON_MARKER):
            try:
                return _from_json(json.loads(line[len(JSON_MARKER) :]))
            except (ValueError, KeyError, TypeError) as exc:
                raise WrkError(f"unreadable {JSON_MARKER.strip()} line: {exc}") from None
    return _from_text(text)


def _from_json(data: dict[str, object]) -> WrkResult:
    errors = data["errors"]
    latency = data["latency_us"]
    assert isinstance(errors, dict) and isinstance(latency, dict)  # noqa: S101 - shape of the line
    duration_us = float(data["duration_us"])  # type: ignore[arg-type]
    if duration_us <= 0:
        raise ValueError("duration_us must be positive")
    return WrkResult(
        requests=int(data["requests"]),  # type: ignore[call-overload]
        duration_s=duration_us / 1e6,
        p50_ms=float(latency["p50"]) / 1000,
        p90_ms=float(latency["p90"]) / 1000,
        p99_ms=float(latency["p99"]) / 1000,
        mean_ms=float(latency["mean"]) / 1000,
        max_ms=float(latency["max"]) / 1000,
        status_errors=int(errors["status"]),
        socket_errors={k: int(errors[k]) for k in ("connect", "read", "write", "timeout")},
    )


_TOTAL = re.compile(r"^\s*([0-9]+) requests in ([0-9.]+(?:us|ms|s|m|h)),", re.M)
_PERCENTILE = re.compile(r"^\s*(50|90|99)(?:\.0+)?%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", re.M)
_LATENCY_ROW = re.compile(
    r"^\s*Latency\s+([0-9.]+(?:us|ms|s|m|h))\s+\S+\s+([0-9.]+(?:us|ms|s|m|h))", re.M
)
_SOCKET = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")


def _from_text(text: str) -> WrkResult:
    total = _TOTAL.search(text)
    percentiles = {m.group(1): parse_duration_us(m.group(2)) for m in _PERCENTILE.finditer(text)}
    if total is None or not {"50", "99"} <= percentiles.keys():
        shown = " ".join(text.split())[:300] or "no output"
        raise WrkError(f"no wrk result (needs --latency) in: {shown}")
    row = _LATENCY_ROW.search(text)
    socket = _SOCKET.search(text)
    non_2xx = _NON_2XX.search(text)
    names = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=parse_duration_us(total.group(2)) / 1e6,
        p50_ms=percentiles["50"] / 1000,
        p90_ms=percentiles["90"] / 1000 if "90" in percentiles else None,
        p99_ms=percentiles["99"] / 1000,
        mean_ms=parse_duration_us(row.group(1)) / 1000 if row else None,
        max_ms=parse_duration_us(row.group(2)) / 1000 if row else None,
        status_errors=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors={
            name: int(socket.group(i + 1)) if socket else 0 for i, name in enumerate(names)
        },
    )


def wrk_command(
    url: str,
    *,
    duration_s: int,
    threads: int,
    connections: int,
    timeout_s: int = 5,
    script: Path = LUA_SCRIPT,
) -> list[str]:
    """Return the wrk command line of one scenario (the request itself comes from the env).

    wrk takes whole seconds only. ``script`` replaces `LUA_SCRIPT` (one that loads it and
    adds hooks, e.g. tests/lifecycle/served.lua).

    Raises:
        ValueError: duration under 1 s or not whole, no thread, fewer connections than threads.

    """
    if int(duration_s) != duration_s or duration_s < 1 or threads < 1 or connections < threads:
        raise ValueError(
            f"need a whole duration >= 1 s, threads >= 1 and connections >= threads; got "
            f"{duration_s}, {threads}, {connections}"
        )
    return [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={int(duration_s)}s",
        f"--timeout={int(timeout_s)}s",
        "--latency",
        f"--script={script}",
        url,
    ]


def run_wrk(
    url: str,
    *,
    method: str = "GET",
    body_file: Path | None = None,
    duration_s: int,
    threads: int,
    connections: int,
    script: Path = LUA_SCRIPT,
) -> tuple[WrkResult, str]:
    """Run one wrk load against ``url``; return its figures and its raw output.

    ``script`` replaces `LUA_SCRIPT` (see `wrk_command`).

    Raises:
        WrkError: wrk is missing, failed (e.g. connection refused at start) or hung.

    """
    if shutil.which("wrk") is None:
        raise WrkError("wrk is not installed: `sudo apt-get install wrk`")
    cmd = wrk_command(
        url, duration_s=duration_s, threads=threads, connections=connections, script=script
    )
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_BODY_FILE": str(body_file or "")}
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk did not finish within {duration_s + 60:.0f} s") from None
    if out.returncode != 0:
        reason = " ".join((out.stderr + out.stdout).split())[:300]
        raise WrkError(f"wrk failed (exit {out.returncode}): {reason or 'no output'}")
    return parse_wrk_output(out.stdout), out.stdout
