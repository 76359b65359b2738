"""Prometheus beside the stack (`nox -s up -- --monitoring`) and its alert rules' unit tests.

The image is docker/Dockerfile.prometheus (Debian's package, FROM the same base as the other
images); the Compose override is docker/docker-compose.monitoring.yml; the rules, their tests
and the console dashboard live in docker/prometheus/ (docs/monitoring.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from churn_ops import images
from churn_ops.shell import OpsError, Session, ensure_tool
from churn_ops.stack import REPO_ROOT

OVERRIDE = Path("docker") / "docker-compose.monitoring.yml"
IMAGE = "churn-prometheus"
RULES = "docker/prometheus/rules/churn.yml"
RULE_TESTS = "docker/prometheus/tests/churn_test.yml"
FLAG = "--monitoring"


def split_flag(args: list[str]) -> tuple[list[str], bool]:
    """Split ``--monitoring`` off the arguments meant for Compose."""
    return [a for a in args if a != FLAG], FLAG in args


def override_file(root: Path = REPO_ROOT) -> Path:
    """Return the Compose override that adds Prometheus."""
    return root / OVERRIDE


def dashboard_url(environ: Mapping[str, str] | None = None) -> str:
    """Return the dashboard URL for a person: forwarded in Codespaces, else localhost."""
    env = os.environ if environ is None else environ
    port = int(env.get("PROMETHEUS_PORT") or 9090)
    name, domain = env.get("CODESPACE_NAME"), env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    base = f"https://{name}-{port}.{domain}" if name and domain else f"http://localhost:{port}"
    return f"{base}/consoles/churn.html"


def ensure_image(session: Session, root: Path = REPO_ROOT) -> None:
    """Build the Prometheus image (`images.ensure_images`; never with published images)."""
    images.ensure_images(session, [IMAGE], root)


def test_rules(session: Session) -> None:
    """Check the alert rules and run their unit tests with promtool (Debian's prometheus)."""
    if not ensure_tool(session, "promtool", "prometheus"):
        raise OpsError("promtool is needed: `sudo apt-get install prometheus` (Debian).")
    session.run("promtool", "check", "rules", RULES, external=True)
    session.run("promtool", "test", "rules", RULE_TESTS, external=True)
