"""Which images `nox -s build` and the sessions that run extra images build (no Docker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from churn_ops import images
from churn_ops.shell import OpsError

from .conftest import FakeSession


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeSession], list[str]]:
    """The images a fake session built, in order (base image and labels stubbed)."""
    monkeypatch.setattr(images, "base_image", lambda session, root: "base:1")
    monkeypatch.setattr(images, "git_revision", lambda root: "abc")
    monkeypatch.setattr(
        images, "model_artifact_labels", lambda root: {images.MODELS_LABEL: '{"v2":{}}'}
    )
    monkeypatch.delenv("IMAGE_PREFIX", raising=False)
    monkeypatch.delenv("IMAGE_TAG", raising=False)

    def names(session: FakeSession) -> list[str]:
        return [cmd[cmd.index("-t") + 1].split(":")[0] for cmd in session.ran]

    return names


def test_the_main_job_builds_only_the_images_its_stack_runs(
    fake_session: Callable[..., FakeSession], built: Callable[[FakeSession], list[str]]
) -> None:
    session = fake_session()
    images.build_all(session, ["--pull"], Path.cwd())  # type: ignore[arg-type]
    assert built(session) == ["churn-mlflow", "churn-prediction-api"]
    assert all("--pull" in cmd for cmd in session.ran)
    # The API's model manifest, as the build argument of its LABEL instruction.
    assert [cmd for cmd in session.ran if '--build-arg=MODELS={"v2":{}}' in cmd] == [session.ran[1]]


def test_build_all_builds_every_image(
    fake_session: Callable[..., FakeSession], built: Callable[[FakeSession], list[str]]
) -> None:
    session = fake_session()
    images.build_all(session, ["--all"], Path.cwd())  # type: ignore[arg-type]
    assert built(session) == [
        "churn-mlflow",
        "churn-prediction-api",
        "churn-lb",
        "churn-postgres",
        "churn-prometheus",
    ]
    assert not any("--all" in cmd for cmd in session.ran)


def test_extra_images_are_built_on_demand_and_never_with_published_images(
    fake_session: Callable[..., FakeSession],
    built: Callable[[FakeSession], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = fake_session()
    images.ensure_images(session, ["churn-lb"], Path.cwd())  # type: ignore[arg-type]
    images.ensure_images(session, [], Path.cwd())  # type: ignore[arg-type]
    assert built(session) == ["churn-lb"]
    with pytest.raises(OpsError, match="not an extra image: churn-prediction-api"):
        images.ensure_images(session, ["churn-prediction-api"], Path.cwd())  # type: ignore[arg-type]
    monkeypatch.setenv("IMAGE_PREFIX", "registry.example:5000/someone/")
    images.ensure_images(session, ["churn-postgres"], Path.cwd())  # type: ignore[arg-type]
    assert built(session) == ["churn-lb"]
