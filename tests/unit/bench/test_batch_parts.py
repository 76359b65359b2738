"""Each step of a 1,000-record batch is timed with the product's own functions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from benchmarks import batch_parts


def test_every_step_of_the_batch_path_is_measured(
    artifact_root: Path, make_records: Any, tmp_path: Path
) -> None:
    from churn.config import ArtifactPaths
    from churn.drift import build_reference, write_reference

    root = tmp_path / "root"  # a copy: the shared artifact set keeps no drift reference
    shutil.copytree(artifact_root, root)
    records = make_records(200, seed=4)
    columns = {c: [r[c] for r in records] for c in records[0]}
    path = ArtifactPaths(root).model_files.reference("v2")
    write_reference(path, build_reference("v2", columns, [0.5] * len(records)))
    body = json.dumps({"instances": records}).encode()
    measured = batch_parts.measure(root, body, repeat=3)
    assert measured["records"] == 200
    steps = measured["steps_ms"]
    assert list(steps) == [
        "parse_and_check",
        "columns",
        "encode",
        "score",
        "drift",
        "answer",
        "serialise",
    ]
    assert all(value >= 0.0 for value in steps.values())
    assert measured["total_ms"] == round(sum(steps.values()), 3)
    assert list(measured["general_path_ms"]) == ["parse", "validate"]


def test_a_body_the_decoder_leaves_is_not_timed_as_if_decoded(artifact_root: Path) -> None:
    body = json.dumps({"instances": [{"tenure": "12"}]}).encode()
    with pytest.raises(ValueError, match="not well typed"):
        batch_parts.measure(artifact_root, body, repeat=1)
