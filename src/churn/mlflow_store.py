"""MLflow tracking of training runs: where runs go, and what one run logs and registers.

Only the training code imports this module (and it imports MLflow lazily), so serving code
never pulls MLflow in. Where runs go:

* ``MLFLOW_TRACKING_URI`` when set (e.g. ``http://localhost:5001``, the Compose server);
* else the local store ``sqlite:///<root>/mlruns/mlflow.db`` with artifacts under
  ``<root>/mlruns/artifacts``, the folder the Compose MLflow server mounts, so runs trained
  before the stack starts show in its UI.

The experiment is ``MLFLOW_EXPERIMENT_NAME`` (default ``churn-prediction``). For a SQLite
store the experiment's artifacts live in ``artifacts/`` beside the database file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from churn.model_record import ModelRecord

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "churn-prediction"
#: Types skops must trust to load our pipelines: OneHotEncoder's ``dtype`` setting, and the
#: trees of HistGradientBoostingClassifier (safe here: we wrote the file ourselves).
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
#: Seconds to wait for an http(s) tracking server to answer before giving up.
SERVER_PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class TrackingTarget:
    """Where a training run is logged."""

    tracking_uri: str
    experiment: str
    #: Artifact folder for a new experiment (None: the tracking server decides).
    artifact_dir: Path | None

    @property
    def artifact_location(self) -> str | None:
        """The artifact folder as the file URI MLflow expects."""
        return self.artifact_dir.as_uri() if self.artifact_dir else None


def registered_model_name(version: str) -> str:
    """Name of the registered model of a version: ``churn-model-v1``."""
    return f"churn-model-{version}"


def register_serving_version(
    root: Path,
    record: ModelRecord,
    record_path: Path,
    tracking: Mapping[str, str],
    name: str | None = None,
) -> str:
    """Register a trained version under `REGISTERED_MODEL` with the files serving loads.

    Those files are the version's data-only model file (the record's ``compiled`` artifact)
    and its record (``record_path``, ``models/model_<version>.json``); no pickle. ``tracking``
    is what `log_training_run` returned (its ``tracking_uri`` and ``run_id``). Logs both files
    into that training run (folder `SERVING_ARTIFACT_DIR`), then creates a version of the one
    registered model whose tags are the registry record (`churn.registry_names`): each file's
    run path and sha256. Returns the new registry version. ``name`` replaces
    `REGISTERED_MODEL` (tests).
    """
    import json

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from churn.model_record import SERVING_ARTIFACT, file_sha256
    from churn.registry_names import (
        ARTIFACTS_TAG,
        RECORD_KIND,
        REGISTERED_MODEL,
        SERVING_ARTIFACT_DIR,
        VERSION_TAG,
    )

    name = name or REGISTERED_MODEL
    client = MlflowClient(tracking_uri=tracking["tracking_uri"])
    run_id = tracking["run_id"]
    files = {
        SERVING_ARTIFACT: root / record.artifact(SERVING_ARTIFACT).path,
        RECORD_KIND: record_path,
    }
    entries: dict[str, dict[str, str]] = {}
    for kind, path in files.items():
        client.log_artifact(run_id, str(path), SERVING_ARTIFACT_DIR)
        entries[kind] = {"path": f"{SERVING_ARTIFACT_DIR}/{path.name}", "sha256": file_sha256(path)}
    if entries[SERVING_ARTIFACT]["sha256"] != record.artifact(SERVING_ARTIFACT).sha256:
        raise ValueError(f"{files[SERVING_ARTIFACT]}: changed since its record was written")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    created = client.create_model_version(
        name,
        source=f"runs:/{run_id}/{SERVING_ARTIFACT_DIR}",
        run_id=run_id,
        tags={
            VERSION_TAG: record.version,
            ARTIFACTS_TAG: json.dumps(entries, sort_keys=True),
        },
    )
    log.info("MLflow: registered %s as %s version %s", record.version, name, created.version)
    return str(created.version)


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def resolve_target(root: Path, env: Mapping[str, str] | None = None) -> TrackingTarget:
    """Work out the tracking URI, experiment and artifact location from the environment."""
    env = os.environ if env is None else env
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        uri = f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve().as_posix()}"
    experiment = env.get("MLFLOW_EXPERIMENT_NAME", "").strip() or DEFAULT_EXPERIMENT
    db = _sqlite_path(uri)
    artifacts = db.resolve().parent / "artifacts" if db is not None else None
    return TrackingTarget(uri, experiment, artifacts)


def _check_server(uri: str) -> None:
    """Fail in seconds, not minutes of retries, when an http(s) tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(  # noqa: S310 - http(s) only, checked above
            uri.rstrip("/") + "/health", timeout=SERVER_PROBE_TIMEOUT
        ):
            pass
    except urllib.error.HTTPError:
        return  # it answers (perhaps behind auth): let MLflow itself speak
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(
            f"MLflow tracking server {uri} is not reachable ({reason}). Start it "
            "(`nox -s up`) or unset MLFLOW_TRACKING_URI to log to the local store mlruns/."
        ) from None


