"""`nox -s publish` against real registries on 127.0.0.1, then the stack from the pushed images.

What a user relies on: the dry run pushes nothing; a publish pushes both images under the
version, the commit and `latest`, with their OCI labels, and prints the digests the registry
serves; a release tag is never overwritten and a dirty or stale checkout is refused unless
forced; the token reaches `docker login` through stdin only; and the pushed images, pulled
back, run the stack and pass the smoke tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from publish_support import (
    IMAGES,
    MAIN_ROOT,
    NAMESPACE,
    TRAINING_STORE,
    Registry,
    Run,
    docker,
    free_port,
    publish,
    untag_registry_images,
)

from churn_ops.stack import compose_command

PROJECT = "churn-publish-test"  # Compose project of the stack started from the registry
DIGEST_LINE = re.compile(r"digest (\S+)@(sha256:[0-9a-f]{64})")


def _tail(run: Run, lines: int = 40) -> str:
    return "\n".join(run.output.splitlines()[-lines:])


@pytest.fixture(scope="module")
def version(images: dict[str, dict[str, str]]) -> str:
    return images[IMAGES[0]]["version"]


@pytest.fixture(scope="module")
def revision(images: dict[str, dict[str, str]]) -> str:
    return images[IMAGES[0]]["revision"]


@pytest.fixture(scope="module")
def dry_run(registry: Registry, workspace: Path) -> tuple[Run, list[str]]:
    """`-- --dry-run` on the empty registry, and the registry's catalog right after it."""
    run = publish(workspace, registry.address, "--dry-run")
    return run, registry.catalog()


@pytest.fixture(scope="module")
def published(
    dry_run: tuple[Run, list[str]], registry: Registry, workspace: Path, say: Callable[[str], None]
) -> Run:
    """The real publish (after the dry run, so that the dry run met an empty registry)."""
    run = publish(workspace, registry.address)
    assert run.returncode == 0, _tail(run)
    for line in run.output.splitlines():
        line = line.removeprefix("nox > ")
        if "pushed in" in line or line.startswith("  digest "):
            say(line.strip())
    say(f"nox -s publish took {run.seconds:.0f} s in all")
    return run


def test_dry_run_prints_the_plan_and_pushes_nothing(
    dry_run: tuple[Run, list[str]], registry: Registry, version: str, revision: str
) -> None:
    run, catalog = dry_run
    assert run.returncode == 0, _tail(run)
    assert catalog == []
    for image in IMAGES:
        for tag in (version, revision, "latest"):
            assert (
                f"would run: docker push {registry.address}/{NAMESPACE}/{image}:{tag}" in run.output
            )
    assert "Nothing was pushed" in run.output


def test_publish_pushes_both_images_as_version_commit_and_latest(
    published: Run, registry: Registry, version: str, revision: str
) -> None:
    assert registry.catalog() == sorted(f"{NAMESPACE}/{image}" for image in IMAGES)
    for image in IMAGES:
        assert registry.tags(f"{NAMESPACE}/{image}") == {version, revision, "latest"}


def test_the_three_tags_are_one_image_whose_blobs_are_all_in_the_registry(
    published: Run, registry: Registry, version: str, revision: str
) -> None:
    """A machine with none of the layers can pull it: every blob the manifest names is there."""
    for image in IMAGES:
        repo = f"{NAMESPACE}/{image}"
        digests = {registry.manifest(repo, tag)[0] for tag in (version, revision, "latest")}
        assert len(digests) == 1
        _, manifest = registry.manifest(repo, version)
        blobs = [manifest["config"], *manifest["layers"]]
        for blob in blobs:
            r = requests.head(f"{registry.url}/v2/{repo}/blobs/{blob['digest']}", timeout=30)
            assert r.status_code == 200, blob
            assert int(r.headers["Content-Length"]) == blob["size"]


def test_pushed_images_carry_the_oci_labels(
    published: Run, registry: Registry, version: str, revision: str
) -> None:
    for image in IMAGES:
        repo = f"{NAMESPACE}/{image}"
        _, manifest = registry.manifest(repo, version)
        config = registry.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}").json()
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == version
        assert labels["org.opencontainers.image.revision"] == revision
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"]
        )
        assert labels["org.opencontainers.image.source"].startswith("https://")
        assert labels["org.opencontainers.image.licenses"] == "MIT"
        assert labels["org.opencontainers.image.title"] == image


