"""Beyond one machine: the Compose stack with N API replicas, and the stack on Docker Swarm.

`nox -s up -- --replicas N` takes `compose_replicas` (the override file, its environment and
``--scale``); `nox -s deploy` / `undeploy` take `SwarmStack`. Only the standard library is
imported, and every command is a Docker CLI call whose output goes to the terminal.

A single-node swarm is initialised (``--advertise-addr 127.0.0.1``) when the engine is in none;
a marker file remembers that (with the swarm's cluster id), so that `undeploy` leaves that swarm
again once no service is left on it, and never a swarm it did not make.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn_ops.shell import OpsError

__all__ = [
    "IMAGES",
    "DeployError",
    "SwarmStack",
    "compose_replicas",
    "parse_replicas",
    "swarm_state",
]

Log = Callable[[str], None]

#: Stack service -> image name (tagged IMAGE_TAG, prefixed IMAGE_PREFIX).
IMAGES = {
    "postgres": "churn-postgres",
    "mlflow": "churn-mlflow",
    "api": "churn-prediction-api",
    "lb": "churn-lb",
}
REPLICAS_FILE = Path("docker") / "docker-compose.replicas.yml"
STACK_FILE = Path("deploy") / "swarm" / "stack.yml"
MARKER_NAME = "swarm-initialised"


class DeployError(OpsError):
    """A deployment step failed; the message says which and what to do."""


def parse_replicas(args: Sequence[str]) -> tuple[int | None, list[str]]:
    """Take ``--replicas N`` (or ``--replicas=N``) out of ``args``; return N and the rest.

    Raises:
        DeployError: N is missing or not an integer from 1 to 20.

    """
    rest: list[str] = []
    value: str | None = None
    items = iter(args)
    for arg in items:
        if arg == "--replicas":
            value = next(items, "")
        elif arg.startswith("--replicas="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if value is None:
        return None, rest
    if not value.isdigit() or not 1 <= int(value) <= 20:
        raise DeployError(
            f"--replicas: expected a number of API replicas from 1 to 20, got {value!r}"
        )
    return int(value), rest


def compose_replicas(root: Path, replicas: int, api_port: int) -> tuple[list[str], dict[str, str]]:
    """Return the extra Compose arguments and environment for N API replicas behind the lb.

    The balancer takes the API's port; the replicas publish theirs on free ports of 127.0.0.1.
    """
    files = ["-f", str(root / REPLICAS_FILE)]
    env = {"LB_PORT": str(api_port), "API_PORT": "0", "API_BIND": "127.0.0.1"}
    return files, env


def replicated(stack: Any, args: Sequence[str]) -> tuple[Any, list[str]]:
    """Return the Compose ``stack`` and ``up`` arguments, for N replicas when ``--replicas N``."""
    replicas, rest = parse_replicas(args)
    if replicas is not None:
        files, env = compose_replicas(stack.root, replicas, stack.api_port)
        stack.extra_files, stack.extra_env = [Path(files[1])], env
        rest += ["--scale", f"api={replicas}"]
    return stack, rest


def deploy_session(session: Any, root: Path, args: Sequence[str]) -> None:
    """`nox -s deploy`: deploy with ``--replicas N`` (default 2) and say how long it took."""
    replicas, rest = parse_replicas(args)
    if rest:
        raise DeployError(f"Unknown arguments {rest}: only `--replicas N` is understood")
    seconds = SwarmStack.from_environment(root, session.log).deploy(replicas or 2)
    session.log(f"Deployed in {seconds:.0f} s: `nox -s smoke` tests it, `nox -s undeploy` ends it.")


#: The bridge network `docker swarm init` creates for a node's swarm containers.
GATEWAY_BRIDGE = "docker_gwbridge"


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed docker CLI calls
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _docker_shown(*args: str, env: Mapping[str, str] | None = None) -> None:
    """Run a docker command with its output on the terminal; raise on failure."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(["docker", *args], env=full_env, check=False)  # noqa: S603
    if done.returncode != 0:
        raise DeployError(f"`docker {' '.join(args)}` failed (exit {done.returncode})")


def swarm_state() -> dict[str, str]:
    """Return the engine's swarm state, node id and cluster id (empty when not in a swarm)."""
    out = _docker("info", "--format", "{{json .Swarm}}", timeout=30)
    if out.returncode != 0:
        raise DeployError(f"No Docker engine answers: {out.stderr.strip()}")
    info = json.loads(out.stdout or "{}")
    cluster = (info.get("Cluster") or {}).get("ID", "")
    return {
        "state": str(info.get("LocalNodeState", "")),
        "node": str(info.get("NodeID", "")),
        "cluster": str(cluster),
        "manager": str(bool(info.get("ControlAvailable"))).lower(),
    }


