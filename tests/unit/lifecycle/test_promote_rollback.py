"""`nox -s promote` / `rollback`: alias moves on a real MLflow server, and bad input refused."""

from __future__ import annotations

import pytest

from churn_ops.promotion import LifecycleError, main, promote, rollback, status

from .conftest import MlflowServer, Registered


def _alias(registered: Registered, alias: str) -> str | None:
    try:
        return registered.client.get_model_version_by_alias(registered.name, alias).version
    except Exception:  # noqa: BLE001 - no such alias
        return None


def test_promote_points_the_alias_and_says_what_changed(registered: Registered) -> None:
    first = promote(registered.client, "v1", name=registered.name)
    assert (first.before, _alias(registered, "champion")) == (None, "1")
    second = promote(registered.client, "v2", name=registered.name)
    assert str(second) == (
        f"{registered.name}@champion: v1 (registry version 1) -> v2 (registry version 2)"
    )
    assert _alias(registered, "champion") == "2"
    challenger = promote(registered.client, "1", "challenger", name=registered.name)
    assert challenger.after == "v1 (registry version 1)"
    assert _alias(registered, "challenger") == "1"


def test_rollback_walks_back_through_earlier_champions(registered: Registered) -> None:
    number = registered.register("v2")  # a retrained v2: registry version 3
    for spec in ("v1", "2", "v2"):
        promote(registered.client, spec, name=registered.name)
    assert _alias(registered, "champion") == number
    assert rollback(registered.client, registered.name).after == "v2 (registry version 2)"
    assert rollback(registered.client, registered.name).after == "v1 (registry version 1)"
    with pytest.raises(LifecycleError, match="nothing to roll back to"):
        rollback(registered.client, registered.name)
    assert _alias(registered, "champion") == "1"


@pytest.mark.parametrize(
    ("spec", "alias", "message"),
    [
        ("v9", "champion", "unknown version 'v9'.*registered: v1 \\(registry version 1\\)"),
        ("17", "champion", "unknown version '17'"),
        ("v2", "canary", "unknown alias 'canary'; choose one of: champion, challenger"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    registered: Registered, spec: str, alias: str, message: str
) -> None:
    promote(registered.client, "v1", name=registered.name)
    before = status(registered.client, registered.name)
    with pytest.raises(LifecycleError, match=message):
        promote(registered.client, spec, alias, name=registered.name)
    assert status(registered.client, registered.name) == before


def test_command_line_prints_the_change_and_exits_2_on_bad_input(
    registered: Registered,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    assert main(["--model", registered.name, "promote", "v2"]) == 0
    assert "@champion: (none) -> v2 (registry version 2)" in capsys.readouterr().out
    assert main(["--model", registered.name, "rollback"]) == 2
    assert "error: nothing to roll back to" in capsys.readouterr().err
    assert main(["--model", "no-such-model", "promote", "v1"]) == 2
    assert "no registered model 'no-such-model'" in capsys.readouterr().err


def test_promote_and_rollback_on_the_local_store_as_nox_runs_them(
    registered: Registered, mlflow_server: MlflowServer
) -> None:
    """`nox -s promote`/`rollback` on the host read the store file, where numbers are ints."""
    from mlflow import MlflowClient

    local = MlflowClient(tracking_uri=f"sqlite:///{mlflow_server.folder / 'mlflow.db'}")
    promote(local, "v1", name=registered.name)
    promote(local, "2", name=registered.name)
    assert _alias(registered, "champion") == "2"
    assert rollback(local, registered.name).after == "v1 (registry version 1)"
    assert _alias(registered, "champion") == "1"
