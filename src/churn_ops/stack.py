"""The Compose stack: one CLI choice, its environment, ports, waiting until healthy, URLs.

`nox -s up/down/logs`, the benchmarks and the container suites drive the stack through
:class:`Stack`: the main one (`Stack.from_environment`, the settings users set) or a stack of
their own beside it (`Stack.isolated`: another Compose project, network, free 127.0.0.1 ports
and data folders in a temporary folder).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from churn_ops.shell import OpsError, run_quiet

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = Path("docker") / "docker-compose.yml"
SERVICES = ("mlflow", "api")
CONTAINER_UID = 1000  # the images' non-root user; owns the bind-mounted data folders
#: Container states after which waiting longer is pointless.
DEAD_STATES = ("exited", "dead", "missing")

States = dict[str, str]


def compose_command(
    runner: Callable[..., subprocess.CompletedProcess[str]] = run_quiet,
) -> list[str]:
    """Return `docker compose` (v2) where it exists, else `docker-compose` (v1.29).

    Raises:
        OpsError: neither is installed.

    """
    if runner("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise OpsError(
        "Neither `docker compose` nor `docker-compose` is installed: install the Compose "
        "plugin (or Debian's docker-compose package)."
    )


def docker(
    *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a docker command quietly; raise on a non-zero status only with ``check``."""
    out = run_quiet("docker", *args, timeout=timeout)
    if check and out.returncode != 0:
        raise OpsError(f"docker {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return out


def docker_answers() -> bool:
    """Tell whether a Docker engine answers."""
    return docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode == 0


def require_docker() -> None:
    """Raise with what to do when no Docker engine answers."""
    if shutil.which("docker") is None:
        raise OpsError(
            "'docker' is not installed: install Docker (in Codespaces, rebuild the devcontainer)"
        )
    probe = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise OpsError(
            f"No Docker engine is reachable ({reason}). Start it (e.g. `sudo service docker "
            "start`); in GitHub Codespaces, rebuild the devcontainer (Command Palette: "
            "'Codespaces: Rebuild Container')."
        )


def health_of(*containers: str) -> list[str]:
    """Return each container's health, or its state when it has no healthcheck ('missing')."""
    present = [c for c in containers if c]
    found: dict[str, str] = {}
    if present:
        fmt = "{{.Id}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        for line in docker("inspect", "--format", fmt, *present).stdout.splitlines():
            full_id, _, rest = line.strip().partition(" ")
            state, _, health = rest.partition(" ")
            found[full_id] = health or state
    return [
        next((v for k, v in found.items() if c and k.startswith(c)), "") or "missing"
        for c in containers
    ]


def give_to_containers(path: Path) -> None:
    """Let the containers' user (uid 1000) write ``path`` and all below it."""
    for sub in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(sub, CONTAINER_UID, CONTAINER_UID, follow_symlinks=False)
        elif not sub.is_symlink():
            sub.chmod(sub.stat().st_mode | (0o777 if sub.is_dir() else 0o666))


def copy_store(src: Path, dest: Path) -> None:
    """Copy an MLflow folder; SQLite files through SQLite's backup API (safe while served)."""
    sqlite_files = (".db", ".db-wal", ".db-shm", ".db-journal")
    shutil.copytree(
        src, dest, ignore=lambda _, names: [n for n in names if n.endswith(sqlite_files)]
    )
    for db in src.rglob("*.db"):
        with (
            contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as a,
            contextlib.closing(sqlite3.connect(dest / db.relative_to(src))) as b,
        ):
            a.backup(b)


class StackNotHealthy(OpsError):
    """The stack did not become healthy; ``states`` says how far each service got."""

    def __init__(self, message: str, states: States) -> None:
        """Keep the states beside the message."""
        super().__init__(message)
        self.states = states


@dataclass
class Stack:
    """One Compose project of the churn stack: its settings, and ways to drive and observe it."""

    mlruns_dir: Path
    logs_dir: Path
    api_port: int = 5000
    mlflow_port: int = 5001
    #: Compose project; None leaves it to Compose (COMPOSE_PROJECT_NAME, else the folder name).
    project: str | None = None
    #: Host address both ports are published on (None: the compose file's default, 0.0.0.0).
    bind: str | None = None
    #: The stack's network name (None: STACK_NETWORK, else the compose file's default).
    network: str | None = None
    root: Path = REPO_ROOT
    extra_files: list[Path] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    compose: list[str] = field(default_factory=compose_command)

    @classmethod
    def from_environment(
        cls, root: Path = REPO_ROOT, environ: Mapping[str, str] | None = None
    ) -> Stack:
        """Describe the main stack as the user's settings (shell, then .env) describe it."""
        env = os.environ if environ is None else environ
        return cls(
            mlruns_dir=Path(env.get("MLRUNS_DIR") or root / "mlruns").resolve(),
            logs_dir=Path(env.get("LOGS_DIR") or root / "logs").resolve(),
            api_port=int(env.get("API_PORT") or 5000),
            mlflow_port=int(env.get("MLFLOW_PORT") or 5001),
            project=env.get("COMPOSE_PROJECT_NAME") or None,
            network=env.get("STACK_NETWORK") or None,
            root=root,
        )

    @classmethod
    def isolated(
        cls, project: str, workdir: Path, api_port: int, mlflow_port: int, **kwargs: object
    ) -> Stack:
        """Describe a stack beside the main one: own project, network, local ports, data."""
        return cls(
            mlruns_dir=workdir / "mlruns", logs_dir=workdir / "logs", api_port=api_port,
            mlflow_port=mlflow_port, project=project, bind="127.0.0.1", network=project,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    @property
    def api_url(self) -> str:
        """Base URL of this stack's API, from this host."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        """Base URL of this stack's MLflow server, from this host."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def public_urls(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return the URLs a person opens: forwarded ones in GitHub Codespaces, else localhost."""
        env = os.environ if environ is None else environ
        name, domain = (
            env.get("CODESPACE_NAME"),
            env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN"),
        )
        if name and domain:
            api, mlflow = (
                f"https://{name}-{p}.{domain}" for p in (self.api_port, self.mlflow_port)
            )
        else:
            api, mlflow = (f"http://localhost:{p}" for p in (self.api_port, self.mlflow_port))
        return {"API": api, "MLflow UI": mlflow, "API docs": f"{api}/docs"}

    def overrides(self) -> dict[str, str]:
        """Return the variables Compose needs for this stack, on top of the process environment.

        Runs logged on the host before the stack started recorded their artifacts under the
        host's absolute mlruns path; the MLflow container mounts the folder there too
        (MLRUNS_HOST_DIR).
        """
        env = {
            "API_PORT": str(self.api_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "MLRUNS_DIR": str(self.mlruns_dir),
            "MLRUNS_HOST_DIR": str(self.mlruns_dir),
            "LOGS_DIR": str(self.logs_dir),
        }
        if self.project:
            env["COMPOSE_PROJECT_NAME"] = self.project
        if self.network:
            env["STACK_NETWORK"] = self.network
        if self.bind:
            env["API_BIND"] = env["MLFLOW_BIND"] = self.bind
        return {**env, **self.extra_env}

    def env(self) -> dict[str, str]:
        """Return the whole environment Compose (and `nox -s up`/`down`) run with for this stack."""
        return {**os.environ, **self.overrides()}

    def command(self, files: Sequence[Path] | None = None) -> list[str]:
        """Return the Compose command line for this project, before its subcommand."""
        cmd = [*self.compose, *(["-p", self.project] if self.project else [])]
        cmd += ["-f", str(self.root / COMPOSE_FILE)]
        for extra in self.extra_files if files is None else files:
            cmd += ["-f", str(extra)]
        return cmd

    def run(
        self, *args: str, timeout: float = 300, files: Sequence[Path] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Compose command on this project quietly (never raises on a non-zero status)."""
        return run_quiet(
            *self.command(files), *args, timeout=timeout, env=self.overrides(), cwd=self.root
        )

    def prepare_dirs(self) -> None:
        """Create the data folders, writable by the containers' user (uid 1000)."""
        for path in (self.mlruns_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
            if path.stat().st_uid != CONTAINER_UID:
                give_to_containers(path)

    def project_name(self) -> str:
        """Return the Compose project's name as Compose derives it (labels carry it)."""
        name = self.project or os.environ.get("COMPOSE_PROJECT_NAME") or COMPOSE_FILE.parent.name
        return re.sub(r"[^-_a-z0-9]", "", name.lower())

    def containers(self) -> dict[str, str]:
        """Return each service's container id ('' when it has none), from Compose's labels.

        One `docker ps` instead of a Compose CLI call per service: it costs milliseconds where
        `docker-compose ps` costs seconds, and waiting polls it.
        """
        fmt = '{{.Label "com.docker.compose.service"}} {{.ID}}'
        project = f"label=com.docker.compose.project={self.project_name()}"
        out = docker("ps", "-a", "--filter", project, "--format", fmt, timeout=60)
        found: dict[str, str] = {}
        for line in sorted(out.stdout.splitlines()):
            service, _, cid = line.strip().partition(" ")
            found.setdefault(service, cid)
        return {service: found.get(service, "") for service in SERVICES}

    def container(self, service: str) -> str:
        """Return the id of the service's container ('' when there is none)."""
        if service in SERVICES:
            return self.containers()[service]
        return self.run("ps", "-q", service, timeout=60).stdout.strip()

    def states(self) -> States:
        """Each service's health (or state; 'missing' when it has no container)."""
        ids = self.containers()
        return dict(zip(SERVICES, health_of(*ids.values()), strict=True))

    def wait_healthy(
        self,
        timeout: float = 300,
        on_change: Callable[[States], None] | None = None,
        give_up_on: Sequence[str] = ("exited", "dead"),
        every: float = 1.0,
    ) -> float:
        """Wait until every service is healthy; return the seconds it took.

        ``on_change`` hears the states once per change (not once per poll).

        Raises:
            StackNotHealthy: the time ran out, or a service reached a state of ``give_up_on``.

        """
        started = time.monotonic()
        seen: States = {}
        while True:
            states = self.states()
            if states != seen and on_change is not None:
                on_change(states)
            seen = states
            if all(state == "healthy" for state in states.values()):
                return time.monotonic() - started
            if any(state in give_up_on for state in states.values()):
                break
            if time.monotonic() - started > timeout:
                break
            time.sleep(every)
        raise StackNotHealthy(f"stack not healthy within {timeout:.0f} s: {states}", states)

    def wait_service(self, service: str, timeout: float = 120) -> None:
        """Wait until one more service of an override (lb, prometheus) is healthy.

        Raises:
            OpsError: it exited, or did not get healthy in time (with its last log lines).

        """
        deadline = time.monotonic() + timeout
        while True:
            (state,) = health_of(self.container(service))
            if state == "healthy":
                return
            if state in ("exited", "dead") or time.monotonic() > deadline:
                logs = self.run("logs", "--tail", "40", service, timeout=60).stdout[-3000:]
                raise OpsError(f"{service} did not become healthy ({state}):\n{logs}")
            time.sleep(1)

    def up(
        self, timeout: float = 300, give_up_on: Sequence[str] = ("unhealthy", "exited", "dead")
    ) -> float:
        """Start the stack (`up -d --no-build`) and wait until healthy; return the seconds.

        Raises:
            StackNotHealthy: with the last log lines of the stack in the message.

        """
        started = time.monotonic()
        out = self.run("up", "-d", "--no-build", timeout=timeout)
        if out.returncode != 0:
            raise StackNotHealthy(f"compose up failed:\n{out.stderr[-3000:]}", {})
        try:
            self.wait_healthy(timeout - (time.monotonic() - started), give_up_on=give_up_on)
        except StackNotHealthy as exc:
            logs = self.run("logs", "--tail", "40", timeout=60).stdout[-5000:]
            raise StackNotHealthy(
                f"stack {self.project} not healthy: {exc.states}\n{logs}", exc.states
            ) from None
        return time.monotonic() - started

    def down(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`down --remove-orphans` plus ``args`` (e.g. ``--volumes``)."""
        return self.run("down", "--remove-orphans", *args, timeout=300)

    def wipe_data(self) -> list[Path]:
        """Delete the data folders (MLflow runs and API logs); return those deleted."""
        gone = [p for p in (self.mlruns_dir, self.logs_dir) if p.exists()]
        for path in gone:
            shutil.rmtree(path)
        return gone


def unanswered(urls: Mapping[str, str], path: str = "/health", timeout: float = 10) -> list[str]:
    """Return ``NAME=url`` for each URL where nothing answers ``path`` with a 2xx."""
    silent = []
    for name, url in urls.items():
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}{path}", timeout=timeout) as answer:  # noqa: S310
                if 200 <= answer.status < 300:
                    continue
        except (OSError, urllib.error.URLError):
            pass
        silent.append(f"{name}={url}")
    return silent
