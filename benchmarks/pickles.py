"""The DVC-tracked pickles of a model version, which the bench's comparison servers load.

Training writes the fitted preprocessor (``data/processed/preprocessor.pkl``) and each
version's classifier (``models/model_<v>.pkl``) and names both, with their sha256, in the
version's model record (`churn.model_record`); MLflow gets the two joined as one Pipeline.
`mlflow models serve` (when the registry lacks the logged model) and BentoML load them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.local_server import ServerError
from churn.config import ArtifactPaths
from churn.model_record import RecordError, file_sha256, read_record

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["ArtifactError", "Pickles", "find", "load_pipeline"]


class ArtifactError(ServerError):
    """A version's record or pickles are missing, or a pickle is not the file its record names."""


@dataclass(frozen=True)
class Pickles:
    """The two files of a version's Pipeline, checked against its record."""

    preprocessor: Path
    model: Path


def find(root: Path, version: str) -> Pickles:
    """Return the version's pickles after checking each against its record's sha256.

    Raises:
        ArtifactError: no readable record, a file is missing, or its sha256 differs.

    """
    try:
        record = read_record(ArtifactPaths(root).models, version)
    except RecordError as exc:
        raise ArtifactError(f"cannot read the model record ({exc})") from None
    paths = {}
    for kind in ("preprocessor", "model"):
        ref = record.artifact(kind)
        path = root / ref.path
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (run `nox -s pull` or `nox -s train`)")
        if file_sha256(path) != ref.sha256:
            raise ArtifactError(f"{path} is not the file its model record names (sha256)")
        paths[kind] = path
    return Pickles(paths["preprocessor"], paths["model"])


def load_pipeline(root: Path, version: str) -> Pipeline:
    """Join the version's preprocessor and classifier into the Pipeline training logs to MLflow.

    Raises:
        ArtifactError: see `find`.

    """
    import joblib
    from sklearn.pipeline import Pipeline

    files = find(root, version)
    return Pipeline(
        [
            ("preprocessor", joblib.load(files.preprocessor)),
            ("classifier", joblib.load(files.model)),
        ]
    )
