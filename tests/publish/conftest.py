"""Fixtures for the publish test: real registries on 127.0.0.1 and a clean clone to publish from.

Run through `nox -s publish-test` after `nox -s build up` (CI does so while the images exist).
Nothing leaves 127.0.0.1. The helpers (registries, docker, nox runs) are in publish_support.py.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from publish_support import (
    IMAGES,
    MAIN_ROOT,
    TRAINING_STORE,
    Registry,
    start_registry,
    stop_registry,
)

from churn_ops.images import oci_labels
from churn_ops.stack import copy_store, give_to_containers


@pytest.fixture(scope="session")
def say(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print a step or a figure on the terminal, past pytest's output capture."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def _say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[publish-test] {message}", end="", flush=True)

    return _say


@pytest.fixture(scope="session")
def images() -> dict[str, dict[str, str]]:
    """The OCI labels of the two local images `nox -s build` made, without their prefix."""
    found = {}
    for image in IMAGES:
        labels = oci_labels(f"{image}:latest")
        if labels is None:
            pytest.fail(f"{image}:latest is missing: run `nox -s build` before this test.")
        found[image] = labels
    revisions = {labels.get("revision", "") for labels in found.values()}
    if len(revisions) != 1:
        pytest.fail(f"the two images were built from different revisions {revisions}: rebuild.")
    return found


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An open registry (no auth, plain HTTP) on 127.0.0.1, as on a developer's machine."""
    address, process = start_registry(tmp_path_factory.mktemp("registry"))
    started = Registry(address, process)
    yield started
    stop_registry(started)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that wants a login (htpasswd, bcrypt): user `robot`, a random token."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt", reason="bcrypt hashing needs the crypt module")
    token = "tok-" + os.urandom(12).hex()
    line = "robot:" + crypt.crypt(token, crypt.mksalt(crypt.METHOD_BLOWFISH))
    address, process = start_registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=line)
    started = Registry(address, process, user="robot", token=token)
    yield started
    stop_registry(started)


def _copy_training_store(source: Path, target: Path) -> None:
    """Copy mlruns/ consistently (safe while a server writes), or say why it cannot be."""
    if not (source / "mlflow.db").is_file():
        pytest.fail(
            f"{source}/mlflow.db is missing: the smoke tests look up the training runs there. "
            "Run `nox -s build up` first (CI runs this test after the main job), or point "
            "PUBLISH_TEST_MLRUNS at the store the images' models were trained into."
        )
    copy_store(source, target)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, images: dict[str, dict[str, str]]) -> Path:
    """A clean clone of the repo at the commit the images were built from, with a training store.

    Publishing from it never meets other people's uncommitted work, and the stack started from
    it bind-mounts its own mlruns/ and logs/, not the main stack's. Its mlruns/ is a copy of the
    main checkout's, so the runs the baked-in models name are in the tracking server.
    """
    revision = next(iter(images.values())).get("revision", "")
    clone = tmp_path_factory.mktemp("publish") / "repo"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(MAIN_ROOT), str(clone)], check=True
    )
    checkout = subprocess.run(
        ["git", "-C", str(clone), "checkout", "--quiet", "--detach", revision],
        capture_output=True,
        text=True,
        check=False,
    )
    if checkout.returncode != 0:
        pytest.fail(f"the images' revision {revision!r} is not a commit of this repo: rebuild.")
    if "def publish(" not in (clone / "noxfile.py").read_text(encoding="utf-8"):
        pytest.fail(f"the images were built from {revision}, before `nox -s publish`: rebuild.")
    for key, value in (("user.email", "publish-test@127.0.0.1"), ("user.name", "publish-test")):
        subprocess.run(["git", "-C", str(clone), "config", key, value], check=True)
    _copy_training_store(TRAINING_STORE, clone / "mlruns")
    (clone / "logs").mkdir()
    give_to_containers(clone / "mlruns")
    give_to_containers(clone / "logs")
    return clone
