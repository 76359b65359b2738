"""Property-based tests generated from the running API's own /openapi.json (schemathesis).

Every operation of the spec is exercised with examples, coverage cases and fuzzed input, and
every answer is checked (``--checks all``): no 5xx, status codes, content types, headers and
bodies as documented, invalid input rejected, valid input accepted.

One worker (``-w 1``; two crashed inside hypothesis) and a bounded number of examples per
operation (``RELIABILITY_FUZZ_EXAMPLES``, default 50). ``schemathesis.toml`` beside this file
lets the protocol operations (``/v2/.../infer``, ``/invocations``) answer 400 to bodies whose
cross-field rules OpenAPI 3.0 cannot state. The seed is printed with the figures;
``RELIABILITY_FUZZ_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_support import Stack, figure


def _schemathesis() -> list[str]:
    beside = Path(sys.executable).with_name("schemathesis")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("schemathesis") or shutil.which("st")
    if found is None:
        pytest.fail("schemathesis is not installed: it is in requirements/dev.lock")
    return [found]


def test_schemathesis_finds_no_issue(stack: Stack, tmp_path: Path) -> None:
    examples = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "50"))
    seed = int(os.environ.get("RELIABILITY_FUZZ_SEED") or random.randrange(1, 2**31))
    cmd = [
        *_schemathesis(), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
        "run", f"{stack.api_url}/openapi.json",
        "--checks", "all", "--workers", "1", "--max-examples", str(examples),
        "--seed", str(seed), "--request-timeout", "30", "--no-color",
        "--generation-database", "none", "--report", "junit", "--report-dir", str(tmp_path),
        # 404 unless CHURN_MODEL_SOURCE=registry (this stack serves the baked models): its
        # token and answers are tested in tests/unit/lifecycle.
        "--exclude-path", "/registry/refresh",
    ]  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=1200, check=False, cwd=tmp_path,
    )  # fmt: skip
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    cases = next(
        (line.strip() for line in output.splitlines() if " generated" in line), "? test cases"
    )
    figure("schemathesis", f"{cases} in {seconds:.0f} s (seed {seed}, {examples} per operation)")
    assert run.returncode == 0, output[-8000:]
    assert "No issues found" in output, output[-8000:]
    ready = stack.ready()
    assert ready.status_code == 200, ready.text
