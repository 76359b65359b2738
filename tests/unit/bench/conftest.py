"""Make the repo's ``benchmarks`` package importable: it lives beside ``src``, not inside it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_pickles(root: Path, version: str = "v2") -> list[dict[str, object]]:
    """Fit a small preprocessor + classifier, write them as a version's DVC pickles and record.

    Returns the customer records they were fitted on (seeded, from `churn.schema`).
    """
    import joblib
    from benchmarks import mlflow_serve, payloads
    from sklearn.linear_model import LogisticRegression

    from churn.features import build_preprocessor
    from churn.model_record import (
        ARTIFACT_KINDS,
        ArtifactRef,
        ModelRecord,
        file_sha256,
        write_record,
    )

    records, _ = payloads.load_records(root, 120)  # no test split here: seeded synthetic rows
    frame = mlflow_serve.example_frame(records)
    preprocessor = build_preprocessor().fit(frame)
    labels = [int(r["Contract"] == "Month-to-month") for r in records]
    classifier = LogisticRegression().fit(preprocessor.transform(frame), labels)
    files = {
        "preprocessor": root / "data" / "processed" / "preprocessor.pkl",
        "model": root / "models" / f"model_{version}.pkl",
    }
    for kind, obj in (("preprocessor", preprocessor), ("model", classifier)):
        files[kind].parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(obj, files[kind])
    refs = {
        kind: ArtifactRef(str(files[kind].relative_to(root)), file_sha256(files[kind]))
        if kind in files
        else ArtifactRef(f"models/{kind}", "00" * 32)
        for kind in ARTIFACT_KINDS
    }
    write_record(
        root / "models", ModelRecord(version, "LogisticRegression", {}, refs, "cd" * 32, {})
    )
    return records
