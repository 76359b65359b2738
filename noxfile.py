"""Automation for the churn-prediction service: pipeline, images, stack and tests.

`nox -l` lists the sessions; `nox -s build up smoke` is the main job. Arguments after `--`
reach the tool underneath (dvc, docker compose, pytest, ...). A `.env` at the repo root sets
any setting of .env.example; a variable set in the shell wins. The work is done by the
operations package `src/churn_ops/` (stack driver, images, artifacts, publishing, tool
installs); this file is the menu. Sessions that need the dev lock share one environment,
`.nox/dev` (churn_ops.devenv).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # the operations package, from the Python running nox

from churn_ops import (
    artifacts,
    devenv,
    images,
    k8s,
    lifecycle,
    monitoring,
    promotion,
    suites,
    swarm,
    training,
)
from churn_ops import menu as ops_menu
from churn_ops import publish as publishing
from churn_ops.shell import ensure_tool
from churn_ops.stack import Stack, require_docker

nox.options.sessions = ["lint", "tests"]


menu = ops_menu.menu_for(ROOT)
dev = functools.partial(ops_menu.use_dev_env, root=ROOT)
pytest = ops_menu.run_pytest


@menu()
def lint(session: nox.Session) -> None:
    """Lint Python (ruff), Dockerfiles (hadolint), YAML (yamllint): the pre-commit hooks."""
    dev(session)
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", external=True)
    actionlint = suites.actionlint_args(session, ROOT)
    if actionlint:
        session.run(*actionlint, external=True)


@menu()
def tests(session: nox.Session) -> None:
    """Run the test suite (no Docker engine needed)."""
    dev(session)
    args = session.posargs or ["tests/unit", "tests/devcontainer"]
    # One OpenMP thread: on a small machine, scikit-learn's threaded gradient boosting is
    # several times slower than single-threaded for the test suite's small fits.
    session.run("pytest", *args, external=True, env={"OMP_NUM_THREADS": "1"})


@menu()
def lock(session: nox.Session) -> None:
    """Regenerate the hashed lock files (images, dev, the bench's BentoML) with uv."""
    devenv.compile_locks(session, list(session.posargs))


@menu()
def pull(session: nox.Session) -> None:
    """Pull the DVC-tracked data and models from the configured remote."""
    dev(session)
    session.run("dvc", "pull", *session.posargs, external=True)


@menu()
def train(session: nox.Session) -> None:
    """Reproduce the DVC pipeline (data, features, both models, metrics), logging to MLflow."""
    dev(session)
    training.train(session, list(session.posargs), ROOT)


@menu()
def promote(session: nox.Session) -> None:
    """Move a registry alias: `nox -s promote -- <version> [--alias champion|challenger]`."""
    promotion.nox_session(session, ROOT, "promote")


@menu()
def rollback(session: nox.Session) -> None:
    """Move the registry alias champion back to the version it pointed to before."""
    promotion.nox_session(session, ROOT, "rollback")


@menu()
def serve(session: nox.Session) -> None:
    """Serve the API locally with Waitress, without Docker (needs the artifacts)."""
    dev(session)
    serve_args = ("python", "-m", "churn.api.serve", *session.posargs)
    session.run(*serve_args, external=True, env={"CHURN_ROOT": str(ROOT)})


@menu()
def build(session: nox.Session) -> None:
    """Make sure the artifacts are there, then build both images (`-- --all`: every image)."""
    require_docker()
    dev(session)
    artifacts.ensure(session)
    images.build_all(session, list(session.posargs), ROOT)


@menu()
def up(session: nox.Session) -> None:
    """Start the stack, wait until healthy (`-- --replicas N` behind a lb; `-- --monitoring`)."""
    require_docker()
    args, with_prometheus = monitoring.split_flag(list(session.posargs))
    stack, args = swarm.replicated(Stack.from_environment(ROOT), args)
    images.ensure_images(session, ["churn-lb"] * ("--scale" in args), ROOT)
    if with_prometheus:
        monitoring.ensure_image(session, ROOT)
        stack.extra_files.append(monitoring.override_file(ROOT))
    lifecycle.bring_up(session, stack, args)
    for service in ["lb"] * ("--scale" in args) + ["prometheus"] * with_prometheus:
        stack.wait_service(service)  # the balancer and Prometheus, as the overrides add them
    if with_prometheus:
        session.log(f"  {'Dashboard':10} {monitoring.dashboard_url()}")


@menu()
def smoke(session: nox.Session) -> None:
    """Run the smoke tests against the running stack (API_URL, MLFLOW_URL)."""
    env = suites.client_env(Stack.from_environment(ROOT))
    suites.require_answering(env)
    dev(session)
    pytest(session, "tests/smoke", *session.posargs, **env)


@menu()
def down(session: nox.Session) -> None:
    """Stop the stack; data is kept (`-- --volumes` also deletes mlruns/ and logs/)."""
    require_docker()
    stack = Stack.from_environment(ROOT)
    stack.extra_files.append(monitoring.override_file(ROOT))  # Prometheus too, if it was started
    lifecycle.take_down(session, stack, list(session.posargs))


@menu()
def logs(session: nox.Session) -> None:
    """Print the stack's logs (`-- -f` follows them)."""
    require_docker()
    stack = Stack.from_environment(ROOT)
    args = session.posargs or ["--tail", "200"]
    session.run(*stack.command(), "logs", *args, external=True, env=stack.overrides())


@menu()
def settings(session: nox.Session) -> None:
    """Print the stack settings in effect (shell, then .env, then defaults) and its URLs."""
    stack = Stack.from_environment(ROOT)
    for name, value in sorted(stack.overrides().items()):
        session.log(f"{name}={value}")
    for label, url in stack.public_urls().items():
        session.log(f"  {label:10} {url}")


@menu()
def publish(session: nox.Session) -> None:
    """Tag and push both images to a registry (REGISTRY, IMAGE_NAMESPACE); --dry-run, --force."""
    publishing.publish(session, list(session.posargs), ROOT)


@menu(name="publish-test")
def publish_test(session: nox.Session) -> None:
    """Publish to a throwaway registry on 127.0.0.1, run the stack from it, smoke-test it."""
    require_docker()
    suites.require_registry(session)
    dev(session)
    # The test runs `nox -s publish` with the Python that runs this nox.
    pytest(session, *(session.posargs or ["tests/publish"]), PUBLISH_TEST_PYTHON=sys.executable)


@menu()
def browser(session: nox.Session) -> None:
    """Drive the running stack's pages in headless Chromium; screenshots in results/screenshots/."""
    env = suites.browser_env(session, Stack.from_environment(ROOT), ROOT)
    dev(session)
    pytest(session, "tests/browser", *session.posargs, **env)
    session.log(f"Screenshots: {env['SCREENSHOTS_DIR']}")


@menu()
def learn(session: nox.Session) -> None:
    """Run every command of docs/learn.md as printed, in order, against the running stack."""
    suites.require_answering(suites.client_env(Stack.from_environment(ROOT)))
    dev(session)
    pytest(session, "-v", *(session.posargs or ["tests/learn"]))


@menu()
def compose(session: nox.Session) -> None:
    """Container tests of the Compose files on stacks of their own (by-hand `up`, PostgreSQL)."""
    require_docker()
    images.ensure_images(session, ["churn-postgres"], ROOT)
    dev(session)
    pytest(session, *(session.posargs or ["tests/compose"]))


@menu()
def devcontainer(session: nox.Session) -> None:
    """Check .devcontainer/: the JSON schema, then the post-create script in a fresh container."""
    require_docker()
    dev(session)
    pytest(session, "-s", *(session.posargs or ["tests/devcontainer"]), CHURN_CONTAINER_TESTS="1")


@menu()
def bench(session: nox.Session) -> None:
    """Benchmark the API against `mlflow models serve` and BentoML with wrk (results/bench/)."""
    suites.require_wrk(session)
    dev(session)
    args = suites.bench_args(session, Stack.from_environment(ROOT), ROOT)
    session.run("python", "-m", "benchmarks", *args, *session.posargs, external=True)


@menu(name="monitoring-rules")
def monitoring_rules(session: nox.Session) -> None:
    """Check and unit-test the Prometheus alert rules with promtool."""
    monitoring.test_rules(session)


@menu(name="drift-report")
def drift_report(session: nox.Session) -> None:
    """Write the running API's drift report (reports/) and log it to MLflow."""
    dev(session)
    url = os.environ.get("API_URL", Stack.from_environment(ROOT).api_url)
    session.run("python", "-m", "churn.drift_report", "--url", url, *session.posargs, external=True)


@menu()
def reliability(session: nox.Session) -> None:
    """Bad input, fuzzing, faults, soak, data and hardening tests on a stack of its own."""
    require_docker()
    Stack.from_environment(ROOT)  # fails early, with what to install, when there is no Compose
    dev(session)  # the dev lock carries schemathesis
    ensure_tool(session, "wrk", "wrk", " (the soak falls back to its Python client)")
    # The data test runs `nox -s down` and `nox -s up` on the suite's stack with this Python.
    pytest(
        session, "-rs", *(session.posargs or ["tests/reliability"]), RELIABILITY_NOX=sys.executable
    )


@menu(name="lifecycle")
def lifecycle_tests(session: nox.Session) -> None:
    """Alias move, MLflow outage, shadow, canary under wrk load, on a registry stack of its own."""
    require_docker()
    suites.require_wrk(session)
    dev(session)
    pytest(session, "-rs", *(session.posargs or ["tests/lifecycle"]))


@menu()
def deploy(session: nox.Session) -> None:
    """Deploy the stack to Docker Swarm (`-- --replicas N`, default 2), behind a load balancer."""
    images.ensure_images(session, ["churn-lb", "churn-postgres"], ROOT)
    swarm.deploy_session(session, ROOT, list(session.posargs))


@menu()
def undeploy(session: nox.Session) -> None:
    """Remove the Swarm stack (`-- --volumes` also its data); leave a swarm `deploy` initialised."""
    swarm.SwarmStack.from_environment(ROOT, session.log).undeploy("--volumes" in session.posargs)


@menu(name="swarm")
def swarm_tests(session: nox.Session) -> None:
    """Swarm suite: rolling update and a killed replica under wrk load, throughput of 1 and 2."""
    suites.require_wrk(session)
    images.ensure_images(session, ["churn-lb", "churn-postgres"], ROOT)
    dev(session)
    pytest(session, "-rs", "-s", *(session.posargs or ["tests/swarm"]))


@menu(name="k8s")
def kubernetes(session: nox.Session) -> None:
    """Render and validate every deploy/k8s overlay offline; `-- apply [overlay]` deploys it."""
    k8s.session_main(session, ROOT, lambda: dev(session), functools.partial(pytest, session))


if __name__ == "__main__":  # pragma: no cover - `python noxfile.py` is not how to run it
    sys.exit("Run `nox -l` to list the sessions.")
