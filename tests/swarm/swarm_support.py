"""Helpers shared by the Swarm suite's fixtures and tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))  # the operations helpers (src/churn_ops)

RESULTS = ROOT / "results" / "swarm"
#: Figures the tests measured, written to results/swarm/figures.json at the end.
FIGURES: dict[str, object] = {}
#: Label of the images the rolling-update test builds (removed at the end).
ROLLED_LABEL = "churn.swarmtest.rolled"


def free_port() -> int:
    """Return a TCP port free on this host now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a docker command, capturing its output."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
