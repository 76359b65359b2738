"""Bringing the main stack up and down the way `nox -s up`/`down` do, with their messages."""

from __future__ import annotations

import os

from churn_ops import images
from churn_ops.shell import OpsError, Session, port_in_use
from churn_ops.stack import Stack, StackNotHealthy


def bring_up(session: Session, stack: Stack, args: list[str]) -> float:
    """Start the stack from local (or IMAGE_PREFIX) images, wait until healthy; return seconds.

    Prints one line per change of the services' states, then the URLs.
    """
    if not any(s in ("healthy", "starting", "running") for s in stack.states().values()):
        for name, port in (("API_PORT", stack.api_port), ("MLFLOW_PORT", stack.mlflow_port)):
            if port_in_use(port):
                raise OpsError(
                    f"Port {port} is already in use on this host: stop what holds it "
                    f"(`ss -ltnp 'sport = :{port}'`), or choose another with {name}=<port> "
                    f"(e.g. `{name}={port + 10} nox -s up`)."
                )
    stack.prepare_dirs()
    compose, env = stack.command(), stack.overrides()
    if os.environ.get("IMAGE_PREFIX"):
        # Published images: pull them first, or Compose would build the missing ones locally.
        session.run(*compose, "pull", external=True, env=env)
    else:
        refs = [images.image_ref(i) for i in images.DOCKERFILES]
        missing = [ref for ref in refs if not images.image_exists(ref)]
        if missing:
            raise OpsError(
                f"No local image {', '.join(missing)}: run `nox -s build up`, or set "
                "IMAGE_PREFIX to run published images (README: another machine)."
            )
    session.run(*compose, "up", "-d", "--no-build", *args, external=True, env=env)

    def report(states: dict[str, str]) -> None:
        session.log("  " + ", ".join(f"{service}: {state}" for service, state in states.items()))

    try:
        seconds = stack.wait_healthy(float(os.environ.get("UP_TIMEOUT", "240")), on_change=report)
    except StackNotHealthy as exc:
        for service, state in exc.states.items():
            if state != "healthy":
                session.log(f"--- {service} is {state}; last lines of its log:")
                session.run(*compose, "logs", "--tail", "60", service, external=True, env=env)
        raise OpsError(f"The stack did not become healthy: {exc}") from None
    session.log(f"Stack healthy in {seconds:.1f} s.")
    for label, url in stack.public_urls().items():
        session.log(f"  {label:10} {url}")
    return seconds


def take_down(session: Session, stack: Stack, args: list[str]) -> None:
    """`down --remove-orphans`; with `--volumes` (or `-v`) also delete the data folders."""
    session.run(
        *stack.command(), "down", "--remove-orphans", *args, external=True, env=stack.overrides()
    )
    if {"--volumes", "-v"} & set(args):
        for path in stack.wipe_data():
            session.log(f"--volumes: deleted {path} (MLflow runs and API logs)")