def _http_ok(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - 127.0.0.1
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class SwarmStack:
    """One deployment of deploy/swarm/stack.yml: its name, ports, images and state folder."""

    root: Path
    name: str = "churn"
    api_port: int = 5000
    mlflow_port: int = 5001
    image_prefix: str = ""
    image_tag: str = "latest"
    #: Where the "this swarm was initialised by us" marker lives.
    state_dir: Path = field(default_factory=lambda: Path.home() / ".local" / "state" / "churn")
    log: Log = print

    @classmethod
    def from_environment(cls, root: Path, log: Log = print) -> SwarmStack:
        """Return the stack the settings name: STACK_NAME, API_PORT, MLFLOW_PORT, IMAGE_*."""
        env = os.environ
        return cls(
            root=root,
            name=env.get("STACK_NAME") or "churn",
            api_port=int(env.get("API_PORT") or 5000),
            mlflow_port=int(env.get("MLFLOW_PORT") or 5001),
            image_prefix=env.get("IMAGE_PREFIX", ""),
            image_tag=env.get("IMAGE_TAG") or "latest",
            log=log,
        )

    @property
    def secret_names(self) -> dict[str, str]:
        """The two external secrets the stack file names (SECRET_PREFIX is the stack name)."""
        return {
            "postgres": f"{self.name}-postgres-password",
            "pgpass": f"{self.name}-mlflow-pgpass",
        }

    def image(self, service: str) -> str:
        """Return the image reference of a stack service."""
        return f"{self.image_prefix}{IMAGES[service]}:{self.image_tag}"

    def env(self, replicas: int) -> dict[str, str]:
        """Return the variables the stack file reads."""
        return {
            "API_PORT": str(self.api_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "IMAGE_PREFIX": self.image_prefix,
            "IMAGE_TAG": self.image_tag,
            "API_REPLICAS": str(replicas),
            "SECRET_PREFIX": self.name,
        }

    # -- the swarm --------------------------------------------------------------------------

    @property
    def marker(self) -> Path:
        """The file that records a swarm initialised here (its cluster id)."""
        return self.state_dir / MARKER_NAME

    def ensure_swarm(self) -> bool:
        """Initialise a single-node swarm when the engine is in none; True when it did."""
        state = swarm_state()
        if state["state"] == "active":
            if state["manager"] != "true":
                raise DeployError(
                    "This engine is a worker of a swarm: deploy from one of its managers."
                )
            return False
        if state["state"] not in ("inactive", ""):
            raise DeployError(f"The engine's swarm is {state['state']!r}: resolve that first.")
        address = os.environ.get("SWARM_ADVERTISE_ADDR", "127.0.0.1")
        self.log(
            f"No swarm on this engine: initialising a single-node swarm "
            f"(`docker swarm init --advertise-addr {address}`); `nox -s undeploy` leaves it again."
        )
        _docker_shown("swarm", "init", "--advertise-addr", address)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(swarm_state()["cluster"] + "\n", encoding="utf-8")
        return True

    def initialised_here(self) -> bool:
        """Whether the engine's current swarm is the one `ensure_swarm` initialised."""
        if not self.marker.is_file():
            return False
        cluster = swarm_state()["cluster"]
        return bool(cluster) and self.marker.read_text(encoding="utf-8").strip() == cluster

    def leave_swarm_if_ours(self) -> None:
        """Leave the swarm `ensure_swarm` made, once no service at all is left on it."""
        if not self.initialised_here():
            if swarm_state()["state"] == "active":
                self.log("The swarm was not initialised by `nox -s deploy`: it is left as it is.")
            self.marker.unlink(missing_ok=True)
            return
        services = _docker("service", "ls", "-q").stdout.split()
        if services:
            self.log(
                f"The swarm initialised by `nox -s deploy` still runs {len(services)} other "
                "service(s): it is kept (`docker swarm leave --force` ends it)."
            )
            return
        self.log("Leaving the single-node swarm that `nox -s deploy` initialised.")
        _docker_shown("swarm", "leave", "--force")
        self.marker.unlink(missing_ok=True)
        # `swarm init` also made this bridge for the swarm's containers; Docker makes it again
        # at the next init. Still in use (a container on it): left, and the error ignored.
        _docker("network", "rm", GATEWAY_BRIDGE)

    # -- deploy ------------------------------------------------------------------------------

    def ensure_secrets(self) -> None:
        """Create the database password's two secrets when missing.

        The password is POSTGRES_PASSWORD when set, else a new random one; an existing secret is
        kept (the database was initialised with it).
        """
        names = self.secret_names
        have = set(_docker("secret", "ls", "--format", "{{.Name}}").stdout.split())
        if names["postgres"] in have and names["pgpass"] in have:
            return
        password = os.environ.get("POSTGRES_PASSWORD") or secrets.token_urlsafe(32)
        self.log(
            "Creating the database password's secrets "
            + ("from POSTGRES_PASSWORD" if os.environ.get("POSTGRES_PASSWORD") else "(random)")
        )
        values = {
            "postgres": password,
            # libpq's password file: host:port:database:user:password
            "pgpass": f"postgres:5432:mlflow:mlflow:{password}\n",
        }
        for key, name in names.items():
            if name in have:
                _docker("secret", "rm", name)
            created = subprocess.run(  # noqa: S603
                ["docker", "secret", "create", name, "-"],
                input=values[key],
                capture_output=True,
                text=True,
                check=False,
            )
            if created.returncode != 0:
                raise DeployError(f"cannot create secret {name}: {created.stderr.strip()}")

    def check_images(self) -> None:
        """Make sure each image is on this node (pulled first when IMAGE_PREFIX is set)."""
        missing = []
        for service in IMAGES:
            ref = self.image(service)
            if _docker("image", "inspect", ref).returncode == 0:
                continue
            if self.image_prefix:
                _docker_shown("pull", ref)
                continue
            missing.append(ref)
        if missing:
            raise DeployError(
                f"No local image {', '.join(missing)}: run `nox -s build` first (or set "
                "IMAGE_PREFIX and IMAGE_TAG to deploy published images)."
            )

    def deploy(self, replicas: int, timeout: float = 300) -> float:
        """Deploy (or update) the stack and wait until it serves; return the seconds taken."""
        self.check_images()
        self.ensure_swarm()
        self.ensure_secrets()
        started = time.monotonic()
        _docker_shown(
            "stack", "deploy", "--resolve-image", "never", "--prune",
            "-c", str(self.root / STACK_FILE), self.name,
            env=self.env(replicas),
        )  # fmt: skip
        self.wait_until_serving(replicas, timeout)
        return time.monotonic() - started

    def service_replicas(self) -> dict[str, str]:
        """Return ``service -> "running/desired"`` for the stack's services."""
        out = _docker(
            "service", "ls", "--filter", f"label=com.docker.stack.namespace={self.name}",
            "--format", "{{.Name}} {{.Replicas}}",
        )  # fmt: skip
        pairs = (line.split()[:2] for line in out.stdout.splitlines() if line.strip())
        return {name.removeprefix(f"{self.name}_"): count for name, count in pairs}

    def wait_until_serving(self, replicas: int, timeout: float) -> None:
        """Wait until every service runs its replicas and the lb and MLflow answer."""
        deadline = time.monotonic() + timeout
        api = f"http://127.0.0.1:{self.api_port}"
        mlflow = f"http://127.0.0.1:{self.mlflow_port}"
        while True:
            counts = self.service_replicas()
            converged = bool(counts) and all(
                c.split("/")[0] == c.split("/")[1].split(" ")[0] for c in counts.values()
            )
            api_count = counts.get("api", "0/0").split("/")[0]
            if (
                converged
                and api_count == str(replicas)
                and _http_ok(f"{api}/ready")
                and _http_ok(f"{mlflow}/health")
            ):
                self.log(f"Stack {self.name!r} serves: {counts}")
                self.log(f"  API (load balancer) {api}   MLflow UI {mlflow}")
                return
            if time.monotonic() > deadline:
                for service in counts:
                    _docker_shown(
                        "service", "ps", "--no-trunc", "--format",
                        "{{.Name}} {{.CurrentState}} {{.Error}}", f"{self.name}_{service}",
                    )  # fmt: skip
                raise DeployError(
                    f"Stack {self.name!r} did not serve within {timeout:.0f} s: {counts}"
                )
            time.sleep(2)

    # -- undeploy ----------------------------------------------------------------------------

    def undeploy(self, volumes: bool = False, timeout: float = 120) -> None:
        """Remove the stack (and with ``volumes`` its volumes and secrets); leave our swarm."""
        if swarm_state()["state"] != "active":
            self.log("No swarm on this engine: nothing deployed.")
            self.marker.unlink(missing_ok=True)
            return
        label = f"label=com.docker.stack.namespace={self.name}"
        if self.service_replicas():
            # `stack rm` removes the services, then the network; Docker refuses the network
            # while a task of a removed service is still stopping ("in use by task"). That
            # network is removed below, once the containers are gone.
            removed = _docker("stack", "rm", self.name)
            self.log((removed.stdout + removed.stderr).strip())
        else:
            self.log(f"No stack {self.name!r} is deployed.")
        deadline = time.monotonic() + timeout
        # Volumes and the network go only once the stack's containers are gone.
        while True:
            containers = _docker("ps", "-aq", "--filter", label).stdout.split()
            networks = _docker("network", "ls", "-q", "--filter", label).stdout.split()
            if not containers and not networks:
                break
            if not containers:
                _docker("network", "rm", *networks)
            if time.monotonic() > deadline:
                raise DeployError(f"The containers of stack {self.name!r} did not stop in time")
            time.sleep(1)
        if volumes:
            names = _docker("volume", "ls", "-q", "--filter", label).stdout.split()
            for name in names:
                self.log(f"--volumes: removing volume {name}")
                _docker_shown("volume", "rm", name)
            for name in self.secret_names.values():
                if _docker("secret", "inspect", name).returncode == 0:
                    self.log(f"--volumes: removing secret {name}")
                    _docker_shown("secret", "rm", name)
        self.leave_swarm_if_ours()
