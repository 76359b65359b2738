"""A fake nox session for the operations package's unit tests (no Docker, no network)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


class SessionError(Exception):
    """What the fake session raises where nox's would stop the session."""


class FakeSession:
    """Records what a nox session would log and run; ``script`` answers or fails commands."""

    def __init__(self, script: Callable[[tuple[str, ...]], Any] | None = None) -> None:
        self.logs: list[str] = []
        self.ran: list[tuple[str, ...]] = []
        self.script = script
        self.posargs: list[str] = []

    def log(self, *args: Any, **kwargs: Any) -> None:
        self.logs.append(" ".join(map(str, args)))

    warn = log

    def error(self, *args: Any) -> None:
        raise SessionError(" ".join(map(str, args)))

    def run(self, *args: str, **kwargs: Any) -> Any:
        self.ran.append(args)
        return self.script(args) if self.script else ""

    run_install = run


@pytest.fixture
def fake_session() -> Callable[..., FakeSession]:
    return FakeSession