def test_the_pushed_api_image_names_the_model_bytes_it_holds(
    published: Run, registry: Registry, version: str
) -> None:
    # Labels set by `nox -s build` from the model records of the checkout it built from.
    from churn.model_record import file_sha256, read_record, record_path

    repo = f"{NAMESPACE}/{IMAGES[0]}"  # the API image
    _, manifest = registry.manifest(repo, version)
    labels = registry.get(f"/v2/{repo}/blobs/{manifest['config']['digest']}").json()["config"][
        "Labels"
    ]
    models = MAIN_ROOT / "models"
    manifest = json.loads(labels["org.churn.models"])
    for version_name in ("v1", "v2"):
        record = read_record(models, version_name)
        held = manifest[version_name]
        assert held["model"] == file_sha256(MAIN_ROOT / record.artifact("model").path)
        assert held["compiled"] == file_sha256(MAIN_ROOT / record.artifact("compiled").path)
        for kind, ref in record.artifacts.items():
            assert held[kind] == ref.sha256
        assert held["record"] == file_sha256(record_path(models, version_name))


def test_printed_digests_are_what_the_registry_serves(
    published: Run, registry: Registry, version: str
) -> None:
    printed = dict(DIGEST_LINE.findall(published.output))
    assert set(printed) == {f"{registry.address}/{NAMESPACE}/{image}" for image in IMAGES}
    for ref, digest in printed.items():
        repo = ref.removeprefix(f"{registry.address}/")
        assert registry.manifest(repo, version)[0] == digest
        assert registry.manifest(repo, digest)[0] == digest  # pullable by that digest
    assert "pulled back" in published.output


def test_an_existing_version_tag_is_refused_and_force_overrides(
    published: Run, registry: Registry, workspace: Path, version: str
) -> None:
    before = {i: registry.manifest(f"{NAMESPACE}/{i}", version)[0] for i in IMAGES}
    again = publish(workspace, registry.address)
    assert again.returncode != 0
    assert "Refusing to publish" in again.output
    for image in IMAGES:
        assert f"{registry.address}/{NAMESPACE}/{image}:{version} already exists" in again.output
    assert "docker push" not in again.output
    forced = publish(workspace, registry.address, "--force")
    assert forced.returncode == 0, _tail(forced)
    assert "Publishing anyway (--force)" in forced.output
    after = {i: registry.manifest(f"{NAMESPACE}/{i}", version)[0] for i in IMAGES}
    assert after == before  # the same image again: same digests


def test_a_dirty_working_tree_is_refused(
    published: Run, registry: Registry, workspace: Path
) -> None:
    tracked, untracked = workspace / ".dockerignore", workspace / "scratch-notes.txt"
    original = tracked.read_text(encoding="utf-8")
    try:
        tracked.write_text(original + "# local experiment\n", encoding="utf-8")
        untracked.write_text("not committed\n", encoding="utf-8")
        run = publish(workspace, registry.address, IMAGE_NAMESPACE="dirty")
    finally:
        tracked.write_text(original, encoding="utf-8")
        untracked.unlink()
    assert run.returncode != 0
    assert "working tree is dirty" in run.output
    assert ".dockerignore" in run.output and "scratch-notes.txt" in run.output
    assert not [repo for repo in registry.catalog() if repo.startswith("dirty/")]


def test_images_built_from_another_commit_are_refused(
    published: Run, registry: Registry, workspace: Path, revision: str
) -> None:
    git = ["git", "-C", str(workspace)]
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "later work"], check=True)
    try:
        run = publish(workspace, registry.address, IMAGE_NAMESPACE="stale")
    finally:
        subprocess.run([*git, "reset", "--quiet", "--hard", revision], check=True)
    assert run.returncode != 0
    assert f"was built from revision '{revision}'" in run.output
    assert not [repo for repo in registry.catalog() if repo.startswith("stale/")]


def test_the_token_goes_through_stdin_and_never_shows(
    auth_registry: Registry, workspace: Path, version: str, tmp_path: Path
) -> None:
    """Log in with the token, find the version taken, refuse; the token is printed nowhere."""
    # Seed the registry with a tiny image under the API's version tag, pushed with a login of
    # our own, so that publish must log in to see it and then refuses (nothing big to push).
    seed_config, user_config, scratch = (tmp_path / n for n in ("seed", "user", "tmp"))
    for folder in (seed_config, user_config, scratch):
        folder.mkdir()
    seed = f"{auth_registry.address}/{NAMESPACE}/{IMAGES[0]}:{version}"
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "seed.txt").write_text("seed\n", encoding="utf-8")
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True)
    subprocess.run(
        ["docker", "import", "-", seed], input=tar.stdout, capture_output=True, check=True
    )
    env = {**os.environ, "DOCKER_CONFIG": str(seed_config)}
    login = ["docker", "login", auth_registry.address, "-u", "robot", "--password-stdin"]
    subprocess.run(
        login,
        input=auth_registry.token,
        text=True,
        env=env,
        capture_output=True,
        check=True,
    )
    subprocess.run(["docker", "push", seed], env=env, capture_output=True, check=True)
    untag_registry_images(auth_registry.address)

    settings = {
        "DOCKER_CONFIG": str(user_config),
        "TMPDIR": str(scratch),
        "REGISTRY_USERNAME": "robot",
    }
    wrong = publish(workspace, auth_registry.address, DOCKERHUB_TOKEN="tok-wrong-0123", **settings)
    assert wrong.returncode != 0
    assert f"docker login {auth_registry.address} as robot failed" in wrong.output
    assert "tok-wrong-0123" not in wrong.output

    run = publish(workspace, auth_registry.address, DOCKERHUB_TOKEN=auth_registry.token, **settings)
    assert run.returncode != 0, _tail(run)
    assert f"Logged in to {auth_registry.address} as robot" in run.output
    assert f"{seed} already exists" in run.output
    assert auth_registry.token not in run.output
    # The login lived in a private DOCKER_CONFIG that is gone; the user's config is untouched.
    assert list(user_config.iterdir()) == []
    assert list(scratch.iterdir()) == []
    assert auth_registry.catalog() == [f"{NAMESPACE}/{IMAGES[0]}"]


