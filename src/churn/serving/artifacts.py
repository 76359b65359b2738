"""Reading model records and artifact bytes, checking each sha256 before anything is parsed."""

from __future__ import annotations

from pathlib import Path

from churn.config.paths import ArtifactPaths
from churn.model_record import (
    ModelRecord,
    RecordError,
    RunRecord,
    read_record,
    read_run,
    sha256_bytes,
)


class ArtifactError(Exception):
    """An artifact is missing, unreadable, of the wrong type or fails its sha256 check.

    The message is one line naming the file and the reason.
    """


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """Return the bytes of ``path`` if their sha256 equals ``expected_sha256``.

    Raises:
        ArtifactError: the file is missing, unreadable or its digest differs.

    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable ({_one_line(exc)})") from None
    actual = sha256_bytes(data)
    if actual != str(expected_sha256).strip().lower():
        raise ArtifactError(
            f"{path}: sha256 mismatch (record says {expected_sha256}, file has {actual})"
        )
    return data


def verify_artifact(path: Path, expected_sha256: str) -> None:
    """Check that ``path`` exists and its sha256 equals ``expected_sha256``.

    Raises:
        ArtifactError: the file is missing, unreadable or its digest differs.

    """
    read_verified(Path(path), expected_sha256)


def read_records(root: Path, version: str) -> tuple[ModelRecord, RunRecord | None]:
    """Read the model record of ``version`` under ``root`` (and its run record, if any).

    Raises:
        ArtifactError: the record is missing, not JSON, for another version, or lacks the
            path and sha256 of one of its artifacts.

    """
    models = ArtifactPaths(Path(root)).models
    try:
        record = read_record(models, version)
    except RecordError as exc:
        raise ArtifactError(str(exc)) from None
    return record, read_run(models, record)
