"""The DVC artifacts: pull them, else reproduce them, and check their runs are in MLflow.

`python -m churn_ops.artifacts missing-runs` prints (as JSON) the models' MLflow run ids that
the local store lacks; it runs in a session's environment, where MLflow is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from churn.config import ArtifactPaths
from churn_ops.shell import Session
from churn_ops.stack import REPO_ROOT

#: Where a check that found every run is remembered, with what it depends on (`_store_key`):
#: importing MLflow and opening its store costs seconds on every `nox -s build`.
CHECKED_STAMP = Path(".nox") / "runs-checked.json"


def model_run_ids(root: Path = REPO_ROOT) -> list[str]:
    """Return the MLflow run id of each model's run record (`models/model_vN.run.json`).

    A model whose run record is absent (pulled artifacts carry none: run records are per-run
    values, kept out of DVC) or names another model file counts as a run the store lacks: it
    is named ``no-run-record:<version>``, which no store holds.
    """
    run_ids = []
    files = ArtifactPaths(root).model_files
    for version in files.versions():
        record = json.loads(files.record(version).read_text(encoding="utf-8"))
        run_path = files.run_record(version)
        run = json.loads(run_path.read_text(encoding="utf-8")) if run_path.exists() else {}
        model_sha = record.get("artifacts", {}).get("model", {}).get("sha256")
        matches = run.get("model_sha256") == model_sha
        run_id = run.get("mlflow", {}).get("run_id") if matches else None
        run_ids.append(str(run_id) if run_id else f"no-run-record:{files.record(version).stem}")
    return run_ids


def missing_runs(root: Path = REPO_ROOT) -> list[str]:
    """Return the models' run ids that the local MLflow store (mlruns/mlflow.db) lacks.

    Asked through `mlflow.MlflowClient`, never by reading MLflow's tables. With a tracking
    server of one's own (MLFLOW_TRACKING_URI) there is nothing to check here.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return []
    run_ids = model_run_ids(root)
    db = root / "mlruns" / "mlflow.db"
    if not db.exists() or not run_ids:
        return run_ids
    stamp = root / CHECKED_STAMP
    key = _store_key(db, run_ids)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(stamp.read_text(encoding="utf-8")) == key:
            return []
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=f"sqlite:///{db.resolve().as_posix()}")
    missing = []
    for run_id in run_ids:
        if run_id.startswith("no-run-record:"):
            missing.append(run_id)
            continue
        try:
            client.get_run(run_id)
        except MlflowException:
            missing.append(run_id)
    if not missing:
        with contextlib.suppress(OSError):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(key), encoding="utf-8")
    return missing


def _store_key(db: Path, run_ids: list[str]) -> dict[str, object]:
    """Return what a positive check depends on: the run ids and which store file (not its bytes).

    A store deleted and made again (`nox -s down -- --volumes`, a fresh clone) is another
    file (another inode); a run is never removed from a store by the project's own commands.
    """
    info = db.stat()
    return {"run_ids": run_ids, "store": [info.st_dev, info.st_ino]}


def dvc_up_to_date(session: Session) -> bool:
    """Tell whether the workspace's DVC outputs match dvc.lock (`dvc status` says nothing)."""
    out = session.run("dvc", "status", "--json", silent=True, success_codes=[0, 1])
    try:
        return not json.loads(out or "{}")
    except (TypeError, json.JSONDecodeError):
        return False


def ensure(session: Session) -> None:
    """`dvc pull` the artifacts; where the remote cannot serve them, reproduce them.

    Pulled models whose training runs are not in the local MLflow store (they were trained on
    another machine or clone) are retrained, so that the provenance the API reports (`/models`)
    points at runs the stack's MLflow server really has.
    """
    # Up to date: nothing to pull. Else a pull from an empty or unreachable remote fails, and
    # `dvc status` then tells what is still missing.
    current = dvc_up_to_date(session)
    if not current:
        session.run("dvc", "pull", "--quiet", success_codes=[0, 1])
        current = dvc_up_to_date(session)
    if not current:
        session.log(
            "The DVC remote could not serve the artifacts (empty or unreachable): "
            "reproducing them with `dvc repro` instead."
        )
        session.run("dvc", "repro")
        return
    out = session.run("python", "-m", "churn_ops.artifacts", "missing-runs", silent=True)
    # Its last line is the JSON answer (MLflow may log before it on the same stream).
    missing = json.loads((str(out or "").strip().splitlines() or ["[]"])[-1])
    if missing:
        session.log(
            f"The artifacts are present, but their training runs ({', '.join(missing)}) are not "
            "in the local MLflow store mlruns/: retraining with `dvc repro --force` so that the "
            "stack's MLflow shows the runs its models come from."
        )
        session.run("dvc", "repro", "--force")
        return
    session.log("DVC artifacts are present, match dvc.lock, and their runs are in mlruns/.")


def main(argv: list[str] | None = None) -> int:
    """Command line: `missing-runs [ROOT]` prints the missing run ids as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "missing-runs":
        print("usage: python -m churn_ops.artifacts missing-runs [ROOT]", file=sys.stderr)
        return 2
    root = Path(args[1]) if len(args) > 1 else REPO_ROOT
    print(json.dumps(missing_runs(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
