"""The MLflow image's start wrapper (docker/mlflow/start.py): schema upgrades on start."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

START = Path(__file__).resolve().parents[3] / "docker" / "mlflow" / "start.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_start", START)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_file_stores_and_plain_paths_are_never_upgraded(tmp_path: Path) -> None:
    start = _load()
    assert start.upgrade_schema_if_behind(f"file://{tmp_path}") is False
    assert start.upgrade_schema_if_behind(str(tmp_path)) is False


def test_an_empty_database_is_left_to_the_server(tmp_path: Path) -> None:
    start = _load()
    assert start.upgrade_schema_if_behind(f"sqlite:///{tmp_path / 'empty.db'}") is False


# The upgrade of an older schema runs in the real image against PostgreSQL:
# tests/compose/test_postgres_stack.py.
