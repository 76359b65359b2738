"""The pure parts of the Swarm and replica helpers (src/churn_ops/swarm.py): no Docker needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "src"))  # the operations helpers (src/churn_ops)

from churn_ops import swarm  # noqa: E402


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], (None, [])),
        (["--replicas", "3"], (3, [])),
        (["--replicas=2", "--no-color"], (2, ["--no-color"])),
        (["-d", "--replicas", "1"], (1, ["-d"])),
    ],
)
def test_replicas_are_taken_out_of_the_arguments(args: list[str], expected: tuple) -> None:
    assert swarm.parse_replicas(args) == expected


@pytest.mark.parametrize("bad", ["0", "21", "x", ""])
def test_a_bad_replica_count_is_refused_with_the_option_named(bad: str) -> None:
    with pytest.raises(swarm.DeployError, match="--replicas"):
        swarm.parse_replicas(["--replicas", bad])


def test_compose_replicas_give_the_lb_the_api_port_and_the_replicas_free_local_ports() -> None:
    files, env = swarm.compose_replicas(ROOT, 3, 5123)
    assert files == ["-f", str(ROOT / "docker" / "docker-compose.replicas.yml")]
    assert env == {"LB_PORT": "5123", "API_PORT": "0", "API_BIND": "127.0.0.1"}
    override = yaml.safe_load((ROOT / swarm.REPLICAS_FILE).read_text())
    assert override["services"]["lb"]["ports"] == ["${LB_BIND:-0.0.0.0}:${LB_PORT:-5000}:5000"]


def test_the_stack_file_reads_every_variable_deploy_sets() -> None:
    stack = swarm.SwarmStack(root=ROOT, name="t", api_port=1, mlflow_port=2, image_tag="x")
    text = (ROOT / swarm.STACK_FILE).read_text()
    for name in stack.env(2):
        assert "${" + name in text, name
    parsed = yaml.safe_load(text)
    api = parsed["services"]["api"]["deploy"]
    assert api["endpoint_mode"] == "dnsrr"
    assert api["update_config"]["order"] == "start-first"
    assert api["update_config"]["failure_action"] == "rollback"
    for service in ("lb", "mlflow"):
        assert [p["mode"] for p in parsed["services"][service]["ports"]] == ["host"]
    assert set(parsed["services"]) == set(swarm.IMAGES)
    for service, image in swarm.IMAGES.items():
        ref = "${IMAGE_PREFIX:-}" + image + ":${IMAGE_TAG:-latest}"
        assert parsed["services"][service]["image"] == ref
    assert set(stack.secret_names.values()) == {
        s["name"].replace("${SECRET_PREFIX:-churn}", "t") for s in parsed["secrets"].values()
    }
