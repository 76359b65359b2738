"""Move the registry aliases the API serves: ``promote``, ``rollback`` and ``status``.

The commands behind ``nox -s promote -- <version> [--alias champion]`` and ``nox -s rollback``
(``python -m churn_ops.promotion promote|rollback|status``). They work on the registered model
`churn.registry_names.REGISTERED_MODEL` of the tracking store training logs to
(``MLFLOW_TRACKING_URI``, else the local store ``mlruns/``).

A version is named as training names it (``v2``: its latest registration) or by its registry
number (``3``). Every move of ``champion`` first records where it pointed in the registered
model's tag `CHAMPION_HISTORY_TAG`, so ``rollback`` can move it back, even from another
machine. Bad input changes nothing and ends with one line saying why (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from churn.registry_names import (
    ALIASES,
    CHAMPION,
    CHAMPION_HISTORY_TAG,
    HISTORY_LIMIT,
    REGISTERED_MODEL,
    VERSION_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from churn_ops.shell import Session

__all__ = [
    "Change",
    "LifecycleError",
    "main",
    "nox_session",
    "promote",
    "rollback",
    "status",
]


class LifecycleError(Exception):
    """Bad input or a registry without what the command needs; nothing was changed."""


@dataclass(frozen=True)
class Change:
    """One alias move: where it pointed before (None: nowhere) and where it points now."""

    model: str
    alias: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.before == self.after:
            return f"{self.model}@{self.alias}: unchanged, still {self.after}"
        return f"{self.model}@{self.alias}: {self.before or '(none)'} -> {self.after}"


def _label(version: ModelVersion) -> str:
    """``v2 (registry version 3)``."""
    return f"{version.tags.get(VERSION_TAG, '?')} (registry version {version.version})"


def _number(version: ModelVersion) -> str:
    """Return a registry version's number as text (the local store gives an int, REST a str)."""
    return str(version.version)


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every registry version of the registered model, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise LifecycleError(
                f"no registered model {name!r} in {client.tracking_uri}: train "
                "first (`nox -s train`), or point MLFLOW_TRACKING_URI at the right server"
            ) from None
        raise
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version))


def _resolve(client: MlflowClient, name: str, spec: str) -> ModelVersion:
    """Return the registry version ``spec`` names (``v2``: its latest; ``3``: that one)."""
    spec = spec.strip()
    versions = _versions(client, name)
    if spec.isdigit():
        matches = [v for v in versions if _number(v) == str(int(spec))]
    else:
        matches = [v for v in versions if v.tags.get(VERSION_TAG) == spec]
    if not matches:
        known = ", ".join(_label(v) for v in versions) or "none"
        shown = spec if len(spec) <= 40 else spec[:40] + "..."
        raise LifecycleError(f"unknown version {shown!r} of {name}; registered: {known}")
    return matches[-1]


def _alias_target(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _history(client: MlflowClient, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(CHAMPION_HISTORY_TAG, "[]")
    try:
        history = json.loads(raw)
    except ValueError:
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def promote(
    client: MlflowClient, spec: str, alias: str = CHAMPION, name: str = REGISTERED_MODEL
) -> Change:
    """Point ``alias`` at the version ``spec`` names; record the old champion for rollback.

    Raises:
        LifecycleError: unknown alias, version or registered model (nothing changed).

    """
    if alias not in ALIASES:
        raise LifecycleError(f"unknown alias {alias[:40]!r}; choose one of: {', '.join(ALIASES)}")
    target = _resolve(client, name, spec)
    current = _alias_target(client, name, alias)
    before = _label(current) if current is not None else None
    if current is not None and _number(current) == _number(target):
        return Change(name, alias, before, before)
    if alias == CHAMPION and current is not None:
        history = (_history(client, name) + [_number(current)])[-HISTORY_LIMIT:]
        client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, alias, target.version)
    return Change(name, alias, before, _label(target))


def rollback(client: MlflowClient, name: str = REGISTERED_MODEL) -> Change:
    """Move ``champion`` back to the version it pointed to before its last move.

    Raises:
        LifecycleError: no earlier champion is recorded (nothing changed).

    """
    known = {_number(v): v for v in _versions(client, name)}
    history = _history(client, name)
    current = _alias_target(client, name, CHAMPION)
    while history and history[-1] not in known:  # deleted since: skip it
        history.pop()
    if not history:
        raise LifecycleError(
            f"nothing to roll back to: {name}@{CHAMPION} has no earlier version "
            "recorded (promote one with `nox -s promote -- <version>`)"
        )
    previous = known[history.pop()]
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
    return Change(name, CHAMPION, _label(current) if current else None, _label(previous))


def status(client: MlflowClient, name: str = REGISTERED_MODEL) -> list[str]:
    """Lines describing every registry version and the aliases pointing at it."""
    versions = _versions(client, name)
    pointing: dict[str, list[str]] = {}
    for alias, number in (client.get_registered_model(name).aliases or {}).items():
        pointing.setdefault(str(number), []).append(alias)
    lines = []
    for version in versions:
        aliases = ", ".join(sorted(pointing.get(_number(version), [])))
        lines.append(f"{_label(version)}{'  <- ' + aliases if aliases else ''}")
    history = _history(client, name)
    lines.append(f"earlier champions (rollback pops the last): {history or 'none'}")
    return lines


def tracking_uri(root: Path, env: dict[str, str] | None = None) -> str:
    """Return the tracking store of the training runs: ``MLFLOW_TRACKING_URI`` or ``mlruns/``."""
    from churn.mlflow_store import resolve_target

    return resolve_target(root, os.environ if env is None else env).tracking_uri


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``promote <version> [--alias A]``, ``rollback`` or ``status``."""
    parser = argparse.ArgumentParser(prog="python -m churn_ops.promotion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    move = commands.add_parser("promote", help="point an alias at a version")
    move.add_argument("version", help="v1, v2, ... (its latest registration) or a registry number")
    move.add_argument("--alias", default=CHAMPION, help=f"one of {', '.join(ALIASES)}")
    commands.add_parser("rollback", help=f"move {CHAMPION} back to its previous version")
    commands.add_parser("status", help="list the registry versions and their aliases")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root")
    parser.add_argument("--model", default=REGISTERED_MODEL, help="registered model name")
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(args.root))
    try:
        if args.command == "promote":
            print(promote(client, args.version, args.alias, args.model))
        elif args.command == "rollback":
            print(rollback(client, args.model))
        else:
            print("\n".join(status(client, args.model)))
    except LifecycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def nox_session(session: Session, root: Path, command: str) -> None:
    """Run ``command`` (promote, rollback) with the session's arguments in the dev environment."""
    from churn_ops import devenv

    devenv.activate(session, root)
    args = ["python", "-m", "churn_ops.promotion", "--root", str(root), command]
    session.run(*args, *session.posargs, external=True)


if __name__ == "__main__":
    sys.exit(main())