def git_commit(root: Path) -> str | None:
    """Return the checked-out git commit of ``root`` (``+dirty`` when files differ), if any."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _experiment_id(target: TrackingTarget) -> str:
    """Return the id of the target's experiment, creating it where it does not exist yet."""
    import mlflow

    existing = mlflow.get_experiment_by_name(target.experiment)
    if existing is not None:
        proxied = existing.artifact_location.startswith("mlflow-artifacts:")
        if proxied and not target.tracking_uri.startswith(("http://", "https://")):
            # Created through a tracking server that proxies artifacts (the Compose one does):
            # only that server can store this experiment's artifacts.
            raise RuntimeError(
                f"Experiment {target.experiment!r} in {target.tracking_uri} was created through "
                "an MLflow server, which stores its artifacts: log through it (start the stack, "
                "set MLFLOW_TRACKING_URI=http://localhost:5001) or choose another "
                "MLFLOW_EXPERIMENT_NAME."
            )
        return str(existing.experiment_id)
    if target.artifact_dir:
        target.artifact_dir.mkdir(parents=True, exist_ok=True)
    return str(
        mlflow.create_experiment(target.experiment, artifact_location=target.artifact_location)
    )


def sklearn_model_options(pipeline: Pipeline, input_example: pd.DataFrame) -> dict[str, Any]:
    """Return how a Pipeline is saved as an MLflow model (`log_model` and `save_model` alike).

    It serves raw customer records with ``predict_proba`` (columns P(No), P(Yes)), with a
    signature inferred from ``input_example`` and the example itself, saved with skops.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # SeniorCitizen and tenure are integers in the data, so the signature says "long";
        # served JSON is cast to the signature, and TotalCharges (nullable) is a double.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(input_example, pipeline.predict_proba(input_example))
    return {
        "signature": signature,
        "input_example": input_example,
        "pyfunc_predict_fn": "predict_proba",
        # Stated, not inferred: inference re-loads the model in a subprocess (seconds).
        "pip_requirements": mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        # Saved with skops (no pickle), which loads only types it is told to trust.
        "skops_trusted_types": list(SKOPS_TRUSTED_TYPES),
    }


def log_training_run(
    *,
    root: Path,
    version: str,
    pipeline: Pipeline,
    input_example: pd.DataFrame,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Mapping[str, Path],
) -> dict[str, str]:
    """Log one training run, register its model; return the metadata's ``mlflow`` record.

    ``pipeline`` is the full preprocessing + classifier pipeline, logged as an MLflow sklearn
    model that serves raw customer records (``predict_proba``: columns P(No), P(Yes)), with a
    signature and ``input_example``. ``artifacts`` are extra files, logged under ``files/``.
    """
    import mlflow
    import mlflow.sklearn

    target = resolve_target(root)
    _check_server(target.tracking_uri)
    db = _sqlite_path(target.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(target.tracking_uri)
    experiment_id = _experiment_id(target)
    name = registered_model_name(version)
    all_tags = {"model_version": version, **tags}
    commit = git_commit(root)
    if commit:
        all_tags["git_commit"] = commit

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{version}") as run:
        mlflow.set_tags(all_tags)
        mlflow.log_params(dict(params))
        mlflow.log_metrics(dict(metrics))
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            registered_model_name=name,
            **sklearn_model_options(pipeline, input_example),
        )
        for path in artifacts.values():
            mlflow.log_artifact(str(path), artifact_path="files")
    log.info(
        "MLflow: run %s in experiment %r at %s; registered %s version %s",
        run.info.run_id,
        target.experiment,
        target.tracking_uri,
        name,
        info.registered_model_version,
    )
    return {
        "tracking_uri": target.tracking_uri,
        "experiment": target.experiment,
        "run_id": run.info.run_id,
        "registered_model": name,
        "registered_version": str(info.registered_model_version),
    }
