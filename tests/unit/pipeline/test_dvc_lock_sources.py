"""dvc.lock records the sources the pipeline runs: else the main job retrains and dirties it.

A pipeline source changed without `dvc commit` (or `dvc repro`) makes `nox -s build` reproduce
the models and rewrite dvc.lock, so the tree is no longer clean after the main job and
`nox -s publish` refuses. This catches it in `nox -s tests`, before any Docker.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_every_source_dependency_in_dvc_lock_matches_the_file() -> None:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    stale = []
    for stage, entry in lock["stages"].items():
        for dep in entry.get("deps", []):
            path = ROOT / dep["path"]
            if not dep["path"].startswith("src/"):
                continue  # data and models: outputs of other stages, checked by DVC itself
            digest = hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else "missing"  # noqa: S324 - DVC's own hash
            if digest != dep["md5"]:
                stale.append(f"{stage}: {dep['path']}")
    assert not stale, (
        "dvc.lock records other bytes for these pipeline sources; run `dvc commit` (outputs "
        f"unchanged) or `dvc repro` and commit dvc.lock: {stale}"
    )
