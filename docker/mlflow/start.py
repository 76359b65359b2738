"""Start the MLflow tracking server as the container's only process.

`mlflow server` checks its options, prepares the backend store and then starts uvicorn as a
child process that it waits for: two Python processes that each import all of MLflow, which
doubles the start time and leaves an idle parent of about 150 MiB. With no job runner to
supervise (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, this image's default), this wrapper runs
the same command and serves from the same process instead: the same options and checks, MLflow
imported once, and uvicorn receives the container's signals directly.

Before that, a database backend store whose schema is older than this MLflow (a PostgreSQL
store kept across an image upgrade, say) is migrated, as `mlflow db upgrade` would do; the
server itself would refuse to start on it. An empty database is left to the server, which
creates its tables.

When the data folder /mlflow belongs to another user (a host user's mlruns/ opened to the
server by docker/mlflow/prepare_data.py), the server writes with umask 0, so that this user
can still read and remove every run and artifact it creates.

Any other command (`mlflow db upgrade ...`, `python ...`) is executed unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

_log = logging.getLogger("churn.mlflow.start")


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _serve_in_process(
    cmd: Sequence[str], *, extra_env: Mapping[str, str] | None = None, **_: object
) -> None:
    """Stand in for mlflow's `_exec_cmd`: serve in this process instead of a child's.

    `cmd` is the `python -m uvicorn ...` command `mlflow server` built; uvicorn's own CLI runs it
    here, where MLflow's modules are already imported, and exits the process when it stops.
    """
    os.environ.update(extra_env or {})
    from uvicorn.main import main as uvicorn_main

    args = list(cmd)
    uvicorn_main.main(args=args[args.index("uvicorn") + 1 :], prog_name="uvicorn")


def upgrade_schema_if_behind(uri: str) -> bool:
    """Migrate a database store whose schema is older than this MLflow; return True if it did.

    File stores and empty databases are left alone (the server creates its tables itself).
    """
    if "://" not in uri or uri.startswith(("file:", "/")):
        return False
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        _upgrade_db,
        create_sqlalchemy_engine_with_retry,
    )

    engine = create_sqlalchemy_engine_with_retry(uri)
    try:
        current = _get_schema_version(engine)
        head = _get_latest_schema_revision()
        if current is None or current == head:
            return False
        _log.warning("Backend store schema %s is older than %s: upgrading it.", current, head)
        _upgrade_db(engine)
        return True
    finally:
        engine.dispose()


def main(argv: Sequence[str]) -> None:
    """Run `mlflow server ...`, serving from this process when it can; exec any other command."""
    args = list(argv) or ["mlflow", "server"]
    if args[:2] != ["mlflow", "server"]:
        os.execvp(args[0], args)
    in_process = not _is_true(os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true"))
    if in_process:
        # Imported before anything of MLflow, as in a server process of `mlflow server`:
        # MLflow turns on its Host-header and CORS checks when imported into a uvicorn process.
        import uvicorn  # noqa: F401
    data = "/mlflow"
    if os.path.isdir(data) and os.stat(data).st_uid != os.getuid():
        os.umask(0)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
    if backend:
        upgrade_schema_if_behind(backend)
    import mlflow.server
    from mlflow.cli import cli

    if in_process:
        # No job runner to supervise: no reason for a second process that imports it all again.
        mlflow.server._exec_cmd = _serve_in_process  # type: ignore[attr-defined]
    cli.main(args=args[1:], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
