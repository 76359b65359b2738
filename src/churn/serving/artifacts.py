"""Reading model metadata and artifacts, checking each sha256 before anything is unpickled."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

#: The artifacts each metadata record must list, in the order they are checked.
ARTIFACT_KINDS: tuple[str, ...] = ("model", "preprocessor", "label_encoder")


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
    actual = hashlib.sha256(data).hexdigest()
    if actual != str(expected_sha256).strip().lower():
        raise ArtifactError(
            f"{path}: sha256 mismatch (metadata says {expected_sha256}, file has {actual})"
        )
    return data


def verify_artifact(path: Path, expected_sha256: str) -> None:
    """Check that ``path`` exists and its sha256 equals ``expected_sha256``.

    Raises:
        ArtifactError: the file is missing, unreadable or its digest differs.

    """
    read_verified(Path(path), expected_sha256)


def load_verified(path: Path, expected_sha256: str) -> object:
    """Verify ``path``, then unpickle (joblib) exactly the bytes that were verified.

    Raises:
        ArtifactError: as `read_verified`, or the verified bytes cannot be unpickled.

    """
    import joblib

    data = read_verified(path, expected_sha256)
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # any failure to unpickle verified bytes means "unreadable"
        raise ArtifactError(f"{path}: unreadable ({_one_line(exc)})") from None


def read_metadata(root: Path, version: str) -> dict[str, Any]:
    """Read ``models/model_<version>.json`` under ``root`` and check the fields serving needs.

    Raises:
        ArtifactError: the file is missing, not JSON, for another version, or lacks the
            path and sha256 of one of `ARTIFACT_KINDS`.

    """
    path = root / "models" / f"model_{version}.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (metadata of model {version})") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are both
        raise ArtifactError(f"{path}: unreadable ({_one_line(exc)})") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: wrong type (expected a JSON object)")
    if metadata.get("version") != version:
        raise ArtifactError(
            f"{path}: wrong version (expected {version!r}, found {metadata.get('version')!r})"
        )
    artifacts = metadata.get("artifacts")
    for kind in ARTIFACT_KINDS:
        entry = artifacts.get(kind) if isinstance(artifacts, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
        ):
            raise ArtifactError(f"{path}: incomplete (no artifacts.{kind}.path and .sha256)")
    return metadata
