"""The artifact paths, spelled once: the pipeline writes them, serving and operations read them.

`ArtifactPaths(root)` names every file under a project root (docs/ARCHITECTURE.md lists them);
`ModelFiles(folder)` the per-version files inside a models folder, wherever that folder is
(``<root>/models``, a copy of it, a download from the registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArtifactPaths", "ModelFiles"]

_PREFIX, _RECORD = "model_", ".json"


@dataclass(frozen=True)
class ModelFiles:
    """The files of each model version in one models folder."""

    folder: Path

    @property
    def metrics(self) -> Path:
        """Held-out metrics of every version (``metrics.json``)."""
        return self.folder / "metrics.json"

    def model(self, version: str) -> Path:
        """Return the fitted classifier of ``version`` (joblib pickle; the pipeline's own copy)."""
        return self.folder / f"{_PREFIX}{version}.pkl"

    def compiled(self, version: str) -> Path:
        """Return the data-only model file of ``version``, which the API loads (`churn.export`)."""
        return self.folder / f"{_PREFIX}{version}.compiled.json"

    def record(self, version: str) -> Path:
        """Return the model record of ``version`` (`churn.model_record.ModelRecord`)."""
        return self.folder / f"{_PREFIX}{version}{_RECORD}"

    def run_record(self, version: str) -> Path:
        """Return the run record of ``version`` (`churn.model_record.RunRecord`)."""
        return self.folder / f"{_PREFIX}{version}.run.json"

    def reference(self, version: str) -> Path:
        """Return the drift reference of ``version`` (`churn.drift`)."""
        return self.folder / f"reference_{version}.json"

    def versions(self) -> list[str]:
        """Return the versions that have a model record in the folder, sorted by name."""
        names = (path.name for path in self.folder.glob(f"{_PREFIX}*{_RECORD}"))
        stems = (name.removeprefix(_PREFIX).removesuffix(_RECORD) for name in names)
        return sorted(stem for stem in stems if "." not in stem)  # not .run.json, .compiled.json


@dataclass(frozen=True)
class ArtifactPaths:
    """The pipeline's files under a project root."""

    root: Path

    @property
    def raw_csv(self) -> Path:
        """The input CSV (generated, or a copy of the user's file)."""
        return self.root / "data" / "raw" / "telco_churn.csv"

    @property
    def processed(self) -> Path:
        """The folder of the split and the fitted preprocessing."""
        return self.root / "data" / "processed"

    @property
    def train_csv(self) -> Path:
        """The training part of the split."""
        return self.processed / "train.csv"

    @property
    def test_csv(self) -> Path:
        """The held-out part of the split."""
        return self.processed / "test.csv"

    @property
    def preprocessor(self) -> Path:
        """The fitted ColumnTransformer (joblib)."""
        return self.processed / "preprocessor.pkl"

    @property
    def label_encoder(self) -> Path:
        """The LabelEncoder fitted on Churn (joblib)."""
        return self.processed / "label_encoder.pkl"

    @property
    def models(self) -> Path:
        """The folder of the models, their records, drift references and the metrics."""
        return self.root / "models"

    @property
    def model_files(self) -> ModelFiles:
        """The per-version files in `models`."""
        return ModelFiles(self.models)

    @property
    def metrics(self) -> Path:
        """Held-out metrics of every version."""
        return self.model_files.metrics

    def model(self, version: str) -> Path:
        """Return the path of the fitted classifier of ``version`` (joblib)."""
        return self.model_files.model(version)

    def compiled(self, version: str) -> Path:
        """Return the path of the data-only model file of ``version``."""
        return self.model_files.compiled(version)

    def metadata(self, version: str) -> Path:
        """Return the path of the model record of ``version``."""
        return self.model_files.record(version)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, with forward slashes (as in the records)."""
        return path.relative_to(self.root).as_posix()