# --------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def stack(
    published: Run,
    registry: Registry,
    workspace: Path,
    version: str,
    tmp_path_factory: pytest.TempPathFactory,
    say: Callable[[str], None],
) -> Iterator[dict[str, str]]:
    """The Compose stack of the clone, run from the registry's images on other ports.

    Its own project name and network: on the main stack's network `churn-prediction` both
    `mlflow` services would answer to one alias (an override file renames it, which works with
    compose files older than the STACK_NETWORK setting too).
    """
    prefix = f"{registry.address}/{NAMESPACE}/"
    removed = untag_registry_images(registry.address)
    for image in IMAGES:
        assert docker("image", "inspect", f"{prefix}{image}:{version}").returncode != 0
    say(f"untagged {len(removed)} local references to the registry's images")

    override = tmp_path_factory.mktemp("compose") / "network.yml"
    override.write_text(f"networks:\n  churn:\n    name: {PROJECT}\n", encoding="utf-8")
    compose = [
        *compose_command(),
        "-p",
        PROJECT,
        "-f",
        str(workspace / "docker" / "docker-compose.yml"),
    ]
    compose += ["-f", str(override)]
    ports = {"API_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    env = {
        **os.environ,
        **ports,
        "IMAGE_PREFIX": prefix,
        "IMAGE_TAG": version,
        "API_BIND": "127.0.0.1",
        "MLFLOW_BIND": "127.0.0.1",
        # Runs logged on the host name their artifacts by the main checkout's mlruns path.
        "MLRUNS_HOST_DIR": str(TRAINING_STORE),
    }

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], cwd=workspace, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    run("down", "--volumes", "--remove-orphans")  # leftovers of an interrupted run
    try:
        started = time.monotonic()
        pulled = run("pull")
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        say(f"compose pull from the registry: {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        up = run("up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr[-3000:]
        ids = {s: run("ps", "-q", s).stdout.strip() for s in ("mlflow", "api")}
        states: dict[str, str] = {}
        while time.monotonic() - started < 300:
            states = {
                s: docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip()
                for s, cid in ids.items()
            }
            if all(state == "healthy" for state in states.values()):
                break
            if any(state == "unhealthy" for state in states.values()):
                break
            time.sleep(2)
        if not all(state == "healthy" for state in states.values()):
            pytest.fail(
                f"stack not healthy: {states}\n{run('logs', '--tail', '40').stdout[-4000:]}"
            )
        say(f"stack from the registry healthy in {time.monotonic() - started:.1f} s")
        yield {
            "api_url": f"http://127.0.0.1:{ports['API_PORT']}",
            "mlflow_url": f"http://127.0.0.1:{ports['MLFLOW_PORT']}",
            **{f"{s}_container": cid for s, cid in ids.items()},
        }
    finally:
        down = run("down", "--volumes", "--remove-orphans")
        if down.returncode != 0:
            say(f"compose down failed: {down.stderr[-1000:]}")


def test_the_stack_runs_the_images_from_the_registry(
    stack: dict[str, str], registry: Registry, version: str
) -> None:
    for service, image in (("api", IMAGES[0]), ("mlflow", IMAGES[1])):
        used = docker("inspect", "--format", "{{.Config.Image}}", stack[f"{service}_container"])
        assert used.stdout.strip() == f"{registry.address}/{NAMESPACE}/{image}:{version}"


def test_the_smoke_tests_pass_against_the_stack_from_the_registry(
    stack: dict[str, str], workspace: Path, say: Callable[[str], None]
) -> None:
    env = {**os.environ, "API_URL": stack["api_url"], "MLFLOW_URL": stack["mlflow_url"]}
    started = time.monotonic()
    smoke = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/smoke"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    summary = (smoke.stdout.strip().splitlines() or ["no output"])[-1]
    say(
        f"smoke tests against the registry's images: {summary} ({time.monotonic() - started:.0f} s)"
    )
    assert smoke.returncode == 0, smoke.stdout[-6000:]
    assert " passed" in summary and "skipped" not in summary
